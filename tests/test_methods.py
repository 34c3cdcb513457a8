"""Baselines and ablations (issue 4): method switches, flat action prior, ω schedule, state-conditioned decoder."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from torch.distributions import Normal

from spirl_ray.experiments.config import ConfigError, ExperimentConfig
from spirl_ray.experiments.methods import METHODS, get_method
from spirl_ray.experiments.trainable import OVERRIDES_KEY, VARIANT_KEY, resolve_variant
from spirl_ray.rl.spirl import SPiRLTorchRLModule
from spirl_ray.rl.spirl.prior_sampling import prior_sample_prob
from spirl_ray.skills.checkpoint import save_skill_model
from spirl_ray.skills.models import SkillModel, SkillModelConfig

from conftest import structured_episodes
from toy_skill_env import OBS, Z, save_toy_skill_model


# ---- ω schedule (appendix F) ---------------------------------------------------------------
@pytest.mark.parametrize(
    "steps, omega",
    [(0, 1.0), (499_999, 1.0), (500_000, 1.0), (625_000, 0.75), (750_000, 0.5), (1_000_000, 0.0), (3_000_000, 0.0)],
)
def test_prior_sample_prob_paper_schedule(steps, omega):
    assert prior_sample_prob(steps, 500_000, 500_000) == pytest.approx(omega)


def test_prior_sample_prob_edge_cases():
    assert prior_sample_prob(10, 10, 0) == 0.0  # no anneal: drops at once
    assert prior_sample_prob(9, 10, 0) == 1.0
    with pytest.raises(ValueError, match="env_steps"):
        prior_sample_prob(-1, 10, 10)


def _module(path, **model_config):
    cfg = {"skill_model_path": path, "twin_q": True, **model_config}
    return SPiRLTorchRLModule(
        observation_space=gym.spaces.Box(-10, 10, (OBS,), np.float32),
        action_space=gym.spaces.Box(-2, 2, (Z,), np.float32),
        inference_only=True,
        model_config=cfg,
    )


def test_exploration_draws_from_prior_with_probability_omega(tmp_path):
    path = save_toy_skill_model(tmp_path / "s.pt")
    torch.manual_seed(0)
    module = _module(path, init_policy_from_prior=False, use_skill_prior=True, prior_sampling=True)
    obs = torch.randn(4000, OBS)
    with torch.no_grad():
        prior, policy = module.sampling_prior(obs), module.pi(obs)
    assert not torch.allclose(prior, policy)  # random init: the two differ
    assert float(module.prior_sample_prob) == 1.0  # ω starts at 1 (warm-up skills from the prior)
    for omega in (1.0, 0.0, 0.3):
        module.set_prior_sample_prob(omega)
        with torch.no_grad():
            out = module.forward_exploration({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
        from_prior = (out == prior).all(-1).float().mean().item()
        from_policy = (out == policy).all(-1).float().mean().item()
        assert from_prior + from_policy == pytest.approx(1.0)
        assert from_prior == pytest.approx(omega, abs=0.03)
    # ω is module state: the weight sync carries it to the EnvRunners
    assert "prior_sample_prob" in module.get_state()
    # inference (evaluation) never samples from the prior
    with torch.no_grad():
        torch.testing.assert_close(module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS], policy)


# ---- flat action prior / BC model -----------------------------------------------------------
def _flat_config(**kw):
    return SkillModelConfig(obs_dim=4, action_dim=2, horizon=1, latent_dim=2, decoder="flat", prior_layers=3, **kw)


def test_flat_model_needs_h1_and_z_equal_a():
    with pytest.raises(ValueError, match="horizon=1 and latent_dim=action_dim"):
        SkillModelConfig(obs_dim=4, action_dim=2, horizon=10, latent_dim=2, decoder="flat")
    with pytest.raises(ValueError, match="open_loop"):
        SkillModelConfig(obs_dim=4, action_dim=2, decoder="closed_loop", decoder_state_conditioned=True)


def test_flat_prior_loss_is_nll_of_pre_tanh_action_and_decreases():
    torch.manual_seed(0)
    model = SkillModel(_flat_config())
    eps = structured_episodes(n_episodes=20, length=30)
    s = torch.as_tensor(np.concatenate([e[0] for e in eps]))
    a = torch.as_tensor(np.concatenate([e[1] for e in eps])).clamp(-0.99, 0.99)
    states, actions = torch.stack([s, s], 1), a[:, None]  # (B, H+1=2, S), (B, H=1, A)
    model.eval()
    out = model.loss(states, actions)
    ref = -model.prior.dist(s).log_prob(torch.atanh(a)).mean()
    torch.testing.assert_close(out["loss"], ref)
    assert float(out["kl"]) == 0.0
    model.train()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    first = float(model.loss(states, actions)["loss"].detach())
    for _ in range(300):
        loss = model.loss(states, actions)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    last = model.loss(states, actions)
    assert float(last["loss"]) < first - 1.0  # nats per action dim
    assert float(last["mse"]) < 0.02


def test_flat_prior_in_module_is_the_kl_target_over_pre_tanh_actions(tmp_path):
    """Flat Prior: the module's prior for the KL is p(u|s) with u = atanh(a), the policy's pre-squash space."""
    from spirl_ray.rl.spirl import losses
    from spirl_ray.skills.models import gaussian_from_params

    torch.manual_seed(1)
    model = SkillModel(_flat_config())
    path = str(save_skill_model(tmp_path / "flat.pt", model.eval()))
    module = SPiRLTorchRLModule(
        observation_space=gym.spaces.Box(-10, 10, (4,), np.float32),
        action_space=gym.spaces.Box(-1, 1, (2,), np.float32),
        model_config={"skill_model_path": path, "use_skill_prior": True, "init_policy_from_prior": True,
                      "policy_hidden": 128, "policy_layers": 3, "twin_q": True},
    )
    module.make_target_networks()
    obs = torch.randn(64, 4)
    with torch.no_grad():
        torch.testing.assert_close(module.prior_params(obs), model.prior(obs))
        torch.testing.assert_close(module.pi(obs), model.prior(obs))  # BC / prior init
    pi_params = module.pi(obs) + 0.3  # a moved policy
    kl = losses.kl_to_prior(pi_params, module.prior_params(obs), estimator="analytic", reduction="mean")
    ref = torch.distributions.kl_divergence(gaussian_from_params(pi_params), gaussian_from_params(model.prior(obs))).mean(-1)
    torch.testing.assert_close(kl, ref)


def test_ssp_entropy_term_is_the_squashed_gaussian_logp(tmp_path):
    """SSP w/o prior: the 'KL' is log π(z̃|s) of the tanh-squashed Gaussian sample (uniform prior), δ = -target entropy."""
    path = save_toy_skill_model(tmp_path / "s.pt")
    module = SPiRLTorchRLModule(
        observation_space=gym.spaces.Box(-10, 10, (OBS,), np.float32),
        action_space=gym.spaces.Box(-2, 2, (Z,), np.float32),
        model_config={"skill_model_path": path, "use_skill_prior": False, "init_policy_from_prior": False, "twin_q": True},
    )
    module.make_target_networks()
    assert module.skill_prior is None
    obs = torch.randn(16, OBS)
    batch = {Columns.OBS: obs, Columns.NEXT_OBS: obs, Columns.ACTIONS: torch.zeros(16, Z)}
    torch.manual_seed(3)
    out = module.forward_train(batch)
    # Recompute log π of the same reparameterised sample: change of variables through tanh.
    torch.manual_seed(3)
    params = module.pi(obs)
    mu, log_sigma = params.chunk(2, -1)
    u = Normal(mu, log_sigma.exp()).rsample()
    logp = Normal(mu, log_sigma.exp()).log_prob(u).sum(-1) - torch.log(1 - torch.tanh(u) ** 2 + 1e-6).sum(-1)
    torch.testing.assert_close(out["logp_resampled"], logp, atol=2e-3, rtol=1e-3)


# ---- state-conditioned decoder (appendix D) -------------------------------------------------
def test_state_conditioned_decoder_depends_on_state_and_trains():
    torch.manual_seed(0)
    cfg = SkillModelConfig(obs_dim=4, action_dim=2, horizon=5, latent_dim=3, decoder_state_conditioned=True,
                           lstm_hidden=32, prior_hidden=32, prior_layers=3)
    model = SkillModel(cfg).eval()
    z = torch.zeros(2, 3)
    s = torch.randn(2, 4)
    a = model.decode(z, s)
    assert a.shape == (2, 5, 2) and not torch.allclose(a[0], a[1])  # same z, different states
    with pytest.raises(ValueError, match="needs the skill's first state"):
        model.decode(z)
    eps = structured_episodes(n_episodes=8, length=20)
    states = torch.as_tensor(np.stack([e[0][t:t + 6] for e in eps for t in range(0, 14, 2)]))
    actions = torch.as_tensor(np.stack([e[1][t:t + 5] for e in eps for t in range(0, 14, 2)]))
    model.train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    first = float(model.loss(states, actions)["mse"])
    for _ in range(150):
        loss = model.loss(states, actions)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(model.loss(states, actions)["mse"]) < 0.5 * first


# ---- configs, sweep plumbing -----------------------------------------------------------------
def test_every_method_is_a_valid_config_switch():
    assert set(METHODS) == {"spirl", "spirl_no_prior_init", "ssp", "prior_init_sac", "sac", "bc_sac", "flat_prior"}
    assert get_method("ssp").use_skill_prior is False and get_method("ssp").init_policy_from_prior is False
    assert get_method("prior_init_sac").init_policy_from_prior and not get_method("prior_init_sac").use_skill_prior
    assert get_method("flat_prior").offline_model == "flat" and not get_method("flat_prior").skill_space
    with pytest.raises(ValueError, match="unknown method 'ppo'"):
        get_method("ppo")
    with pytest.raises(Exception, match="rl.method"):
        ExperimentConfig(name="x", rl={"method": "ppo"})


def test_variants_apply_overrides_and_name_bad_ones():
    cfg = ExperimentConfig(name="x", variants=[
        {"name": "sac", "set": {"rl.method": "sac"}},
        {"name": "H3", "set": {"skill_model.horizon": 3}},
    ])
    (n1, c1), (n2, c2) = cfg.variant_configs()
    assert (n1, c1.rl.method, c1.skill_model.get("horizon", 10)) == ("sac", "sac", 10)
    assert (n2, c2.rl.method, c2.skill_model["horizon"]) == ("H3", "spirl", 3)
    bad = ExperimentConfig(name="x", variants=[{"name": "oops", "set": {"rl.lrr": 1}}])
    with pytest.raises(ConfigError, match=r"variant 'oops'[\s\S]*rl.lrr: unknown key"):
        bad.variant_configs()
    with pytest.raises(Exception, match="unique"):
        ExperimentConfig(name="x", variants=[{"name": "a"}, {"name": "a"}])


def test_resolve_variant_applies_only_that_arms_overrides():
    cfg = {"lr": 1, "seed": 0, VARIANT_KEY: "b", OVERRIDES_KEY: {"a": {"lr": 2}, "b": {"lr": 3, "gamma": 0.5}}}
    assert resolve_variant(cfg) == {"lr": 3, "seed": 0, "gamma": 0.5}
    with pytest.raises(KeyError, match="'c'"):
        resolve_variant({VARIANT_KEY: "c", OVERRIDES_KEY: {"a": {}}})
