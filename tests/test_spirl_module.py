"""SPiRL RL module, learner and config without a Ray cluster: prior frozen, policy = prior at init, α state."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns

from spirl_ray.rl.spirl import SPiRLConfig, SPiRLTorchLearner, SPiRLTorchRLModule
from spirl_ray.rl.spirl.rl_module import PRIOR_DIST_INPUTS, PRIOR_DIST_INPUTS_NEXT

from toy_skill_env import H, OBS, Z, ToySkillEnv, save_toy_skill_model

OBS_SPACE = gym.spaces.Box(-10, 10, (OBS,), np.float32)
ACT_SPACE = gym.spaces.Box(-2, 2, (Z,), np.float32)


@pytest.fixture(scope="module")
def skill_model_path(tmp_path_factory):
    # Non-trivial BatchNorm running statistics, so that "policy == prior" also checks them.
    return save_toy_skill_model(tmp_path_factory.mktemp("skills") / "skills.pt")


def _module(path, inference_only=False, **model_config):
    cfg = {"skill_model_path": path, "twin_q": True, "policy_hidden": 128, "policy_layers": 6, **model_config}
    module = SPiRLTorchRLModule(
        observation_space=OBS_SPACE, action_space=ACT_SPACE, inference_only=inference_only, model_config=cfg
    )
    if not inference_only:
        module.make_target_networks()  # done by the Learner in a real run
    return module


def _batch(b=32):
    g = torch.Generator().manual_seed(1)
    return {
        Columns.OBS: torch.randn(b, OBS, generator=g),
        Columns.NEXT_OBS: torch.randn(b, OBS, generator=g),
        Columns.ACTIONS: torch.rand(b, Z, generator=g) * 2 - 1,
        Columns.REWARDS: torch.randn(b, generator=g),
        Columns.TERMINATEDS: torch.zeros(b),
    }


def test_policy_equals_prior_at_init_including_batchnorm_stats(skill_model_path):
    from spirl_ray.skills.checkpoint import load_skill_model

    prior = load_skill_model(skill_model_path).prior  # eval mode: running stats
    module = _module(skill_model_path)
    x = 2.0 * torch.randn(50, OBS)
    with torch.no_grad():
        ref = prior(x)
        module.train()  # training mode must not switch the policy to batch statistics
        torch.testing.assert_close(module.pi(x), ref)
        torch.testing.assert_close(module.pi(x[:1]), ref[:1])  # single state == in a batch
        torch.testing.assert_close(module.skill_prior(x), ref)
        out = module.forward_inference({Columns.OBS: x})
    torch.testing.assert_close(out[Columns.ACTION_DIST_INPUTS], ref)
    # Training-mode forward passes change no BatchNorm statistics.
    before = {k: v.clone() for k, v in module.state_dict().items() if "running" in k}
    module.forward_train(_batch())
    after = module.state_dict()
    assert before and all(torch.equal(v, after[k]) for k, v in before.items())


def test_skill_prior_squash_scale_makes_the_copied_policy_execute_the_prior_skills(skill_model_path):
    """z = 2·tanh(u / 2): at init the executed skills follow p(z|s); the reference's z = 2·tanh(u) doubles them."""
    from spirl_ray.rl.spirl import losses
    from spirl_ray.rl.spirl.rl_module import to_squash_space
    from spirl_ray.skills.checkpoint import load_skill_model

    prior = load_skill_model(skill_model_path).prior
    ours = _module(skill_model_path, prior_in_action_space=True)  # what SPiRLConfig sets for a skill prior
    ref = _module(skill_model_path, prior_in_action_space=True, squash_scale=1.0)
    assert (ours.squash_scale, ref.squash_scale) == (2.0, 1.0)
    x = torch.randn(2000, OBS)
    with torch.no_grad():
        p = prior(x)
        mu, sigma = p[:, :Z], p[:, Z:].exp()
        g = torch.Generator().manual_seed(0)
        u = mu + sigma * torch.randn(mu.shape, generator=g)  # z ~ p(z|s) as the prior means it
        for module, scale in ((ours, 2.0), (ref, 1.0)):
            inputs = module.forward_inference({Columns.OBS: x})[Columns.ACTION_DIST_INPUTS]
            torch.testing.assert_close(inputs, torch.cat([mu / scale, sigma.log() - np.log(scale)], -1))
            torch.testing.assert_close(module.forward_train(_batch())[PRIOR_DIST_INPUTS],
                                       to_squash_space(prior(_batch()[Columns.OBS]), scale))
        v = (u / 2.0).tanh() * 2.0  # executed skill, ours
        v_ref = u.tanh() * 2.0  # executed skill, reference
    small = (u.abs() < 0.5)
    assert (v - u)[small].abs().max() < 0.025  # within 1.2 % of the prior's skill
    assert ((v_ref - u)[small].abs() / u[small].abs().clamp_min(1e-3)).median() > 0.8  # about doubled
    # the KL (both estimators) is invariant under the shared affine map
    a, b = torch.randn(64, 2 * Z), torch.randn(64, 2 * Z)
    a[:, Z:], b[:, Z:] = a[:, Z:].clamp(-4, 1), b[:, Z:].clamp(-4, 1)  # inside log_sigma's clamp [-5, 2] either way
    for est in ("analytic", "sampled"):
        torch.manual_seed(3)
        k1 = losses.kl_to_prior(a, b, estimator=est)
        torch.manual_seed(3)
        k2 = losses.kl_to_prior(to_squash_space(a, 2.0), to_squash_space(b, 2.0), estimator=est)
        torch.testing.assert_close(k1, k2)


