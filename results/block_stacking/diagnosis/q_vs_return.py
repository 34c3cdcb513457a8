"""Critic check of a trained block-stacking trial: Q(s, z) against the return the policy then collects.

    python results/block_stacking/diagnosis/q_vs_return.py runs/<name>/tune/spirl/<trial> [--episodes 2]

Loads the trial's latest checkpoint (its learner RLModule: policy, twin critics, frozen prior),
rolls out the deterministic policy (the mean skill, as the evaluation does) and the sampling
policy on the trial's own skill env, and prints per rollout kind, averaged over the high-level
steps of the episodes:

* ``Q``: min of the twin critics at (s_t, z_t), the skill the policy executed;
* ``G``: the discounted return from s_t to the episode's end (γ per high-level step, the
  time limit is terminal as in training, ``rl.timeout_as_terminal``), minus
  α Σ_{k≥1} γ^k KL(π‖p)(s_{t+k}) with the trial's last logged α (the soft target the critic
  is trained towards, Algorithm 1 line 8);
* ``Q(prior mean) − Q(policy)``: at the same states, the critics' value of the prior's mean skill
  against the executed skill (negative: the critic prefers where the policy went);
* the stacked blocks at the episode's end.

Q ≫ G means the critic overestimates the skills the actor chose; a diagnosis tool, not a test.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trial", help="runs/<name>/tune/spirl/<trial directory>")
    p.add_argument("--episodes", type=int, default=2, help="episodes per rollout kind")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from ray.rllib.core.columns import Columns
    from ray.rllib.core.models.base import ENCODER_OUT
    from ray.rllib.utils.spaces.space_utils import unsquash_action

    from spirl_ray.experiments.trainable import resolve_variant
    from spirl_ray.experiments.viz import load_policy_module
    from spirl_ray.rl.envs import make_rl_env
    from spirl_ray.rl.spirl import losses
    from spirl_ray.rl.spirl.rl_module import CRITIC_STATE, to_squash_space

    torch.set_num_threads(1)
    trial = Path(args.trial)
    params = resolve_variant(json.loads((trial / "params.json").read_text()))
    gamma, reduction = float(params["gamma"]), params["kl_reduction"]
    rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line.strip()]
    alpha = float(rows[-1]["learners"]["default_policy"]["alpha_value"])
    module, ckpt = load_policy_module(trial)
    env = make_rl_env(params["env_config"])
    dist_cls = module.get_exploration_action_dist_cls()
    print(f"checkpoint {ckpt.name}, alpha {alpha:.3f}, gamma {gamma}, KL reduction {reduction}")

    def q_min(x: torch.Tensor, u: torch.Tensor, info: dict) -> float:
        batch = {Columns.OBS: x, Columns.ACTIONS: u}
        if getattr(module, "_critic_state_dim", None) is not None:  # asymmetric critic: reads info["state"]
            batch[CRITIC_STATE] = torch.as_tensor(np.asarray(info["state"], np.float32))[None]
        q1 = module.qf(module.qf_encoder(batch)[ENCODER_OUT])
        q2 = module.qf_twin(module.qf_twin_encoder(batch)[ENCODER_OUT])
        return float(torch.min(q1, q2).reshape(()))

    torch.manual_seed(args.seed)
    for kind in ("deterministic", "sampled"):
        qs, gs, gaps, stacked = [], [], [], []
        for ep in range(args.episodes):
            obs, info = env.reset(seed=args.seed + ep)
            q_ep, r_ep, kl_ep, gap_ep = [], [], [], []
            done = False
            with torch.no_grad():
                while not done:
                    x = torch.as_tensor(np.asarray(obs))[None]
                    logits = module.forward_inference({Columns.OBS: x})[Columns.ACTION_DIST_INPUTS]
                    dist = dist_cls.from_logits(logits)
                    u = dist.to_deterministic().sample() if kind == "deterministic" else dist.sample()
                    prior_logits = to_squash_space(module.skill_prior(x.float()), module.squash_scale)
                    prior_u = dist_cls.from_logits(prior_logits).to_deterministic().sample()
                    q = q_min(x, u, info)
                    q_ep.append(q)
                    gap_ep.append(q_min(x, prior_u, info) - q)
                    kl_ep.append(float(losses.kl_to_prior(logits, prior_logits, reduction=reduction)))
                    a = unsquash_action(u[0].numpy(), env.action_space).astype(np.float32)
                    obs, r, term, trunc, info = env.step(a)
                    r_ep.append(float(r))
                    done = term or trunc
            # soft return-to-go: G_t = r_t + γ (G_{t+1} − α KL_{t+1}), terminal at the episode's end
            g, g_ep = 0.0, []
            for t in reversed(range(len(r_ep))):
                nxt = g - alpha * kl_ep[t + 1] if t + 1 < len(r_ep) else 0.0
                g = r_ep[t] + gamma * nxt
                g_ep.append(g)
            g_ep.reverse()
            qs += q_ep
            gs += g_ep
            gaps += gap_ep
            stacked.append(info.get("stacked_blocks", float("nan")))
        q, g = np.mean(qs), np.mean(gs)
        print(f"{kind:13s}: Q {q:8.1f}  G {g:8.1f}  Q-G {q - g:+8.1f} ({(q - g) / max(abs(g), 1e-9):+.0%})  "
              f"Q(prior mean)-Q(policy) {np.mean(gaps):+7.1f}  stacked at the end {np.mean(stacked):.2f} "
              f"over {args.episodes} episodes ({len(qs)} high-level steps)")


if __name__ == "__main__":
    main()
