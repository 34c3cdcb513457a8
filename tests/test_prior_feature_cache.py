"""The replay's cache of the frozen prior's conv features (``cache_prior_features``): same learner, bit for bit."""

import gymnasium as gym
import numpy as np
import pytest
import ray
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

from spirl_ray.rl.spirl import SPiRLConfig, SPiRLTorchRLModule, TransitionReplayBuffer
from spirl_ray.rl.spirl.rl_module import PRIOR_DIST_INPUTS, PRIOR_FEATURES, PRIOR_FEATURES_NEXT
from spirl_ray.skills.checkpoint import save_skill_model
from spirl_ray.skills.models import ConvEncoder, SkillModel, SkillModelConfig

from image_learner_kit import IMG, A, H, Z, image_data, image_learner, image_spaces

B, K = 16, 3


@pytest.fixture(scope="module")
def prior_path(tmp_path_factory):
    """An image skill model with non-trivial BatchNorm statistics in its prior MLP."""
    torch.manual_seed(0)
    cfg = SkillModelConfig(obs_dim=int(np.prod(IMG)), action_dim=A, image_shape=IMG, horizon=H, latent_dim=Z,
                           prior_hidden=32, prior_layers=3, lstm_hidden=16, beta=1e-2)
    model = SkillModel(cfg)
    model.prior.train()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(5):
            model.prior(torch.randint(0, 256, (64, *IMG), dtype=torch.uint8, generator=g))
    model.eval()
    return str(save_skill_model(tmp_path_factory.mktemp("cache") / "skills.pt", model))


def _spaces():
    return image_spaces()


def _learner(path, **training):
    return image_learner(path, batch_size=B, **training)


def _data(n=K * B, seed=4):
    return image_data(n, seed)


def _with_features(learner, data, swap=False):
    module = learner.module[DEFAULT_MODULE_ID]
    f = module.prior_features(torch.from_numpy(data[Columns.OBS])).numpy()
    f_next = module.prior_features(torch.from_numpy(data[Columns.NEXT_OBS])).numpy()
    if swap:
        f, f_next = f_next, f
    return {**data, PRIOR_FEATURES: f, PRIOR_FEATURES_NEXT: f_next}


def _run(learner, data):
    """K fast-path gradient steps; returns (last step's loss stats, every parameter's last gradient, new state)."""
    torch.manual_seed(0)
    res = learner.update(batch=MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(data)}, env_steps=len(data[Columns.REWARDS])),
                         minibatch_size=B, num_epochs=1, timesteps={"num_env_steps_sampled_lifetime": 1000})
    module = learner.module[DEFAULT_MODULE_ID]
    stats = {k: float(v.peek()) for k, v in res[DEFAULT_MODULE_ID].items()
             if k in ("policy_loss", "qf_loss", "qf_twin_loss", "alpha_loss", "kl_to_prior", "qf_target_mean")}
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    return stats, grads, state


OPTIONS = [{}, {"freeze_policy_encoder": True}, {"shared_image_encoder": True, "freeze_policy_encoder": True},
           {"critic_prior_encoder": True, "freeze_policy_encoder": True}]
OPTION_IDS = ["separate", "frozen_pi", "shared+frozen_pi", "prior_critic+frozen_pi"]


def test_prior_features_are_the_forward_conv_features_bit_for_bit(prior_path):
    """Any number of rows, one image included, gives exactly the rows of a training-size (256) forward conv."""
    module = _learner(prior_path).module[DEFAULT_MODULE_ID]
    x = torch.from_numpy(_data(256)[Columns.OBS])
    with torch.no_grad():
        ref = module.skill_prior.encoder.features(ConvEncoder.prepare(x))[:33]
    x = x[:33]
    assert ref.shape == (33, module.skill_prior.encoder.out_dim) and ref.dtype == torch.float32
    for n in (1, 2, 3, 16, 33):
        assert torch.equal(module.prior_features(x[:n]), ref[:n]), n
    assert torch.equal(module.prior_features(x, chunk=16), ref)  # a last chunk of one row (33 = 2 x 16 + 1)
    assert torch.equal(module.prior_features(x[:3], chunk=1), ref[:3])  # every chunk one row
    # the fingerprint follows the prior conv's weights
    key = module.prior_features_key()
    assert key == _learner(prior_path).module[DEFAULT_MODULE_ID].prior_features_key()
    with torch.no_grad():
        module.skill_prior.encoder.net[0].bias.add_(1e-3)
    assert module.prior_features_key() != key


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
def test_learner_steps_with_cached_features_equal_steps_without(prior_path, options):
    """K gradient steps on a batch carrying the cache == on the batch without it: the losses, every gradient and
    every parameter bit for bit; the same batch with s and s' features swapped gives other numbers."""
    data = _data()
    ref = _run(_learner(prior_path, **options), data)
    cached = _learner(prior_path, **options)
    out = _run(cached, _with_features(cached, data))
    for r, o in zip(ref, out):
        assert set(r) == set(o) and r
        for k in r:
            assert torch.equal(torch.as_tensor(o[k]), torch.as_tensor(r[k])), k
    swapped = _learner(prior_path, **options)
    bad = _run(swapped, _with_features(swapped, data, swap=True))
    assert bad[0]["kl_to_prior"] != ref[0]["kl_to_prior"]
    assert not torch.equal(bad[2]["pi.net.0.weight"], ref[2]["pi.net.0.weight"])