def test_squash_scale_is_resolved_from_the_skill_model(skill_model_path):
    """SPiRLConfig: a skill prior -> s = the skill bound; no prior / explicit value -> as set; bad value -> error."""
    cfg = SPiRLConfig().environment(observation_space=OBS_SPACE, action_space=ACT_SPACE).training(
        skill_model_path=skill_model_path)
    assert cfg._model_config_auto_includes["prior_in_action_space"] is True
    assert cfg._model_config_auto_includes["squash_scale"] is None
    assert cfg.copy().training(squash_scale=1)._model_config_auto_includes["squash_scale"] == 1.0
    with pytest.raises(ValueError, match="squash_scale must be None or a number > 0"):
        cfg.copy().training(squash_scale=0).validate()
    with pytest.raises(ValueError, match="squash_scale must be > 0"):
        _module(skill_model_path, squash_scale=-1.0)


def test_no_prior_init_gives_a_different_policy(skill_model_path):
    torch.manual_seed(123)
    module = _module(skill_model_path, init_policy_from_prior=False)
    x = torch.randn(10, OBS)
    with torch.no_grad():
        assert not torch.allclose(module.pi(x), module.skill_prior(x))


def test_prior_frozen_and_forward_train_adds_prior_params(skill_model_path):
    module = _module(skill_model_path)
    assert all(not p.requires_grad for p in module.skill_prior.parameters())
    assert "skill_prior" in module.get_non_inference_attributes()
    batch = _batch()
    out = module.forward_train(batch)
    assert out[PRIOR_DIST_INPUTS].shape == (32, 2 * Z) and out[PRIOR_DIST_INPUTS_NEXT].shape == (32, 2 * Z)
    assert not out[PRIOR_DIST_INPUTS].requires_grad
    torch.testing.assert_close(out[PRIOR_DIST_INPUTS_NEXT], module.skill_prior(batch[Columns.NEXT_OBS]))
    # Critics: [s, a] MLPs with LeakyReLU, 5 x 256 by default.
    linears = [m for m in module.qf.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 5 and linears[0].in_features == OBS + Z and linears[0].out_features == 256
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in module.qf.modules())


def test_inference_only_module_has_no_prior_and_never_reads_the_file(skill_model_path, tmp_path):
    module = _module(str(tmp_path / "does_not_exist.pt"), inference_only=True)
    assert not hasattr(module, "skill_prior") or module.skill_prior is None
    assert not hasattr(module, "qf")
    # Learner weights (incl. prior and critics) load into the inference module.
    full = _module(skill_model_path)
    module.set_state(full.get_state(inference_only=True))
    x = torch.randn(5, OBS)
    with torch.no_grad():
        torch.testing.assert_close(module.pi(x), full.pi(x))
    assert not any(k.startswith("skill_prior") for k in full.get_state(inference_only=True))


