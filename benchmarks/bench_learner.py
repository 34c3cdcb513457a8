"""(4) learner updates/s, batch 256: SPiRL vs stock RLlib SAC vs a minimal pure-torch SAC.

* **pure torch**: a minimal SAC update written here (no RLlib), same sizes as
  SPiRL's kitchen nets: policy = prior-shaped MLP 6 x 128 (frozen BatchNorm +
  LeakyReLU) -> 2|Z|, twin critics 5 x 256 LeakyReLU on [s, z] + target copies,
  Adam, learned alpha, polyak per step. Batches are gathered from a numpy
  replay like SPiRL's. It has no skill prior (SPiRL additionally runs the
  frozen prior on s and s' for the KL: it does strictly more work).
* **stock RLlib SAC**: ``SACConfig()`` defaults (prioritised episode replay,
  default nets) on an env with the kitchen skill env's spaces; one update =
  what ``DQN._training_step_new_api_stack`` does per gradient step (replay
  sample, ``learner_group.update(episodes=...)``, priority update).
* **SPiRL**: the algorithm's own update path (replay sample + learner call),
  with K gradient steps per ``training_step`` (K = new high-level transitions x
  updates_per_step; K = 1 with one runner and rollout_fragment_length 1).

Everything runs in this process with the process's torch thread count, in
alternation (:func:`interleaved_rates`). Besides the update path, the full
``training_step`` loop on a zero-cost env (sampling one high-level step per
call, weight sync included) is timed for SPiRL and stock SAC.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable, Dict

import numpy as np

from benchmarks.common import BATCH, FREE_ENV_NAME, LATENT_DIM, OBS_DIM, interleaved_rates, run_for

REPLAY_FILL = 50_000


# ---- minimal pure-torch SAC ---------------------------------------------------------------------
def _pure_torch_sac(seed: int = 0) -> Callable[[], int]:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(seed)

    class FrozenBN(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(d))
            self.bias = nn.Parameter(torch.zeros(d))
            self.register_buffer("mean", torch.zeros(d))
            self.register_buffer("var", torch.ones(d))

        def forward(self, x):
            return (x - self.mean) * (self.weight * torch.rsqrt(self.var + 1e-5)) + self.bias

    def mlp(i, o, h, n, bn):
        layers, d = [], i
        for _ in range(n - 1):
            layers += [nn.Linear(d, h)] + ([FrozenBN(h)] if bn else []) + [nn.LeakyReLU(0.2)]
            d = h
        return nn.Sequential(*layers, nn.Linear(d, o))

    S, Z = OBS_DIM, LATENT_DIM
    pi = mlp(S, 2 * Z, 128, 6, True)
    q1, q2 = mlp(S + Z, 1, 256, 5, False), mlp(S + Z, 1, 256, 5, False)
    q1_t, q2_t = copy.deepcopy(q1).requires_grad_(False), copy.deepcopy(q2).requires_grad_(False)
    q_params = list(q1.parameters()) + list(q2.parameters())
    t_params = list(q1_t.parameters()) + list(q2_t.parameters())
    log_alpha = torch.zeros(1, requires_grad=True)
    opt_pi = torch.optim.Adam(pi.parameters(), lr=3e-4)
    opt_q = torch.optim.Adam(q_params, lr=3e-4)
    opt_a = torch.optim.Adam([log_alpha], lr=3e-4)
    gamma, tau, target_entropy = 0.99, 5e-3, -float(Z)

    rng = np.random.default_rng(seed)
    data = {
        "obs": rng.normal(size=(REPLAY_FILL, S)).astype(np.float32),
        "act": rng.uniform(-1, 1, size=(REPLAY_FILL, Z)).astype(np.float32),
        "rew": rng.normal(size=REPLAY_FILL).astype(np.float32),
        "next_obs": rng.normal(size=(REPLAY_FILL, S)).astype(np.float32),
        "done": np.zeros(REPLAY_FILL, np.float32),
    }

    def sample_action(obs):
        mu, log_std = pi(obs).chunk(2, -1)
        std = log_std.clamp(-5, 2).exp()
        u = mu + std * torch.randn_like(mu)
        logp = (-0.5 * ((u - mu) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        logp = logp - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), logp

    def step() -> int:
        idx = rng.integers(0, REPLAY_FILL, BATCH)
        o, a, r, o2, d = (torch.from_numpy(data[k][idx]) for k in ("obs", "act", "rew", "next_obs", "done"))
        alpha = log_alpha.exp().detach()
        with torch.no_grad():
            a2, logp2 = sample_action(o2)
            oa2 = torch.cat([o2, a2], -1)
            y = r + gamma * (1 - d) * (torch.min(q1_t(oa2), q2_t(oa2)).squeeze(-1) - alpha * logp2)
        oa = torch.cat([o, a], -1)
        loss_q = 0.5 * ((q1(oa).squeeze(-1) - y) ** 2).mean() + 0.5 * ((q2(oa).squeeze(-1) - y) ** 2).mean()
        a_new, logp = sample_action(o)
        for p in q_params:
            p.requires_grad_(False)
        oa_new = torch.cat([o, a_new], -1)
        q_new = torch.min(q1(oa_new), q2(oa_new)).squeeze(-1)
        for p in q_params:
            p.requires_grad_(True)
        loss_pi = (alpha * logp - q_new).mean()
        loss_a = -(log_alpha * (logp.detach() + target_entropy)).mean()
        for opt in (opt_q, opt_pi, opt_a):
            opt.zero_grad(set_to_none=True)
        (loss_q + loss_pi + loss_a).backward()
        for opt in (opt_q, opt_pi, opt_a):
            opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(t_params, q_params, tau)
        return 1

    return step


# ---- stock RLlib SAC ------------------------------------------------------------------------------
def _stock_sac():
    from collections import defaultdict

    from ray.rllib.algorithms.sac import SACConfig
    from ray.rllib.utils.metrics import (
        NUM_AGENT_STEPS_SAMPLED_LIFETIME,
        NUM_ENV_STEPS_SAMPLED_LIFETIME,
        TD_ERROR_KEY,
    )
    from ray.rllib.utils.numpy import convert_to_numpy
    from ray.rllib.utils.replay_buffers.utils import update_priorities_in_episode_replay_buffer

    config = (
        SACConfig()
        .environment(FREE_ENV_NAME)
        .env_runners(num_env_runners=0)
        .training(num_steps_sampled_before_learning_starts=0)  # the buffer is pre-filled below
        .debugging(seed=0)
    )
    algo = config.build_algo()
    runner = algo.env_runner_group.local_env_runner
    algo.local_replay_buffer.add(runner.sample(num_timesteps=2000))
    cfg = algo.config
    timesteps = {NUM_ENV_STEPS_SAMPLED_LIFETIME: 2000, NUM_AGENT_STEPS_SAMPLED_LIFETIME: {}}

    def update() -> int:
        episodes = algo.local_replay_buffer.sample(
            num_items=cfg.total_train_batch_size, n_step=cfg.n_step, batch_length_T=0, lookback=0,
            min_batch_length_T=0, gamma=cfg.gamma, beta=cfg.replay_buffer_config.get("beta"), sample_episodes=True,
        )
        results = algo.learner_group.update(episodes=episodes, timesteps=timesteps)
        td = defaultdict(list)
        for res in results:
            for mid, mres in res.items():
                if TD_ERROR_KEY in mres:
                    td[mid].extend(convert_to_numpy(mres.pop(TD_ERROR_KEY).peek()))
        update_priorities_in_episode_replay_buffer(
            replay_buffer=algo.local_replay_buffer,
            td_errors={mid: {TD_ERROR_KEY: np.concatenate(v, axis=0)} for mid, v in td.items()},
        )
        return 1

    def loop() -> int:
        algo.training_step()  # sample 1 step, 1 update, weight sync
        return 1

    return algo, update, loop


# ---- SPiRL ---------------------------------------------------------------------------------------
def _spirl(model_path: str):
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.core.columns import Columns
    from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
    from ray.rllib.utils.metrics import (
        LEARNER_RESULTS,
        NUM_AGENT_STEPS_SAMPLED_LIFETIME,
        NUM_ENV_STEPS_SAMPLED_LIFETIME,
        TD_ERROR_KEY,
    )

    from spirl_ray.rl.spirl import SPiRLConfig

    config = (
        SPiRLConfig()
        .environment(FREE_ENV_NAME)
        .env_runners(num_env_runners=0)
        .training(skill_model_path=model_path, warmup_env_steps=0)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    rng = np.random.default_rng(0)
    buf = algo.local_replay_buffer
    buf.add(
        obs=rng.normal(size=(REPLAY_FILL, OBS_DIM)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(REPLAY_FILL, LATENT_DIM)).astype(np.float32),
        rewards=rng.normal(size=REPLAY_FILL).astype(np.float32),
        next_obs=rng.normal(size=(REPLAY_FILL, OBS_DIM)).astype(np.float32),
        terminateds=np.zeros(REPLAY_FILL, np.float32),
    )
    timesteps = {NUM_ENV_STEPS_SAMPLED_LIFETIME: REPLAY_FILL, NUM_AGENT_STEPS_SAMPLED_LIFETIME: {}}
    fast = getattr(algo, "_learn", None)

    def updates(k: int) -> Callable[[], int]:
        if fast is not None:  # the algorithm's own update path
            def run_k() -> int:
                fast(k, timesteps)
                return k
            return run_k

        def legacy_k() -> int:  # the update loop of SPiRL.training_step before the fast path existed
            for _ in range(k):
                data = buf.sample(algo.config.total_train_batch_size)
                batch = MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(data)}, env_steps=len(data[Columns.REWARDS]))
                results = algo.learner_group.update(batch=batch, timesteps=timesteps)
                for res in results:
                    for mres in res.values():
                        if isinstance(mres, dict):
                            mres.pop(TD_ERROR_KEY, None)
                algo.metrics.aggregate(results, key=LEARNER_RESULTS)
            return k
        return legacy_k

    def loop() -> int:
        before = algo.metrics.peek("num_gradient_updates_lifetime", default=0)
        algo.training_step()
        return int(algo.metrics.peek("num_gradient_updates_lifetime", default=0) - before)

    return algo, updates, loop


def run(model_path: str, quick: bool = False) -> Dict[str, Any]:
    """All workloads run with ONE torch thread, what a Tune trial's learner gets (Ray sets
    OMP_NUM_THREADS = the trial's 1 CPU); the pure-torch update is also timed with all cores."""
    import os

    import torch

    torch.set_num_threads(1)
    rounds, seconds = (2, 2.0) if quick else (3, 4.0)
    ks = (1, 2, 32)
    pure = _pure_torch_sac()
    stock_algo, stock_update, stock_loop = _stock_sac()
    spirl_algo, spirl_updates, spirl_loop = _spirl(model_path)
    try:
        steps: Dict[str, Callable[[], int]] = {"pure_torch_sac": pure, "stock_rllib_sac": stock_update}
        steps.update({f"spirl_K{k}": spirl_updates(k) for k in ks})
        for fn in steps.values():  # warm-up
            for _ in range(3):
                fn()
        t0 = time.perf_counter()
        rates = interleaved_rates(steps, rounds, seconds, min_calls=2)
        # Full training_step loops on the zero-cost env (sampling + update + weight sync).
        loops = interleaved_rates({"stock_rllib_sac_loop": stock_loop, "spirl_loop": spirl_loop}, 1 if quick else 2,
                                  seconds, min_calls=2)
        out: Dict[str, Any] = {
            "torch_threads": torch.get_num_threads(),
            "rates": rates,
            "loop_rates": loops,
            "unit": "gradient updates/s (batch 256)",
            "seconds": time.perf_counter() - t0,
        }
        # The same pure-torch update with one thread per core (on a shared machine this can collapse).
        all_threads = os.cpu_count() or 1
        torch.set_num_threads(all_threads)
        n, dt = run_for(pure, 2.0)
        out["pure_torch_sac_all_threads"] = {"threads": all_threads, "rate": n / dt}
        return out
    finally:
        torch.set_num_threads(1)
        stock_algo.stop()
        spirl_algo.stop()
