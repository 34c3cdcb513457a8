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

IMG = (2, 32, 32)
Z, H, A = 4, 5, 2


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


def test_image_config_validation_and_unchanged_vector_configs():
    with pytest.raises(ValueError, match="C\\*H\\*W"):
        SkillModelConfig(obs_dim=10, action_dim=A, image_shape=IMG)
    with pytest.raises(ValueError, match="closed-loop"):
        SkillModelConfig(obs_dim=2048, action_dim=A, image_shape=IMG, decoder="closed_loop")
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