def _config(path, **training):
    return (
        SPiRLConfig()
        .environment(ToySkillEnv)
        .training(skill_model_path=path, train_batch_size_per_learner=32, **training)
        .rl_module(model_config={"critic_hidden": 64, "critic_layers": 3})
    )


def test_learner_prior_in_no_optimizer_and_alpha_in_state(skill_model_path):
    learner = _config(skill_model_path).build_learner(env=ToySkillEnv())
    assert isinstance(learner, SPiRLTorchLearner)
    module = learner.module[DEFAULT_MODULE_ID]
    prior_ids = {id(p) for p in module.skill_prior.parameters()}
    optimized = {id(p) for opt in learner._named_optimizers.values() for g in opt.param_groups for p in g["params"]}
    assert prior_ids and not prior_ids & optimized
    pi_ids = {id(p) for p in module.pi.parameters()}
    assert pi_ids <= optimized
    # Config reached the module: critic sizes from model_config.
    assert [m.out_features for m in module.qf.modules() if isinstance(m, torch.nn.Linear)] == [64, 64, 1]

    # α is part of the learner state and restored in place (the optimizer keeps its tensor).
    log_alpha = learner.curr_log_alpha[DEFAULT_MODULE_ID]
    with torch.no_grad():
        log_alpha.fill_(-1.2345)
    state = learner.get_state()
    assert state["curr_log_alpha"][DEFAULT_MODULE_ID] == pytest.approx(-1.2345)
    fresh = _config(skill_model_path).build_learner(env=ToySkillEnv())
    fresh_alpha = fresh.curr_log_alpha[DEFAULT_MODULE_ID]
    fresh.set_state(state)
    assert fresh.curr_log_alpha[DEFAULT_MODULE_ID] is fresh_alpha
    assert fresh_alpha.item() == pytest.approx(-1.2345)
    opt_params = fresh.get_optimizer(DEFAULT_MODULE_ID, "alpha").param_groups[0]["params"]
    assert opt_params[0] is fresh_alpha


@pytest.mark.parametrize("use_prior", [True, False])
def test_learner_update_is_finite_and_moves_alpha(skill_model_path, use_prior):
    from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

    learner = _config(skill_model_path, use_skill_prior=use_prior).build_learner(env=ToySkillEnv())
    module = learner.module[DEFAULT_MODULE_ID]
    assert (module.skill_prior is not None) == use_prior
    data = {k: v.numpy() for k, v in _batch().items()}
    a0 = learner.curr_log_alpha[DEFAULT_MODULE_ID].item()
    res = learner.update(batch=MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(data)}, env_steps=32), timesteps={})
    stats = {k: v.peek() for k, v in res[DEFAULT_MODULE_ID].items() if hasattr(v, "peek")}
    key = "kl_to_prior" if use_prior else "logps"
    for k in ("policy_loss", "qf_loss", "qf_twin_loss", "alpha_loss", "alpha_value", "qf_mean", key):
        assert np.isfinite(stats[k]), k
    assert learner.curr_log_alpha[DEFAULT_MODULE_ID].item() != a0
    if use_prior:  # policy == prior at init: KL ≈ 0 < δ, so α must fall.
        assert stats["kl_to_prior"] == pytest.approx(0.0, abs=1e-4)
        assert learner.curr_log_alpha[DEFAULT_MODULE_ID].item() < a0


