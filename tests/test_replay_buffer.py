"""SPiRL's transition replay: uint8 image observations stay uint8 (4x less memory), vectors are float32."""

import numpy as np
import pytest
from ray.rllib.core.columns import Columns

from spirl_ray.rl.spirl.spirl import TransitionReplayBuffer


def _block(t, obs):
    return dict(obs=obs[:-1], actions=np.full((t, 3), 0.5, np.float32), rewards=np.arange(t, dtype=np.float32),
                next_obs=obs[1:], terminateds=np.zeros(t, np.float32))


def test_uint8_images_are_stored_and_sampled_as_uint8_with_their_values():
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, size=(6, 2, 8, 8), dtype=np.uint8)
    buf = TransitionReplayBuffer(capacity=10, seed=0)
    buf.add(**_block(5, obs))
    assert buf._data[Columns.OBS].dtype == np.uint8 and buf._data[Columns.NEXT_OBS].dtype == np.uint8
    assert buf._data[Columns.ACTIONS].dtype == np.float32
    batch = buf.sample(64)
    assert batch[Columns.OBS].dtype == np.uint8
    # Each sampled transition is a stored one: obs and next_obs stay paired, values unchanged.
    for o, o2, r in zip(batch[Columns.OBS], batch[Columns.NEXT_OBS], batch[Columns.REWARDS]):
        i = int(r)
        np.testing.assert_array_equal(o, obs[i])
        np.testing.assert_array_equal(o2, obs[i + 1])
    # 4x smaller than float32 per observation.
    assert buf._data[Columns.OBS].nbytes * 4 == np.empty((10, 2, 8, 8), np.float32).nbytes


def test_state_round_trip_keeps_dtypes_and_values():
    obs = np.arange(6 * 4, dtype=np.uint8).reshape(6, 4)
    buf = TransitionReplayBuffer(capacity=8, seed=0)
    buf.add(**_block(5, obs))
    other = TransitionReplayBuffer(capacity=8, seed=0)
    other.set_state(buf.get_state())
    assert other._data[Columns.OBS].dtype == np.uint8
    np.testing.assert_array_equal(other._data[Columns.OBS][:5], obs[:5])


def test_vector_observations_are_float32():
    obs = np.linspace(-1, 1, 6 * 3).reshape(6, 3)  # float64 from the env
    buf = TransitionReplayBuffer(capacity=8, seed=0)
    buf.add(**_block(5, obs))
    assert buf._data[Columns.OBS].dtype == np.float32
    np.testing.assert_allclose(buf._data[Columns.OBS][:5], obs[:5].astype(np.float32))


def _episode(t, truncated=False, terminated=False):
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    ep = SingleAgentEpisode(observations=[np.full(3, 0.0, np.float32)])
    for i in range(t):
        last = i == t - 1
        ep.add_env_step(np.full(3, i + 1.0, np.float32), np.zeros(2, np.float32), 1.0,
                        terminated=terminated and last, truncated=truncated and last)
    return ep


@pytest.mark.parametrize("timeout_as_terminal", [True, False])
def test_time_limit_transition_is_terminal_only_with_timeout_as_terminal(timeout_as_terminal):
    buf = TransitionReplayBuffer(capacity=20, seed=0, timeout_as_terminal=timeout_as_terminal)
    buf.add_episodes([_episode(4, truncated=True), _episode(3, terminated=True), _episode(2)])
    term = buf._data[Columns.TERMINATEDS][:9]
    # truncated episode: only its last transition, and only with the flag; terminated: always; ongoing chunk: never
    expected = [0, 0, 0, float(timeout_as_terminal), 0, 0, 1, 0, 0]
    np.testing.assert_array_equal(term, expected)
