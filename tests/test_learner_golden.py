"""Golden test: the learner's Algorithm-1 losses against an independent recomputation on a fixed batch.

The expected values are computed here from the module's own sub-networks
(``pi``, ``qf``, ``qf_twin``, ``target_qf``, ``target_qf_twin``, the frozen
``skill_prior``) with ``torch.distributions`` and the formulas of Algorithm 1
written out again, never through :mod:`spirl_ray.rl.spirl.losses`:

* KL(s) = mean over latent dims of KL(π(·|s) ‖ p(·|s)) (``kl_reduction='mean'``),
  KL(s′) the same at the next observation;
* critic target  y = r + γ(1 − d)(min_i Q̄_i(s′, a′) − α·KL(s′)), a′ ~ π(·|s′),
  with the TARGET critics Q̄;
* critic losses  ½·mean (Q_i(s, a) − y)² for both online critics;
* actor loss     mean α·KL(s) − min_i Q_i(s, ã), ã ~ π(·|s) reparameterised;
* α loss         log α·(δ − mean KL(s)), so ∂L/∂log α = δ − KL̄(s): log α rises
  when KL > δ and falls when KL < δ.

What it pins (each of these mutations of the learner/module fails it): the
critic target given KL(s) instead of KL(s′); the online critics used in place
of the target critics for the target; the actor (or α) loss given KL(s′)
instead of KL(s); a flipped α-gradient sign. To make those mistakes visible
the setup is deliberately asymmetric: the policy is perturbed away from the
prior (a prior-initialised policy has KL = 0 everywhere), s′ is drawn from a
different distribution than s (mean KL(s) ≈ 0.75, mean KL(s′) ≈ 1.10), the target
critics are perturbed away from the online ones, α ≠ 1, γ = 0.9 and a quarter
of the transitions are terminal. ``test_batch_discriminates_the_wrong_variants``
checks that the fixed batch keeps each wrong variant far outside the tolerance.

RLlib samples ã and a′ inside ``forward_train`` (an ``rsample`` at s, then a
``sample`` at s′); the expectations redraw them from the same seed in the same
order and first check the draws agree via RLlib's own ``logp_resampled`` /
``logp_next_resampled``, so a change of draw order is reported as such and not
as a wrong loss.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from torch.distributions import Normal, kl_divergence

from spirl_ray.rl.spirl import SPiRLConfig

from toy_skill_env import OBS, Z, ToySkillEnv, save_toy_skill_model

MID = DEFAULT_MODULE_ID
B = 64
GAMMA = 0.9
ALPHA = 0.7
DRAW_SEED = 2024
TOL = dict(rtol=1e-5, atol=1e-5)
LOG_SIGMA_RANGE = (-5.0, 2.0)  # the documented clamp of log σ (RLlib's and the skill model's)


@pytest.fixture(scope="module")
def skill_model_path(tmp_path_factory):
    return save_toy_skill_model(tmp_path_factory.mktemp("skills") / "skills.pt")


def _learner(path: str, delta: float = 5.0, fast: bool = True):
    """A local learner on the toy skill prior with π ≠ p, Q̄ ≠ Q and α = ALPHA."""
    cfg = (
        SPiRLConfig()
        .environment(ToySkillEnv)
        .training(
            skill_model_path=path, train_batch_size_per_learner=B, gamma=GAMMA, target_divergence=delta,
            kl_estimator="analytic", kl_reduction="mean", learner_fast_path=fast,
        )
        .rl_module(model_config={"critic_hidden": 64, "critic_layers": 3})
    )
    torch.manual_seed(123)
    learner = cfg.build_learner(env=ToySkillEnv())
    module = learner.module[MID]
    assert module.squash_scale == 2.0  # a skill prior: v = u / 2 (the KL is invariant under it)
    with torch.no_grad():
        g = torch.Generator().manual_seed(5)
        for p in module.pi.parameters():  # policy away from the prior: mean KL(s) ≈ 0.75, KL(s') ≈ 1.10
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        for net in (module.target_qf, module.target_qf_twin):  # target critics ≠ online critics
            for p in net.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g))
        learner.curr_log_alpha[MID].fill_(math.log(ALPHA))
    return learner


def _batch() -> dict:
    rng = np.random.default_rng(7)
    return {
        Columns.OBS: rng.normal(size=(B, OBS)).astype(np.float32),
        Columns.NEXT_OBS: (2.0 + 2.0 * rng.normal(size=(B, OBS))).astype(np.float32),  # s' far from s
        Columns.ACTIONS: rng.uniform(-1, 1, size=(B, Z)).astype(np.float32),
        Columns.REWARDS: rng.normal(size=B).astype(np.float32),
        Columns.TERMINATEDS: (np.arange(B) % 4 == 0).astype(np.float32),
    }


def _tensors(batch: dict) -> dict:
    return {k: torch.from_numpy(v) for k, v in batch.items()}


# ---- the independent recomputation -------------------------------------------------------------
def _normal(params: torch.Tensor) -> Normal:
    mu, log_sigma = params[:, :Z], params[:, Z:]
    return Normal(mu, log_sigma.clamp(*LOG_SIGMA_RANGE).exp())


def _prior_in_policy_space(module, obs: torch.Tensor) -> torch.Tensor:
    """p(u|s) mapped to v = u / s (the space of the policy's outputs): [mu / s, log σ − log s]."""
    p, s = module.skill_prior(obs), module.squash_scale
    return torch.cat([p[:, :Z] / s, p[:, Z:] - math.log(s)], dim=-1)


def _squashed_logp(dist: Normal, u: torch.Tensor) -> torch.Tensor:
    """log-density of a = tanh(u): Normal log-prob minus log(1 − tanh(u)²)."""
    return (dist.log_prob(u) - torch.log1p(-torch.tanh(u).pow(2).clamp(max=1 - 1e-7))).sum(-1)


def _q(net, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    return net(torch.cat([obs, act], dim=-1)).squeeze(-1)


@torch.no_grad()
def _expected(learner, batch: dict, delta: float) -> dict:
    """Algorithm 1's quantities for ``batch`` with the draws RLlib makes after ``torch.manual_seed(DRAW_SEED)``."""
    module = learner.module[MID]
    t = _tensors(batch)
    s, s2, a = t[Columns.OBS], t[Columns.NEXT_OBS], t[Columns.ACTIONS]
    r, d = t[Columns.REWARDS], t[Columns.TERMINATEDS]
    log_alpha = float(learner.curr_log_alpha[MID])
    alpha = math.exp(log_alpha)

    pi_s, pi_s2 = _normal(module.pi(s)), _normal(module.pi(s2))
    prior_s, prior_s2 = _normal(_prior_in_policy_space(module, s)), _normal(_prior_in_policy_space(module, s2))
    kl_s = kl_divergence(pi_s, prior_s).mean(-1)
    kl_s2 = kl_divergence(pi_s2, prior_s2).mean(-1)

    torch.manual_seed(DRAW_SEED)
    u_cur = pi_s.rsample()  # ã (pre-squash) for the actor loss
    u_next = pi_s2.sample()  # a' (pre-squash) for the critic target
    a_cur, a_next = torch.tanh(u_cur), torch.tanh(u_next)  # the critics see actions in [-1, 1]

    q_target_next = torch.min(_q(module.target_qf, s2, a_next), _q(module.target_qf_twin, s2, a_next))
    q_online_next = torch.min(_q(module.qf, s2, a_next), _q(module.qf_twin, s2, a_next))

    def target(q_next, kl_next):
        return r + GAMMA * (1.0 - d) * (q_next - alpha * kl_next)

    def critic_loss(q, y):
        return 0.5 * (q - y).pow(2).mean()

    q1, q2 = _q(module.qf, s, a), _q(module.qf_twin, s, a)
    q_curr = torch.min(_q(module.qf, s, a_cur), _q(module.qf_twin, s, a_cur))
    y = target(q_target_next, kl_s2)
    return {
        "kl_s": kl_s, "kl_s2": kl_s2,
        "logp_resampled": _squashed_logp(pi_s, u_cur), "logp_next_resampled": _squashed_logp(pi_s2, u_next),
        "q_target": y,
        "qf_loss": critic_loss(q1, y), "qf_twin_loss": critic_loss(q2, y),
        "policy_loss": (alpha * kl_s - q_curr).mean(),
        "alpha_loss": torch.tensor(log_alpha * (delta - kl_s.mean().item())),
        "alpha_grad": delta - kl_s.mean(),
        # the wrong variants the learner must not compute
        "wrong_qf_loss_kl_at_s": critic_loss(q1, target(q_target_next, kl_s)),
        "wrong_qf_loss_online_critics": critic_loss(q1, target(q_online_next, kl_s2)),
        "wrong_policy_loss_kl_at_s2": (alpha * kl_s2 - q_curr).mean(),
        "wrong_alpha_loss_kl_at_s2": torch.tensor(log_alpha * (delta - kl_s2.mean().item())),
    }


# ---- the learner's side --------------------------------------------------------------------------
def _learner_losses(learner, batch: dict):
    """One ``compute_loss_for_module`` call on ``forward_train`` of ``batch``: (total, {loss name: tensor}, fwd_out)."""
    module = learner.module[MID]
    t = _tensors(batch)
    torch.manual_seed(DRAW_SEED)
    fwd_out = module.forward_train(t)
    learner._temp_losses.clear()
    total = learner.compute_loss_for_module(
        module_id=MID, config=learner.config.get_config_for_module(MID), batch=t, fwd_out=fwd_out
    )
    got = {name: loss for (mid, name), loss in learner._temp_losses.items() if mid == MID}
    return total, got, fwd_out


def _check_draws(fwd_out: dict, exp: dict) -> None:
    for key in ("logp_resampled", "logp_next_resampled"):
        torch.testing.assert_close(
            fwd_out[key].detach(), exp[key], rtol=1e-4, atol=1e-4,
            msg=lambda m, key=key: f"the redrawn ã / a' differ from RLlib's (draw order changed?): {key}\n{m}",
        )


def _check_losses(got: dict, exp: dict) -> None:
    assert set(got) == {"policy_loss", "qf_loss", "qf_twin_loss", "alpha_loss"}, set(got)
    what = {
        "qf_loss": "critic loss: target must be r + γ(1−d)(min TARGET-Q(s′,a′) − α·KL(s′))",
        "qf_twin_loss": "twin critic loss: target must be r + γ(1−d)(min TARGET-Q(s′,a′) − α·KL(s′))",
        "policy_loss": "actor loss must be mean α·KL(s) − min Q(s, ã)",
        "alpha_loss": "α loss must be log α·(δ − mean KL(s))",
    }
    for name, msg in what.items():
        torch.testing.assert_close(
            got[name].detach().reshape(()), exp[name].reshape(()), **TOL,
            msg=lambda m, name=name, msg=msg: f"{name}: {msg}\n{m}",
        )


# ---- tests ---------------------------------------------------------------------------------------
def test_batch_discriminates_the_wrong_variants(skill_model_path):
    """The fixed setup keeps each wrong variant ≥ 1e-3 (100 x the tolerance) away from the right value."""
    exp = _expected(_learner(skill_model_path), _batch(), delta=5.0)
    kl_s, kl_s2 = float(exp["kl_s"].mean()), float(exp["kl_s2"].mean())
    assert kl_s > 0.3 and kl_s2 - kl_s > 0.2, (kl_s, kl_s2)
    for wrong, right in (("wrong_qf_loss_kl_at_s", "qf_loss"), ("wrong_qf_loss_online_critics", "qf_loss"),
                         ("wrong_policy_loss_kl_at_s2", "policy_loss"), ("wrong_alpha_loss_kl_at_s2", "alpha_loss")):
        assert abs(float(exp[wrong]) - float(exp[right])) > 1e-3, (wrong, float(exp[wrong]), float(exp[right]))


def test_losses_equal_independent_algorithm_1(skill_model_path):
    """One ``compute_loss_for_module`` call = the hand-written Algorithm 1 (critic, twin critic, actor, α)."""
    learner = _learner(skill_model_path)
    batch = _batch()
    exp = _expected(learner, batch, delta=5.0)
    total, got, fwd_out = _learner_losses(learner, batch)
    _check_draws(fwd_out, exp)
    _check_losses(got, exp)
    torch.testing.assert_close(total.detach(), sum(got.values()).detach(), **TOL)
    # the logged statistics say the same: KL at s, the critic target with KL at s'
    stats = learner.metrics.peek(MID)
    assert stats["kl_to_prior"] == pytest.approx(float(exp["kl_s"].mean()), rel=1e-5, abs=1e-5)
    assert stats["qf_target_mean"] == pytest.approx(float(exp["q_target"].mean()), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("fast", [True, False], ids=["fast_path", "rllib_update"])
def test_update_computes_the_same_losses(skill_model_path, fast):
    """Through ``Learner.update`` (fast path and RLlib's own path), the loss of the one gradient step is the same."""
    learner = _learner(skill_model_path, fast=fast)
    batch = _batch()
    exp = _expected(learner, batch, delta=5.0)
    seen = []
    original = learner.compute_loss_for_module

    def spy(**kwargs):
        total = original(**kwargs)
        seen.append(({name: v.detach().clone() for (_, name), v in learner._temp_losses.items()},
                     {k: kwargs["fwd_out"][k].detach().clone() for k in ("logp_resampled", "logp_next_resampled")}))
        return total

    learner.compute_loss_for_module = spy
    mab = MultiAgentBatch({MID: SampleBatch(batch)}, env_steps=B)
    torch.manual_seed(DRAW_SEED)
    if fast:
        learner.update(batch=mab, minibatch_size=B, num_epochs=1, timesteps={})
    else:
        learner.update(batch=mab, timesteps={})
    assert len(seen) == 1
    got, draws = seen[0]
    _check_draws(draws, exp)
    _check_losses(got, exp)


@pytest.mark.parametrize(
    "delta, direction",
    [(0.25, +1), (0.92, -1), (3.0, -1)],
    ids=["kl_above_delta_alpha_rises", "delta_between_kl_s_and_kl_s2_alpha_falls", "kl_below_delta_alpha_falls"],
)
def test_alpha_gradient_sign(skill_model_path, delta, direction):
    """∂L/∂log α = δ − mean KL(s) (from the total loss: α is detached elsewhere); one update moves log α by −sign.

    δ = 0.92 lies between mean KL(s) ≈ 0.75 and mean KL(s') ≈ 1.10: an α loss fed KL(s') would raise α there.
    """
    learner = _learner(skill_model_path, delta=delta)
    batch = _batch()
    exp = _expected(learner, batch, delta=delta)
    kl_s, kl_s2 = float(exp["kl_s"].mean()), float(exp["kl_s2"].mean())
    assert (kl_s > delta) == (direction > 0), (kl_s, delta)
    if delta == 0.92:
        assert kl_s + 0.1 < delta < kl_s2 - 0.1, (kl_s, kl_s2)

    log_alpha = learner.curr_log_alpha[MID]
    total, got, _ = _learner_losses(learner, batch)
    (grad_total,) = torch.autograd.grad(total, log_alpha)
    torch.testing.assert_close(
        grad_total.reshape(()), exp["alpha_grad"].reshape(()), **TOL,
        msg=lambda m: f"∂(total loss)/∂log α must be δ − mean KL(s) (= {delta} − {kl_s:.4f})\n{m}",
    )
    assert math.copysign(1.0, delta - kl_s) == -direction

    before = float(log_alpha)
    torch.manual_seed(DRAW_SEED)
    learner.update(batch=MultiAgentBatch({MID: SampleBatch(batch)}, env_steps=B), minibatch_size=B, num_epochs=1,
                   timesteps={})
    after = float(learner.curr_log_alpha[MID])
    assert direction * (after - before) > 0, ("log α must rise" if direction > 0 else "log α must fall", before, after)