def test_config_validation_errors(skill_model_path, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        _config(str(tmp_path / "missing.pt")).validate()
    with pytest.raises(ValueError, match="target_divergence"):
        _config(skill_model_path, target_divergence=0.0).validate()
    with pytest.raises(ValueError, match="kl_estimator"):
        _config(skill_model_path, kl_estimator="exact").validate()
    with pytest.raises(ValueError, match="skill_model_path is required"):
        _config(None).validate()
    with pytest.raises(ValueError, match="freeze_policy_encoder=True .* needs init_policy_from_prior"):
        _config(skill_model_path, init_policy_from_prior=False, freeze_policy_encoder=True).validate()
    with pytest.raises(ValueError, match="shared_image_encoder must be a bool"):
        _config(skill_model_path, shared_image_encoder="yes").validate()
    with pytest.raises(ValueError, match="alpha_min must be None or a number > 0"):
        _config(skill_model_path, alpha_min=0.0).validate()
    # SAC from scratch in skill space needs no skill model.
    _config(None, use_skill_prior=False, init_policy_from_prior=False).validate()


def test_config_defaults_follow_the_paper(skill_model_path):
    cfg = SPiRLConfig().environment(ToySkillEnv).training(skill_model_path=skill_model_path)
    cfg.validate()
    assert cfg.train_batch_size_per_learner == 256
    assert cfg.actor_lr == cfg.critic_lr == cfg.alpha_lr == 3e-4
    assert (cfg.gamma, cfg.tau, cfg.initial_alpha, cfg.twin_q) == (0.99, 5e-3, 1.0, True)
    assert cfg.replay_buffer_config["capacity"] == int(1e6)
    assert cfg.num_steps_sampled_before_learning_starts == 5000 // H  # warm-up in high-level steps
    assert (cfg.target_divergence, cfg.kl_estimator, cfg.updates_per_step) == (5.0, "analytic", 1.0)
    mc = cfg.model_config
    assert (mc["policy_hidden"], mc["policy_layers"], mc["critic_hidden"], mc["critic_layers"]) == (128, 6, 256, 5)
    # An explicit high-level warm-up wins over the env-step default.
    cfg2 = SPiRLConfig().environment(ToySkillEnv).training(
        skill_model_path=skill_model_path, num_steps_sampled_before_learning_starts=7
    )
    cfg2.validate()
    assert cfg2.num_steps_sampled_before_learning_starts == 7


def test_critic_layer_norm_reaches_critics_and_targets_only_and_bounds_extrapolation(skill_model_path):
    """rl.critic_layer_norm: LayerNorm after each hidden layer of both critics and their targets, none in the
    policy; the LayerNorm critic's output at inputs 1000x outside the data stays within the bound its last layer
    sets, while the plain critic's grows with the input (the extrapolation the option is for)."""
    plain = _config(skill_model_path).build_learner(env=ToySkillEnv()).module[DEFAULT_MODULE_ID]
    ln = _config(skill_model_path, critic_layer_norm=True).build_learner(env=ToySkillEnv()).module[DEFAULT_MODULE_ID]

    def n_ln(net):
        return sum(isinstance(m, torch.nn.LayerNorm) for m in net.modules())

    assert n_ln(plain) == 0
    assert n_ln(ln.qf) == n_ln(ln.qf_twin) == 2  # critic_layers=3: two hidden layers
    assert n_ln(ln.pi) == 0
    heads = [t for _, t in ln.get_target_network_pairs() if isinstance(t, torch.nn.Sequential)]  # not the encoders
    assert len(heads) == 2 and all(n_ln(t) == 2 for t in heads)

    torch.manual_seed(0)
    x = torch.randn(64, next(ln.qf.parameters()).shape[1])
    last = ln.qf[-1]
    norm = [m for m in ln.qf.modules() if isinstance(m, torch.nn.LayerNorm)][-1]
    hidden = last.in_features
    # |LeakyReLU(LN(h))_i| <= sqrt(hidden - 1)·|γ_i| + |β_i|, so |Q| <= Σ|w_i|·that + |b|
    feat_bound = (hidden - 1) ** 0.5 * norm.weight.abs() + norm.bias.abs()
    bound = float((last.weight.abs() * feat_bound).sum() + last.bias.abs().sum())
    with torch.no_grad():
        q_ln_far = ln.qf(1000 * x).abs().max().item()
        q_plain, q_plain_far = plain.qf(x).abs().max().item(), plain.qf(1000 * x).abs().max().item()
    assert q_ln_far <= bound
    assert q_plain_far > 100 * q_plain and q_plain_far > bound


@pytest.mark.parametrize("option", ["shared_image_encoder", "freeze_policy_encoder"])
def test_image_encoder_options_on_state_vectors_are_refused(skill_model_path, option):
    with pytest.raises(ValueError, match=f"{option} act on image observations.*shape \\({OBS},\\)"):
        _module(skill_model_path, **{option: True})