def _module(path, **model_config):
    obs_space, act_space = _spaces()
    torch.manual_seed(1)
    mc = {"skill_model_path": path, "twin_q": True, "policy_hidden": 32, "policy_layers": 3, "critic_hidden": 32,
          "critic_layers": 2, "squash_scale": 2.0, **model_config}
    module = SPiRLTorchRLModule(observation_space=obs_space, action_space=act_space, model_config=mc)
    module.make_target_networks()
    return module


def _forward(module, batch):
    torch.manual_seed(5)
    return module.forward_train(batch)


def _batch(module, garbage=False):
    data = _data(B)
    batch = {k: torch.from_numpy(v) for k, v in data.items() if k in (Columns.OBS, Columns.NEXT_OBS, Columns.ACTIONS)}
    f, f_next = module.prior_features(batch[Columns.OBS]), module.prior_features(batch[Columns.NEXT_OBS])
    if garbage:
        f, f_next = torch.rand_like(f), torch.rand_like(f_next)
    return batch, {**batch, PRIOR_FEATURES: f, PRIOR_FEATURES_NEXT: f_next}


def test_forward_reads_the_cache_for_the_prior_and_a_frozen_policy_that_is_the_prior(prior_path):
    module = _module(prior_path, freeze_policy_encoder=True)
    plain, cached = _batch(module, garbage=True)
    ref, out = _forward(module, plain), _forward(module, cached)
    # garbage in the cache reaches the prior's and the policy's outputs: the columns are read ...
    assert not torch.allclose(out[PRIOR_DIST_INPUTS], ref[PRIOR_DIST_INPUTS])
    assert not torch.allclose(out[Columns.ACTION_DIST_INPUTS], ref[Columns.ACTION_DIST_INPUTS])
    # ... and nothing else: the critics read the images
    assert torch.equal(out["qf_preds"], ref["qf_preds"])


def test_policy_whose_conv_is_not_the_priors_does_not_read_the_cache(prior_path):
    """A frozen policy encoder holding other weights (e.g. restored from a run that trained it) computes its own."""
    module = _module(prior_path, freeze_policy_encoder=True)
    with torch.no_grad():
        module.pi.encoder.net[0].weight.mul_(1.5)
    plain, cached = _batch(module)
    ref, out = _forward(module, plain), _forward(module, cached)
    for k in ref:
        assert torch.equal(out[k], ref[k]), k
    # not the prior: with the policy reading the prior's features it would differ
    assert not torch.allclose(ref[Columns.ACTION_DIST_INPUTS], ref[PRIOR_DIST_INPUTS])
    _, garbage = _batch(module, garbage=True)
    assert torch.equal(_forward(module, garbage)[Columns.ACTION_DIST_INPUTS], ref[Columns.ACTION_DIST_INPUTS])


