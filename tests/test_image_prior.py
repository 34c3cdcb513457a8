"""Image states (appendix B.1): conv encoder, image skill prior, and the SPiRL policy / critics that mirror it."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns

from spirl_ray.rl.spirl import SPiRLConfig, SPiRLTorchRLModule
from spirl_ray.rl.spirl.rl_module import PRIOR_DIST_INPUTS
from spirl_ray.skills.checkpoint import load_skill_model, save_skill_model
from spirl_ray.skills.models import ConvEncoder, SkillModel, SkillModelConfig

from image_learner_kit import IMG, A, H, Z
from image_learner_kit import image_data as _image_data
from image_learner_kit import image_learner as _image_learner
from image_learner_kit import module_state as _state
from image_learner_kit import reference_vs_fast_steps



def _images(b, seed=0):
    return torch.randint(0, 256, (b, *IMG), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _image_config(**kw):
    kw = {"horizon": H, "latent_dim": Z, **kw}
    return SkillModelConfig(obs_dim=int(np.prod(IMG)), action_dim=A, image_shape=IMG,
                            prior_hidden=32, prior_layers=3, lstm_hidden=16, beta=1e-2, **kw)


@pytest.fixture(scope="module")
def image_prior_path(tmp_path_factory):
    """An image skill model with non-trivial BatchNorm statistics in its prior MLP."""
    torch.manual_seed(0)
    model = SkillModel(_image_config())
    model.prior.train()
    with torch.no_grad():
        for s in range(10):
            model.prior(_images(64, s))
    model.eval()
    return str(save_skill_model(tmp_path_factory.mktemp("img") / "skills.pt", model))


def test_conv_encoder_is_the_papers_three_layers_on_uint8_over_255():
    enc = ConvEncoder(IMG)
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(2, 8, (3, 3)), (8, 16, (3, 3)),
                                                                                 (16, 32, (3, 3))]
    x = _images(7)
    out = enc(x)
    assert out.shape == (7, enc.out_dim) and enc.out_dim == 32 * 4 * 4 and out.dtype == torch.float32
    # uint8 in, /255 inside: the same as feeding the float image in [0, 1] to the raw conv stack
    torch.testing.assert_close(out, enc.net(x.float() / 255.0).flatten(1))
    torch.testing.assert_close(enc(x.float()), out)  # float 0..255 (replay buffers) == uint8
    torch.testing.assert_close(enc(x[:1]), out[:1])  # one image == in a batch (no BatchNorm)
    assert ConvEncoder((3, 20, 24), channels=(4, 6), kernel=5).out_dim == 6 * 5 * 6  # generic (C, H, W)
    with pytest.raises(ValueError, match="in_shape"):
        ConvEncoder((32, 32))


@pytest.mark.parametrize("shape", [(5, 2, 32, 32), (3, 6, 32, 32), (1, 3, 9, 11)])
def test_prepare_of_uint8_is_bitwise_the_float_path_channels_last(shape):
    x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    reference = (x.float() * (1.0 / 255.0)).contiguous(memory_format=torch.channels_last)
    for inp in (x, x.float()):
        p = ConvEncoder.prepare(inp)
        assert p.dtype == torch.float32 and p.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(p, reference) and p.stride() == reference.stride()


def test_image_skill_model_shapes_loss_and_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = SkillModel(_image_config())
    states = torch.stack([_images(6, s) for s in range(H + 1)], dim=1)  # (B, H+1, C, H, W) uint8
    actions = torch.randn(6, H, A)
    assert model.prior(states[:, 0]).shape == (6, 2 * Z)
    assert model.prior.in_shape == IMG and model.config.obs_shape == IMG
    out = model.loss(states, actions)
    assert all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    assert model.prior.encoder.net[0].weight.grad is not None  # the prior loss trains the conv encoder
    path = save_skill_model(tmp_path / "m.pt", model.eval())
    loaded = load_skill_model(path)
    assert loaded.config == model.config
    torch.testing.assert_close(loaded.prior(states[:, 0]), model.prior(states[:, 0]))
    flat = SkillModel(_image_config(decoder="flat", horizon=1, latent_dim=A))  # flat action prior on images
    assert flat.loss(states[:, :2], actions[:, :1])["loss"].isfinite()


def test_closed_loop_image_model_decodes_from_its_own_conv_features(tmp_path):
    """Closed loop on images (the reference's ImageClSPiRLMdl): the encoder and decoder read a conv of s_t
    that is not the prior's; reconstruction trains it; step t's action reads image t."""
    torch.manual_seed(0)
    model = SkillModel(_image_config(decoder="closed_loop"))
    assert model.state_encoder is not None and model.state_encoder is not model.prior.encoder
    states = torch.stack([_images(6, s) for s in range(H + 1)], dim=1)  # (B, H+1, C, H, W) uint8
    actions = torch.randn(6, H, A)
    out = model.loss(states, actions)
    assert all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    assert model.state_encoder.net[0].weight.grad.abs().sum() > 0  # trained by reconstruction (+ beta KL)
    model.eval()
    z = torch.randn(6, Z)
    with torch.no_grad():
        rec = model.reconstruct(z, states)
        for t in (0, H - 1):
            torch.testing.assert_close(rec[:, t], model.decode_step(z, states[:, t]))
        assert not torch.allclose(rec[:, 0], model.decode_step(z, states[:, 1]))
        # flattened images are read the same as (C, H, W) ones
        torch.testing.assert_close(model.decode_step(z, states[:, 2].reshape(6, -1)), rec[:, 2])
        # the posterior reads the images: other images, another q(z | a, s)
        q1, q2 = model.posterior(actions, states), model.posterior(actions, states.flip(1))
        assert not torch.allclose(q1.loc, q2.loc)
        with pytest.raises(ValueError, match=r"reads states of shape \(\.\.\., 2, 32, 32\) or \(\.\.\., 2048\)"):
            model.decode_step(z, torch.zeros(6, 25))
    path = save_skill_model(tmp_path / "cl.pt", model)
    loaded = load_skill_model(path)
    torch.testing.assert_close(loaded.decode_step(z, states[:, 0]), model.decode_step(z, states[:, 0]))


def test_image_config_validation_and_unchanged_vector_configs():
    with pytest.raises(ValueError, match="C\\*H\\*W"):
        SkillModelConfig(obs_dim=10, action_dim=A, image_shape=IMG)
    with pytest.raises(ValueError, match="decoder_state_conditioned needs state vectors"):
        SkillModelConfig(obs_dim=2048, action_dim=A, image_shape=IMG, decoder_state_conditioned=True)
    # vector-state configs serialise without the image fields: prior cache keys stay what they were
    vec = SkillModelConfig(obs_dim=30, action_dim=9)
    assert not {"image_shape", "conv_channels", "conv_kernel"} & set(vec.model_dump())
    assert "conv" not in vec.model_dump_json()
    assert _image_config().model_dump()["image_shape"] == IMG


def _module(path, inference_only=False, **model_config):
    cfg = {"skill_model_path": path, "twin_q": True, "policy_hidden": 32, "policy_layers": 3,
           "critic_hidden": 64, "critic_layers": 2, **model_config}
    module = SPiRLTorchRLModule(observation_space=gym.spaces.Box(0, 255, IMG, np.uint8),
                                action_space=gym.spaces.Box(-2, 2, (Z,), np.float32),
                                inference_only=inference_only, model_config=cfg)
    if not inference_only:
        module.make_target_networks()
    return module


def test_policy_equals_image_prior_at_init(image_prior_path):
    prior = load_skill_model(image_prior_path).prior
    module = _module(image_prior_path)
    x = _images(20, seed=3)
    with torch.no_grad():
        ref = prior(x)
        module.train()
        out = module.forward_inference({Columns.OBS: x})[Columns.ACTION_DIST_INPUTS]
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(module.pi(x[:1]), ref[:1])  # one state == in a batch
        assert out.shape == (20, 2 * Z)
    # EnvRunner side: no prior, no critics, but the same conv architecture (weights sync in)
    light = _module(image_prior_path, inference_only=True)
    light.set_state(module.get_state(inference_only=True))
    with torch.no_grad():
        torch.testing.assert_close(light.forward_inference({Columns.OBS: x})[Columns.ACTION_DIST_INPUTS], ref)


def test_image_critics_are_conv_features_plus_action(image_prior_path):
    module = _module(image_prior_path)
    b = 16
    batch = {Columns.OBS: _images(b, 1).float(), Columns.NEXT_OBS: _images(b, 2).float(),  # replay stores float32
             Columns.ACTIONS: torch.rand(b, Z) * 2 - 1, Columns.REWARDS: torch.zeros(b), Columns.TERMINATEDS: torch.zeros(b)}
    out = module.forward_train(batch)
    assert out["qf_preds"].shape == (b,) and out["qf_twin_preds"].shape == (b,) and out["q_target_next"].shape == (b,)
    assert out[PRIOR_DIST_INPUTS].shape == (b, 2 * Z)
    for enc, head in ((module.qf_encoder, module.qf), (module.qf_twin_encoder, module.qf_twin)):
        assert isinstance(enc.conv, ConvEncoder) and enc.conv.out_dim == 512
        assert head[0].in_features == 512 + Z and head[0].out_features == 64
    assert module.qf_encoder.conv is not module.qf_twin_encoder.conv  # each critic its own encoder
    # targets copy the conv encoders too (polyak-updated with the heads)
    pairs = {id(main) for main, _ in module.get_target_network_pairs()}
    assert id(module.qf_encoder) in pairs and id(module.qf_twin_encoder) in pairs


def test_image_learner_update_is_finite(image_prior_path):
    from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

    obs_space = gym.spaces.Box(0, 255, IMG, np.uint8)
    act_space = gym.spaces.Box(-2, 2, (Z,), np.float32)

    class _Env(gym.Env):
        observation_space, action_space = obs_space, act_space

    config = (SPiRLConfig().environment(observation_space=obs_space, action_space=act_space)
              .training(skill_model_path=image_prior_path, train_batch_size_per_learner=16, target_divergence=1.0)
              .rl_module(model_config={"critic_hidden": 32, "critic_layers": 2}))
    learner = config.build_learner(env=_Env())
    b = 16
    data = {Columns.OBS: _images(b, 4).float().numpy(), Columns.NEXT_OBS: _images(b, 5).float().numpy(),
            Columns.ACTIONS: np.random.default_rng(0).uniform(-1, 1, (b, Z)).astype(np.float32),
            Columns.REWARDS: np.zeros(b, np.float32), Columns.TERMINATEDS: np.zeros(b, np.float32)}
    conv_before = learner.module[DEFAULT_MODULE_ID].qf_encoder.conv.net[0].weight.detach().clone()
    res = learner.update(batch=MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(data)}, env_steps=b), timesteps={})
    stats = {k: v.peek() for k, v in res[DEFAULT_MODULE_ID].items() if hasattr(v, "peek")}
    for k in ("policy_loss", "qf_loss", "alpha_loss", "kl_to_prior"):
        assert np.isfinite(stats[k]), k
    assert stats["kl_to_prior"] == pytest.approx(0.0, abs=1e-4)  # policy == prior at init
    assert not torch.equal(learner.module[DEFAULT_MODULE_ID].qf_encoder.conv.net[0].weight, conv_before)


# ---- the learner's image forward and its speed options -------------------------------------------
OPTIONS = [{}, {"shared_image_encoder": True}, {"freeze_policy_encoder": True},
           {"shared_image_encoder": True, "freeze_policy_encoder": True}, {"critic_prior_encoder": True},
           {"critic_prior_encoder": True, "freeze_policy_encoder": True}]
OPTION_IDS = ["separate", "shared", "frozen_pi", "shared+frozen_pi", "prior_critic", "prior_critic+frozen_pi"]


def _perturbed_module(path, **model_config):
    """A module whose policy is not the prior, whose target critics are not the online ones and whose
    twin critics differ: a forward that read the wrong network would give different numbers."""
    torch.manual_seed(1)
    module = _module(path, squash_scale=2.0, **model_config)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith(("pi.net", "target_", "qf_twin")) or (name.startswith("pi.encoder") and p.requires_grad):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return module


def _image_batch(b=16):
    return {Columns.OBS: _images(b, 11), Columns.NEXT_OBS: _images(b, 12),
            Columns.ACTIONS: torch.rand(b, Z, generator=torch.Generator().manual_seed(3)) * 2 - 1}


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
def test_fused_image_forward_equals_rllib_generic_forward(image_prior_path, options):
    """Every forward output, and the gradient of every trained parameter, equal RLlib's generic SAC forward."""
    generic = _perturbed_module(image_prior_path, fused_image_forward=False, **options)
    fused = _perturbed_module(image_prior_path, **options)
    batch = _image_batch()
    torch.manual_seed(5)
    ref = generic.forward_train(batch)
    torch.manual_seed(5)
    out = fused.forward_train(batch)
    assert set(out) == set(ref)
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], rtol=1e-6, atol=1e-6, msg=k)
    # the policy really is not the prior here, and the target critics not the online ones
    assert not torch.allclose(ref[Columns.ACTION_DIST_INPUTS], ref[PRIOR_DIST_INPUTS])
    assert not torch.allclose(ref["q_target_next"], torch.min(ref["qf_preds"], ref["qf_twin_preds"]))

    def grads(module, o):
        w = torch.arange(1, 17, dtype=torch.float32)  # distinct weights per row
        loss = sum((w * o[k]).sum() for k in ("qf_preds", "qf_twin_preds", "q_curr", "logp_resampled"))
        loss = loss + (o[Columns.ACTION_DIST_INPUTS] ** 2).sum()
        params = {n: p for n, p in module.named_parameters() if p.requires_grad}
        gs = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        return dict(zip(params, gs))

    # float tolerance: a shared conv sums the two critics' feature gradients before its backward
    # instead of accumulating two backward passes (same terms, another summation order)
    g_ref, g_out = grads(generic, ref), grads(fused, out)
    assert set(g_ref) == set(g_out)
    for n in g_ref:
        assert (g_ref[n] is None) == (g_out[n] is None), n
        if g_ref[n] is not None:
            torch.testing.assert_close(g_out[n], g_ref[n], rtol=1e-4, atol=1e-5, msg=lambda m: f"{n}: {m}")
    # q_curr's gradient reaches the resampled skill only: never a critic parameter
    q_only = torch.autograd.grad(out["q_curr"].sum(), [p for n, p in fused.named_parameters() if n.startswith("qf")],
                                 allow_unused=True)
    assert all(g is None for g in q_only)


