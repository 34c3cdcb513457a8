"""The learner's fast path (K gradient steps per update() call) learns exactly like RLlib's reference path.

Reference: one ``Learner.update`` per gradient step (RLlib's own path, one
backward per optimizer, for-loop Adam, target update after every call).
Fast: one ``update(batch of K x B rows, minibatch_size=B, num_epochs=1)``.
Both start from the same weights, see the same minibatches in the same order
and the same random draws; every loss term of every step and all parameters
after the K steps (policy, critics, target critics, log α) must agree. No
timings here (benchmarks/ measures speed).
"""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

from spirl_ray.rl.spirl import SPiRLConfig
from spirl_ray.skills.checkpoint import save_skill_model
from spirl_ray.skills.models import SkillModel, SkillModelConfig

OBS, Z, H, B, K = 8, 4, 10, 32, 4
OBS_SPACE = gym.spaces.Box(-10, 10, (OBS,), np.float32)
ACT_SPACE = gym.spaces.Box(-2, 2, (Z,), np.float32)


class ToySkillEnv(gym.Env):
    observation_space, action_space = OBS_SPACE, ACT_SPACE

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(OBS, np.float32), {}

    def step(self, action):
        return np.zeros(OBS, np.float32), 0.0, False, True, {}


@pytest.fixture(scope="module")
def skill_model_path(tmp_path_factory):
    torch.manual_seed(0)
    model = SkillModel(SkillModelConfig(obs_dim=OBS, action_dim=3, horizon=H, latent_dim=Z))
    model.prior.train()
    with torch.no_grad():  # non-trivial BatchNorm statistics in the prior (and the policy copied from it)
        for _ in range(10):
            model.prior(2.0 * torch.randn(64, OBS) + 0.5)
    model.eval()
    return str(save_skill_model(tmp_path_factory.mktemp("skills") / "skills.pt", model))


def _learner(path, fast: bool, **training):
    # Large τ and learning rates: parameters and targets move visibly within K steps, so a
    # target update once per call (instead of per step) or a skipped step cannot pass unnoticed.
    cfg = (
        SPiRLConfig()
        .environment(ToySkillEnv)
        .training(
            skill_model_path=path, train_batch_size_per_learner=B, learner_fast_path=fast, tau=0.3,
            actor_lr=3e-3, critic_lr=3e-3, alpha_lr=3e-2, **training,
        )
        .rl_module(model_config={"critic_hidden": 64, "critic_layers": 3})
    )
    torch.manual_seed(123)  # same initial critic weights in both learners
    return cfg.build_learner(env=ToySkillEnv())


def _data(n: int) -> dict:
    rng = np.random.default_rng(7)
    return {
        Columns.OBS: rng.normal(size=(n, OBS)).astype(np.float32),
        Columns.NEXT_OBS: rng.normal(size=(n, OBS)).astype(np.float32),
        Columns.ACTIONS: rng.uniform(-1, 1, size=(n, Z)).astype(np.float32),
        Columns.REWARDS: rng.normal(size=n).astype(np.float32),
        Columns.TERMINATEDS: (rng.random(n) < 0.2).astype(np.float32),
    }


def _record_losses(learner) -> list:
    """Record every loss term each time the learner computes the loss."""
    steps = []
    original = learner.compute_loss_for_module

    def spy(**kwargs):
        total = original(**kwargs)
        steps.append({name: float(t.detach()) for (_, name), t in learner._temp_losses.items()})
        return total

    learner.compute_loss_for_module = spy
    return steps


def _params(learner) -> dict:
    module = learner.module[DEFAULT_MODULE_ID]
    out = {k: v.detach().clone() for k, v in module.state_dict().items() if not k.startswith("skill_prior")}
    out["log_alpha"] = learner.curr_log_alpha[DEFAULT_MODULE_ID].detach().clone()
    return out


def _mab(data: dict, rows: slice) -> MultiAgentBatch:
    part = {k: v[rows] for k, v in data.items()}
    return MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(part)}, env_steps=len(part[Columns.REWARDS]))


@pytest.mark.parametrize("training", [{}, {"use_skill_prior": False}, {"kl_estimator": "sampled", "kl_samples": 3}],
                         ids=["kl_analytic", "entropy_baseline", "kl_sampled"])
