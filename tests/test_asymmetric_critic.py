"""Asymmetric critic (``rl.asymmetric_critic``): the critics read the env's low-dimensional state, the policy the images.

The wiring is checked end to end: the env reports ``info["state"]``, the replay stores it aligned with s and s',
the learner's forward feeds s_low to the critics and s_low' to the target critics, and the config reaches all three.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from spirl_ray.experiments.config import ConfigError, load_config
from spirl_ray.rl.spirl import SPiRLTorchRLModule
from spirl_ray.rl.spirl.rl_module import CRITIC_STATE, CRITIC_STATE_NEXT
from spirl_ray.rl.spirl.spirl import TransitionReplayBuffer

from image_learner_kit import IMG, Z

D = 7  # critic state dim of the module tests


# ---- env -------------------------------------------------------------------------------------
def test_block_stacking_reports_its_state_vector_in_info_only_when_asked():
    from spirl_ray.envs.block_stacking import make_block_stacking_env

    env = make_block_stacking_env(obs_mode="image", state_in_info=True, max_episode_steps=5)
    obs, info = env.reset(seed=0)
    assert obs.shape == (6, 32, 32) and obs.dtype == np.uint8
    assert info["state"].shape == (5 + 4 * 11,) and info["state"].dtype == np.float32
    np.testing.assert_array_equal(info["state"], env.state_vector())
    before = info["state"]
    _, _, _, _, info = env.step(np.array([1.0, -1.0, 0.0], np.float32))
    np.testing.assert_array_equal(info["state"], env.state_vector())
    assert not np.array_equal(info["state"][:2], before[:2])  # the gripper moved: the info is this step's state
    plain = make_block_stacking_env(obs_mode="image", max_episode_steps=5)
    assert "state" not in plain.reset(seed=0)[1]


def test_maze_reports_position_and_velocity_in_info_only_when_asked():
    from spirl_ray.envs.maze import make_maze_env

    env = make_maze_env(size=6, state="image", state_in_info=True, goal_distance=None)
    _, info = env.reset(seed=0)
    assert info["state"].shape == (4,) and info["state"].dtype == np.float32
    np.testing.assert_array_equal(info["state"][:2], np.asarray(info["xy"], np.float32))
    for _ in range(3):
        _, _, _, _, info = env.step(np.array([1.0, 0.5], np.float32))
    np.testing.assert_array_equal(info["state"], env.state_vector())
    assert info["state"][2] > 0  # moving along +x: this step's velocity
    assert "state" not in make_maze_env(size=6, state="image", goal_distance=None).reset(seed=0)[1]


# ---- replay ----------------------------------------------------------------------------------
def _episode(t, start=0, with_state=True):
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    def info(i):
        return {"state": np.full(3, 100.0 + i, np.float32)} if with_state else {}

    ep = SingleAgentEpisode(observations=[np.full(2, float(start), np.float32)], infos=[info(start)])
    for i in range(start + 1, start + t + 1):
        ep.add_env_step(np.full(2, float(i), np.float32), np.zeros(2, np.float32), float(i), infos=info(i))
    return ep


def test_replay_stores_the_state_of_s_and_of_s_next_from_the_infos():
    buf = TransitionReplayBuffer(capacity=32, seed=0, critic_state=True)
    first = _episode(3)
    second = first.cut()  # a later chunk of the same episode starts at its predecessor's last observation
    second.add_env_step(np.full(2, 4.0, np.float32), np.zeros(2, np.float32), 4.0, infos={"state": np.full(3, 104.0)})
    assert buf.add_episodes([first, second, _episode(2, start=10)]) == 6
    data = {k: v[:len(buf)] for k, v in buf._data.items()}
    # observation i carries state 100 + i: s_low belongs to s, s_low' to s'
    np.testing.assert_array_equal(data[CRITIC_STATE][:, 0], data[Columns.OBS][:, 0] + 100.0)
    np.testing.assert_array_equal(data[CRITIC_STATE_NEXT][:, 0], data[Columns.NEXT_OBS][:, 0] + 100.0)
    np.testing.assert_array_equal(data[Columns.OBS][:, 0], [0, 1, 2, 3, 10, 11])
    assert data[CRITIC_STATE].dtype == np.float32 and data[CRITIC_STATE].shape == (6, 3)
    batch = buf.sample(50)
    np.testing.assert_array_equal(batch[CRITIC_STATE_NEXT][:, 0], batch[Columns.NEXT_OBS][:, 0] + 100.0)
    restored = TransitionReplayBuffer(capacity=32, seed=0, critic_state=True)
    restored.set_state(buf.get_state())
    np.testing.assert_array_equal(restored._data[CRITIC_STATE][:6], data[CRITIC_STATE])


def test_replay_refuses_missing_or_unexpected_critic_states():
    with pytest.raises(ValueError, match=r"info has no 'state' at observation 0"):
        TransitionReplayBuffer(capacity=8, critic_state=True).add_episodes([_episode(2, with_state=False)])
    plain = TransitionReplayBuffer(capacity=8)
    plain.add_episodes([_episode(2)])  # infos with a state are fine without the option: nothing stored
    assert CRITIC_STATE not in plain._data
    block = dict(obs=np.zeros((2, 2)), actions=np.zeros((2, 2)), rewards=np.zeros(2), next_obs=np.zeros((2, 2)),
                 terminateds=np.zeros(2))
    with pytest.raises(ValueError, match="given to a replay buffer built without critic_state"):
        plain.add(**block, critic_state=np.zeros((2, 3)), critic_state_next=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="required by a replay buffer storing"):
        TransitionReplayBuffer(capacity=8, critic_state=True).add(**block)


# ---- RL module -------------------------------------------------------------------------------
def _module(path, **model_config):
    cfg = {"skill_model_path": path, "twin_q": True, "policy_hidden": 32, "policy_layers": 3, "critic_hidden": 64,
           "critic_layers": 2, "critic_state_dim": D, "squash_scale": 2.0, **model_config}
    module = SPiRLTorchRLModule(observation_space=gym.spaces.Box(0, 255, IMG, np.uint8),
                                action_space=gym.spaces.Box(-2, 2, (Z,), np.float32), model_config=cfg)
    module.make_target_networks()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # targets and twin differ from the online critic: reading the wrong one shows
        for name, p in module.named_parameters():
            if name.startswith(("target_", "qf_twin")):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return module


@pytest.fixture(scope="module")
def prior_path(tmp_path_factory):
    from spirl_ray.skills.checkpoint import save_skill_model
    from spirl_ray.skills.models import SkillModel, SkillModelConfig

    from image_learner_kit import A, H

    torch.manual_seed(0)
    cfg = SkillModelConfig(obs_dim=int(np.prod(IMG)), action_dim=A, image_shape=IMG, horizon=H, latent_dim=Z,
                           prior_hidden=32, prior_layers=3, lstm_hidden=16, beta=1e-2)
    return str(save_skill_model(tmp_path_factory.mktemp("asym") / "skills.pt", SkillModel(cfg).eval()))


def _batch(b=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {Columns.OBS: torch.randint(0, 256, (b, *IMG), dtype=torch.uint8, generator=g),
            Columns.NEXT_OBS: torch.randint(0, 256, (b, *IMG), dtype=torch.uint8, generator=g),
            Columns.ACTIONS: torch.rand(b, Z, generator=g) * 2 - 1,
            CRITIC_STATE: torch.randn(b, D, generator=g), CRITIC_STATE_NEXT: torch.randn(b, D, generator=g)}


def test_critics_are_mlps_on_state_and_skill_and_targets_read_the_next_state(prior_path):
    module = _module(prior_path)
    assert module.qf[0].in_features == D + Z and module.qf_twin[0].in_features == D + Z
    assert not any("conv" in n for n, _ in module.named_parameters() if n.startswith(("qf", "target_qf")))
    batch = _batch()
    torch.manual_seed(5)
    out = module.forward_train(batch)
    a = batch[Columns.ACTIONS]
    with torch.no_grad():
        torch.testing.assert_close(out["qf_preds"], module.qf(torch.cat([batch[CRITIC_STATE], a], -1)).squeeze(-1))
        torch.testing.assert_close(out["qf_twin_preds"],
                                   module.qf_twin(torch.cat([batch[CRITIC_STATE], a], -1)).squeeze(-1))
    # the target reads s_low': swapping the two state columns moves it; the images do not reach any critic
    torch.manual_seed(5)
    swapped = module.forward_train({**batch, CRITIC_STATE: batch[CRITIC_STATE_NEXT], CRITIC_STATE_NEXT: batch[CRITIC_STATE]})
    assert not torch.allclose(swapped["q_target_next"], out["q_target_next"])
    assert not torch.allclose(swapped["qf_preds"], out["qf_preds"])
    torch.manual_seed(5)
    other_images = module.forward_train({**batch, Columns.OBS: batch[Columns.NEXT_OBS]})
    torch.testing.assert_close(other_images["qf_preds"], out["qf_preds"])
    assert not torch.allclose(other_images[Columns.ACTION_DIST_INPUTS], out[Columns.ACTION_DIST_INPUTS])
    # q_target_next = min over the two target critics at (s_low', a' ~ pi(s')), recomputed by hand
    torch.manual_seed(5)
    ref = module.forward_train(batch)
    dist = module.get_train_action_dist_cls().from_logits(ref["action_dist_inputs_next"])
    torch.manual_seed(5)
    module.get_train_action_dist_cls().from_logits(ref[Columns.ACTION_DIST_INPUTS]).rsample_and_logp()
    a_next, _ = dist.sample_and_logp()
    with torch.no_grad():
        x = torch.cat([batch[CRITIC_STATE_NEXT], a_next], -1)
        manual = torch.min(module.target_qf(x), module.target_qf_twin(x)).squeeze(-1)
    torch.testing.assert_close(ref["q_target_next"], manual)


def test_module_refuses_a_batch_without_states_and_conflicting_options(prior_path):
    module = _module(prior_path)
    batch = _batch()
    del batch[CRITIC_STATE_NEXT]
    with pytest.raises(ValueError, match="no 'critic_state_next' column"):
        module.forward_train(batch)
    with pytest.raises(ValueError, match="both choose the critics' input"):
        _module(prior_path, critic_prior_encoder=True)
    with pytest.raises(ValueError, match="fused_image_forward=True"):
        _module(prior_path, fused_image_forward=False)


# ---- config ----------------------------------------------------------------------------------
def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_config_option_reaches_env_replay_and_module(tmp_path):
    from spirl_ray.experiments.pipeline import build_algo_config

    off = load_config(_write(tmp_path, "name: x\nenv: {name: block_stacking}\n"))
    on = load_config(_write(tmp_path, "name: x\nenv: {name: block_stacking}\nrl: {asymmetric_critic: true}\n"))
    assert "asymmetric_critic" not in off.model_dump()["rl"] and on.model_dump()["rl"]["asymmetric_critic"] is True
    fake = tmp_path / "skills.pt"  # not read: no validate()
    algo_off, algo_on = build_algo_config(off, fake), build_algo_config(on, fake)
    assert (algo_off.critic_state_dim, algo_on.critic_state_dim) == (None, 5 + 4 * 11)
    assert algo_on._model_config_auto_includes["critic_state_dim"] == 49
    assert algo_off._model_config_auto_includes["critic_state_dim"] is None
    assert algo_on.env_config["env_kwargs"]["state_in_info"] is True
    assert "state_in_info" not in algo_off.env_config["env_kwargs"]


def test_config_refuses_an_env_that_does_not_report_its_state(tmp_path, monkeypatch):
    from spirl_ray.envs.families.maze import MazeFamily

    monkeypatch.setattr(MazeFamily, "state_in_info", False)
    with pytest.raises(ConfigError, match="info\\['state'\\], which env.name 'maze' does not"):
        load_config(_write(tmp_path, "name: x\nenv: {name: maze, state: image}\nrl: {asymmetric_critic: true}\n"))


@pytest.mark.parametrize("env,rl,match", [
    ("{name: block_stacking, state: state, task: data_collection}", "asymmetric_critic: true", "asymmetric_critic: image states only"),
    ("{name: block_stacking}", "asymmetric_critic: true, critic_prior_encoder: true", "both choose the critics' input"),
])
def test_config_refuses_the_option_where_it_cannot_act(tmp_path, env, rl, match):
    with pytest.raises(ConfigError, match=match):
        load_config(_write(tmp_path, f"name: x\nenv: {env}\nrl: {{{rl}}}\n"))


# ---- learner ---------------------------------------------------------------------------------
def test_fast_path_steps_equal_rllib_learner_steps_and_train_the_state_critics(prior_path):
    """3 fast-path gradient steps == 3 RLlib ``Learner.update`` calls (both with the fused forward, the only one
    this option has), reading the batch's critic-state columns; the critic MLPs on [s_low, z] learn."""
    from image_learner_kit import image_data, image_learner, reference_vs_fast_steps
    from image_learner_kit import module_state as state

    ref = image_learner(prior_path, fast=False, critic_state_dim=D)
    fast = image_learner(prior_path, critic_state_dim=D)
    s0 = state(ref)
    data = image_data(48)
    rng = np.random.default_rng(9)
    data[CRITIC_STATE] = rng.normal(size=(48, D)).astype(np.float32)
    data[CRITIC_STATE_NEXT] = rng.normal(size=(48, D)).astype(np.float32)
    reference_vs_fast_steps(ref, fast, data, 16)
    s_ref, s_fast = state(ref), state(fast)
    for k in s_ref:
        torch.testing.assert_close(s_fast[k], s_ref[k], rtol=1e-4, atol=1e-5, msg=k)
    moved = {k for k in s0 if not torch.equal(s_fast[k], s0[k])}
    assert {"qf.0.weight", "qf_twin.0.weight", "target_qf.0.weight", "pi.net.0.weight"} <= moved
    assert s_fast["qf.0.weight"].shape[1] == D + Z
    # the same steps on other states give other critics: the columns are read, not dropped on the way
    other_ref = image_learner(prior_path, fast=False, critic_state_dim=D)
    other = image_learner(prior_path, critic_state_dim=D)
    reference_vs_fast_steps(other_ref, other, {**data, CRITIC_STATE: data[CRITIC_STATE] + 1.0}, 16)
    assert not torch.allclose(state(other)["qf.0.weight"], s_fast["qf.0.weight"])