def test_cache_is_ignored_once_the_prior_holds_other_weights(prior_path):
    """Features computed before the prior changed (a restore of another prior) are not used, until recomputed."""
    module = _module(prior_path, freeze_policy_encoder=True)
    _, stale = _batch(module)
    with torch.no_grad():
        for p in module.skill_prior.encoder.parameters():
            p.mul_(0.9)
        module.pi.encoder.load_state_dict(module.skill_prior.encoder.state_dict())
    plain = {k: v for k, v in stale.items() if k not in (PRIOR_FEATURES, PRIOR_FEATURES_NEXT)}
    ref = _forward(module, plain)
    out = _forward(module, stale)
    for k in ref:
        assert torch.equal(out[k], ref[k]), k
    _, fresh = _batch(module)  # prior_features() with the new weights: the cache is valid again
    out = _forward(module, fresh)
    for k in ref:
        assert torch.equal(out[k], ref[k]), k
    assert not torch.equal(fresh[PRIOR_FEATURES], stale[PRIOR_FEATURES])
    # a module that never computed features (none to trust) ignores the columns
    other = _module(prior_path, freeze_policy_encoder=True)
    assert torch.equal(_forward(other, _batch(module, garbage=True)[1])[PRIOR_DIST_INPUTS],
                       _forward(other, plain)[PRIOR_DIST_INPUTS])


def test_prior_features_needs_an_image_prior(prior_path):
    module = _module(prior_path, use_skill_prior=False)
    with pytest.raises(ValueError, match="skill prior loaded on the learner"):
        module.prior_features(torch.zeros(2, *IMG, dtype=torch.uint8))


# ---- the replay buffer ---------------------------------------------------------------------------
class _Encoder:
    """Stand-in feature encoder: (N, C, H, W) images -> (N, 3) [mean pixel, first pixel, scale]; counts calls."""

    def __init__(self, scale=1.0):
        self.scale, self.calls = scale, []

    def __call__(self, images):
        self.calls.append(len(images))
        x = images.reshape(len(images), -1).astype(np.float32)
        f = np.stack([x.mean(1), x[:, 0], np.full(len(x), self.scale, np.float32)], 1) * self.scale
        return f, f"key{self.scale}"


def _image(v):
    return np.full(IMG, v, np.uint8)


def _episodes():
    ep = SingleAgentEpisode()
    ep.add_env_reset(observation=_image(0))
    for t in range(1, 4):
        ep.add_env_step(observation=_image(t), action=np.full(Z, t, np.float32), reward=float(t))
    cont = ep.cut()
    for t in range(4, 6):
        cont.add_env_step(observation=_image(t), action=np.full(Z, t, np.float32), reward=float(t), terminated=t == 5)
    return [ep.to_numpy(), cont.to_numpy()]


def _check_aligned(buf, scale):
    data = buf.sample(300)
    f, f_next = data[PRIOR_FEATURES], data[PRIOR_FEATURES_NEXT]
    assert f.dtype == np.float32 and f.shape == (300, 3)
    np.testing.assert_array_equal(f[:, 1], data[Columns.OBS][:, 0, 0, 0] * np.float32(scale))
    np.testing.assert_array_equal(f_next[:, 1], data[Columns.NEXT_OBS][:, 0, 0, 0] * np.float32(scale))
    np.testing.assert_array_equal(f[:, 2], np.float32(scale * scale))
    return data


def test_replay_stores_each_transitions_features_of_s_and_s_next_in_one_encoder_call():
    enc = _Encoder()
    buf = TransitionReplayBuffer(capacity=4, seed=0, prior_features=enc)
    assert buf.add_episodes(_episodes()) == 5
    assert enc.calls == [4 + 3]  # one call: each chunk's T + 1 observations
    data = _check_aligned(buf, 1.0)
    assert set(data[Columns.OBS][:, 0, 0, 0].tolist()) == {1, 2, 3, 4}  # FIFO, as without the cache
    assert not np.array_equal(data[PRIOR_FEATURES], data[PRIOR_FEATURES_NEXT])
    # add() computes them when not given; a buffer without the cache has no feature columns and refuses them
    buf.add(obs=_image(7)[None], actions=np.zeros((1, Z), np.float32), rewards=np.zeros(1, np.float32),
            next_obs=_image(8)[None], terminateds=np.zeros(1, np.float32))
    assert enc.calls[-1] == 2
    _check_aligned(buf, 1.0)
    plain = TransitionReplayBuffer(capacity=4, seed=0)
    plain.add_episodes(_episodes())
    assert PRIOR_FEATURES not in plain.sample(1)
    with pytest.raises(ValueError, match="without the feature cache"):
        plain.add(obs=_image(7)[None], actions=np.zeros((1, Z), np.float32), rewards=np.zeros(1, np.float32),
                  next_obs=_image(8)[None], terminateds=np.zeros(1, np.float32), prior_features=np.zeros((1, 3)),
                  prior_features_next=np.zeros((1, 3)))