def test_fast_path_equals_reference_path(skill_model_path, training):
    ref = _learner(skill_model_path, fast=False, **training)
    fast = _learner(skill_model_path, fast=True, **training)
    p_ref, p_fast = _params(ref), _params(fast)
    for k in p_ref:
        torch.testing.assert_close(p_fast[k], p_ref[k], rtol=0, atol=0, msg=f"initial {k}")

    data = _data(K * B)
    ts = {"num_env_steps_sampled_lifetime": 1000}
    rec_ref, rec_fast = _record_losses(ref), _record_losses(fast)

    torch.manual_seed(0)
    for k in range(K):  # reference: one RLlib update per gradient step
        ref.update(batch=_mab(data, slice(k * B, (k + 1) * B)), timesteps=ts)
    torch.manual_seed(0)
    res = fast.update(batch=_mab(data, slice(None)), minibatch_size=B, num_epochs=1, timesteps=ts)

    # Same loss terms at every one of the K steps (step 0 from identical weights; later steps
    # differ only by fused vs for-loop Adam rounding, ~1e-8).
    assert len(rec_ref) == len(rec_fast) == K
    assert set(rec_fast[0]) == {"policy_loss", "qf_loss", "qf_twin_loss", "alpha_loss"}
    for k, (a, b) in enumerate(zip(rec_ref, rec_fast)):
        for name in a:
            tol = 1e-6 if k == 0 else 1e-4
            assert b[name] == pytest.approx(a[name], rel=tol, abs=tol), (k, name, a[name], b[name])
    # Same parameters after K steps, incl. the target critics (τ applied after EVERY step) and α.
    p_ref, p_fast = _params(ref), _params(fast)
    for k in p_ref:
        torch.testing.assert_close(p_fast[k], p_ref[k], rtol=1e-4, atol=1e-5, msg=k)
    assert not torch.equal(p_fast["log_alpha"], _params(_learner(skill_model_path, fast=True, **training))["log_alpha"])

    # Step counters count all K steps; the loss statistics are those of the last step.
    mod = res[DEFAULT_MODULE_ID]
    assert mod["num_module_steps_trained_lifetime"].peek() == K * B
    assert mod["module_train_batch_size_mean"].peek() == B
    assert mod["qf_loss"].peek() == pytest.approx(rec_fast[-1]["qf_loss"], rel=1e-6)


def test_rllib_minibatch_loop_is_not_algorithm_1(skill_model_path):
    """RLlib's own minibatch loop (same call, learner_fast_path=False) updates the targets once per call.

    The first step agrees with the fast path, later ones drift apart because the target
    critics lag: the reason the fast path is a learner-side loop with a polyak update per
    step instead of ``minibatch_size`` alone.
    """
    data = _data(K * B)
    ts = {"num_env_steps_sampled_lifetime": 1000}
    rllib_loop, fast = _learner(skill_model_path, fast=False), _learner(skill_model_path, fast=True)
    rec_loop, rec_fast = _record_losses(rllib_loop), _record_losses(fast)
    torch.manual_seed(0)
    rllib_loop.update(batch=_mab(data, slice(None)), minibatch_size=B, num_epochs=1, timesteps=ts)
    torch.manual_seed(0)
    fast.update(batch=_mab(data, slice(None)), minibatch_size=B, num_epochs=1, timesteps=ts)
    assert len(rec_loop) == len(rec_fast) == K
    assert rec_fast[0]["qf_loss"] == pytest.approx(rec_loop[0]["qf_loss"], rel=1e-6)
    gap = (_params(fast)["target_qf.0.weight"] - _params(rllib_loop)["target_qf.0.weight"]).abs().max().item()
    assert gap > 1e-3, gap


def test_fast_path_handles_non_finite_gradients_like_rllib(skill_model_path):
    """NaN -> 0 and inf -> finite (``torch.nan_to_num``, as ``TorchLearner.apply_gradients``); others untouched."""
    learner = _learner(skill_model_path, fast=True)
    params = [p for _, opt in learner.get_optimizers_for_module(DEFAULT_MODULE_ID) for g in opt.param_groups
              for p in g["params"]]
    for p in params:
        p.grad = torch.ones_like(p)
    params[0].grad.view(-1)[0] = float("nan")
    params[1].grad.view(-1)[0] = float("inf")
    learner._check_finite_gradients(params)
    assert params[0].grad.view(-1)[0] == 0
    assert all(torch.isfinite(p.grad).all() for p in params)
    assert torch.equal(params[2].grad, torch.ones_like(params[2]))


def test_fast_path_uses_fused_adam_and_reference_path_does_not(skill_model_path):
    fused = [opt.param_groups[0]["fused"] for _, opt in _learner(skill_model_path, fast=True).get_optimizers_for_module(DEFAULT_MODULE_ID)]
    plain = [opt.param_groups[0].get("fused") for _, opt in _learner(skill_model_path, fast=False).get_optimizers_for_module(DEFAULT_MODULE_ID)]
    assert all(fused) and not any(plain)


@pytest.mark.parametrize("fast", [False, True], ids=["reference_path", "fast_path"])
def test_alpha_min_holds_alpha_at_its_floor_and_only_there(skill_model_path, fast):
    # The policy starts as the prior: KL ≈ 0 < δ = 5, so every step lowers log α by ~alpha_lr = 0.03
    # (Adam): 4 steps take α from 1 to ~0.89 without a floor, and to exactly the floor 0.95 with one.
    data, ts = _data(K * B), {"num_env_steps_sampled_lifetime": 1000}
    alphas = {}
    for floor in (None, 0.95, 0.5):
        learner = _learner(skill_model_path, fast=fast, alpha_min=floor)
        torch.manual_seed(0)
        if fast:
            learner.update(batch=_mab(data, slice(None)), minibatch_size=B, num_epochs=1, timesteps=ts)
        else:
            for k in range(K):
                learner.update(batch=_mab(data, slice(k * B, (k + 1) * B)), timesteps=ts)
        alphas[floor] = float(learner.curr_log_alpha[DEFAULT_MODULE_ID].exp())
    assert alphas[None] < 0.93
    assert alphas[0.95] == pytest.approx(0.95, rel=1e-6)
    assert alphas[0.5] == pytest.approx(alphas[None], rel=1e-6)  # a floor below the path changes nothing