def test_shared_image_encoder_is_one_conv_for_both_critics(image_prior_path):
    module = _module(image_prior_path, shared_image_encoder=True)
    assert module.qf_twin_encoder.conv is module.qf_encoder.conv
    assert module.target_qf_twin_encoder.conv is module.target_qf_encoder.conv
    assert module.target_qf_encoder.conv is not module.qf_encoder.conv
    assert not list(module.qf_twin_encoder.parameters()) and not list(module.target_qf_twin_encoder.parameters())
    convs = {id(m) for m in module.modules() if isinstance(m, ConvEncoder)}
    assert len(convs) == 4  # policy, prior, critic, target critic (separate encoders: 6)
    assert len({id(m) for m in _module(image_prior_path).modules() if isinstance(m, ConvEncoder)}) == 6
    # the twin critic reads the shared conv: its output moves when that conv changes
    batch = {**_image_batch(4), Columns.ACTIONS: torch.zeros(4, Z)}
    with torch.no_grad():
        before = module.qf_twin(module.qf_twin_encoder(batch)["encoder_out"])
        module.qf_encoder.conv.net[0].bias.add_(1.0)
        assert not torch.allclose(module.qf_twin(module.qf_twin_encoder(batch)["encoder_out"]), before)


def test_critic_prior_encoder_critics_read_the_frozen_priors_conv(image_prior_path):
    module = _module(image_prior_path, critic_prior_encoder=True)
    prior_conv = module.skill_prior.encoder
    assert module.qf_encoder.conv is prior_conv and module.qf_twin_encoder.conv is prior_conv
    for enc in (module.qf_encoder, module.qf_twin_encoder, module.target_qf_encoder, module.target_qf_twin_encoder):
        assert not list(enc.parameters())  # nothing to train, polyak-update or checkpoint twice
    assert len({id(m) for m in module.modules() if isinstance(m, ConvEncoder)}) == 2  # policy, prior
    batch = {**_image_batch(6), Columns.REWARDS: torch.zeros(6), Columns.TERMINATEDS: torch.zeros(6)}
    a = batch[Columns.ACTIONS]
    out = module.forward_train(batch)
    with torch.no_grad():
        f = prior_conv(batch[Columns.OBS])
        torch.testing.assert_close(out["qf_preds"], module.qf(torch.cat([f, a], -1)).squeeze(-1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out["qf_twin_preds"], module.qf_twin(torch.cat([f, a], -1)).squeeze(-1),
                                   rtol=1e-5, atol=1e-5)
        # the critics' output follows the prior's conv, in both forwards
        prior_conv.net[0].bias.add_(0.5)
        generic = module.qf(module.qf_encoder(batch)["encoder_out"]).squeeze(-1)
        assert not torch.allclose(generic, out["qf_preds"])
        torch.testing.assert_close(module.forward_train(batch)["qf_preds"], generic, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="critic_prior_encoder=True.*use_skill_prior=True"):
        _module(image_prior_path, critic_prior_encoder=True, use_skill_prior=False)


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
def test_image_learner_steps_equal_rllib_reference_path(image_prior_path, options):
    """3 gradient steps of the fast path with the fused forward == 3 RLlib updates with RLlib's generic forward
    (per-optimizer backward, for-loop Adam): with a shared encoder, both give it the gradient of both critic losses."""
    ref = _image_learner(image_prior_path, fast=False, fused_image_forward=False, **options)
    fast = _image_learner(image_prior_path, **options)
    s0 = _state(ref)
    owned = [id(p) for _, opt in fast.get_optimizers_for_module(DEFAULT_MODULE_ID) for g in opt.param_groups
             for p in g["params"]]
    assert len(owned) == len(set(owned))  # a shared conv is stepped by one optimizer, once
    for k, v in _state(fast).items():
        torch.testing.assert_close(v, s0[k], rtol=0, atol=0, msg=k)
    reference_vs_fast_steps(ref, fast, _image_data(48), 16)
    s_ref, s_fast = _state(ref), _state(fast)
    assert set(s_ref) == set(s_fast)
    for k in s_ref:
        torch.testing.assert_close(s_fast[k], s_ref[k], rtol=1e-4, atol=1e-5, msg=k)
    moved = {k for k in s0 if not torch.equal(s_fast[k], s0[k])}
    if options.get("critic_prior_encoder"):  # no critic conv: the critic MLPs and their targets learn
        assert not any(k.startswith(("qf_encoder", "qf_twin_encoder", "target_qf")) and "conv" in k for k in s0)
        assert {"qf.0.weight", "qf_twin.0.weight", "target_qf.0.weight"} <= moved
        assert not any(k.startswith("skill_prior") for k in moved)
    else:
        assert "qf_encoder.conv.net.0.weight" in moved and "target_qf_encoder.conv.net.0.weight" in moved
    assert "pi.net.0.weight" in moved
    assert ("pi.encoder.net.0.weight" in moved) != bool(options.get("freeze_policy_encoder"))
    if options.get("freeze_policy_encoder"):  # frozen: still the prior's conv, bit for bit
        prior = load_skill_model(image_prior_path).prior
        for k, v in prior.encoder.state_dict().items():
            assert torch.equal(s_fast[f"pi.encoder.{k}"], v), k


def test_frozen_policy_encoder_that_is_not_the_priors_runs_on_its_own(image_prior_path):
    """freeze_policy_encoder reuses the prior's conv features only while the policy's conv IS the prior's."""
    generic = _perturbed_module(image_prior_path, fused_image_forward=False, freeze_policy_encoder=True)
    fused = _perturbed_module(image_prior_path, freeze_policy_encoder=True)
    for m in (generic, fused):  # e.g. a checkpoint of a run that trained the policy's conv
        with torch.no_grad():
            m.pi.encoder.net[0].weight.mul_(1.5)
    batch = _image_batch()
    torch.manual_seed(5)
    ref = generic.forward_train(batch)
    torch.manual_seed(5)
    out = fused.forward_train(batch)
    for k in (Columns.ACTION_DIST_INPUTS, "action_dist_inputs_next", "q_target_next"):
        torch.testing.assert_close(out[k], ref[k], rtol=1e-6, atol=1e-6, msg=k)