def test_replay_recomputes_stored_features_when_the_encoders_weights_change():
    enc = _Encoder()
    buf = TransitionReplayBuffer(capacity=8, seed=0, prior_features=enc)
    buf.add_episodes(_episodes())
    enc.scale = 2.0  # e.g. the learner's prior was restored from another skill model
    buf.add_episodes(_episodes())
    _check_aligned(buf, 2.0)  # no row keeps a feature of the old weights


def test_replay_state_round_trip_keeps_or_recomputes_the_features():
    enc = _Encoder()
    buf = TransitionReplayBuffer(capacity=4, seed=0, prior_features=enc)
    buf.add_episodes(_episodes())
    state = buf.get_state()
    assert state["prior_features_key"] == "key1.0"
    same = _Encoder()
    restored = TransitionReplayBuffer(capacity=4, seed=0, prior_features=same)
    restored.set_state(state)
    assert same.calls == [2]  # only the fingerprint check: the stored features are kept
    np.testing.assert_array_equal(restored._data[PRIOR_FEATURES][:4], buf._data[PRIOR_FEATURES][:4])
    other = TransitionReplayBuffer(capacity=4, seed=0, prior_features=_Encoder(3.0))
    other.set_state(state)
    _check_aligned(other, 3.0)
    plain_state = TransitionReplayBuffer(capacity=4)
    plain_state.add_episodes(_episodes())
    late = TransitionReplayBuffer(capacity=4, prior_features=_Encoder())  # a state made without the cache
    late.set_state(plain_state.get_state())
    _check_aligned(late, 1.0)
    dropped = TransitionReplayBuffer(capacity=4)  # a state with features into a buffer without the cache
    dropped.set_state(state)
    assert PRIOR_FEATURES not in dropped.sample(1) and dropped.get_state()["prior_features_key"] is None


# ---- the algorithm ------------------------------------------------------------------------------
class _ImageSkillEnv(gym.Env):
    """2 x 32 x 32 uint8 image states, Box(-2, 2, (Z,)) skills, 6 high-level steps of H env steps."""

    def __init__(self, config=None):
        self.observation_space, self.action_space = _spaces()
        self.t = 0

    def _obs(self):
        return self.np_random.integers(0, 256, IMG, dtype=np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), -float(np.sum(np.square(action))), False, self.t >= 6, {"env_steps": H}


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=1, object_store_memory=2 * 10**8, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _algo_config(path, **training):
    return (SPiRLConfig().environment(_ImageSkillEnv).env_runners(num_env_runners=0)
            .training(skill_model_path=path, train_batch_size_per_learner=B, warmup_env_steps=4 * H, target_divergence=1.0,
                      replay_buffer_config={"type": "EpisodeReplayBuffer", "capacity": 1000}, **training)
            .rl_module(model_config={"critic_hidden": 32, "critic_layers": 2})
            .reporting(min_sample_timesteps_per_iteration=8, min_time_s_per_iteration=0)
            .debugging(seed=0))


def test_algorithm_fills_the_replay_with_its_learners_prior_features(ray_session, prior_path):
    algo = _algo_config(prior_path, cache_prior_features=True, freeze_policy_encoder=True).build_algo()
    try:
        for _ in range(2):
            result = algo.train()
        assert result["num_gradient_updates_lifetime"] > 0
        buf = algo.local_replay_buffer
        module = algo.learner_group._learner.module[DEFAULT_MODULE_ID]
        n = len(buf)
        assert n >= 8
        for src, dst in ((Columns.OBS, PRIOR_FEATURES), (Columns.NEXT_OBS, PRIOR_FEATURES_NEXT)):
            assert np.array_equal(buf._data[dst][:n], module.prior_features(torch.from_numpy(buf._data[src][:n])).numpy())
        assert buf.get_state()["prior_features_key"] == module.prior_features_key()
    finally:
        algo.stop()
    with pytest.raises(ValueError, match="use_skill_prior"):
        _algo_config(prior_path, cache_prior_features=True, use_skill_prior=False).validate()
    with pytest.raises(ValueError, match="cache_prior_features must be a bool"):
        _algo_config(prior_path, cache_prior_features="yes").validate()
    bad = _algo_config(prior_path, cache_prior_features=True).rl_module(
        model_config={"critic_hidden": 32, "critic_layers": 2, "fused_image_forward": False})
    with pytest.raises(ValueError, match="fused_image_forward"):
        bad.build_algo()
