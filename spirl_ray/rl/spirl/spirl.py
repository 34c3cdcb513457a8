"""``SPiRL``: RLlib SAC with a KL-to-skill-prior objective and an exact 1:1 update ratio.

Differences to RLlib's ``SAC`` (besides the learner / RL module):

* ``training_step`` runs ``updates_per_step`` gradient steps per sampled
  high-level transition (Algorithm 1 line 7: "for each gradient step", one per
  H env steps), counted over all EnvRunners and carried over as a fractional
  credit. RLlib's ``training_intensity`` divides by (num_env_runners + 1) and
  misses this ratio.
* Replay is a uniform transition-level ring buffer (numpy) instead of the
  episode buffer: sampling a batch of 256 costs microseconds instead of
  ~55 ms + ~18 ms of learner connector (rllib-notes "Speed measured"), and the
  batch goes to the learner as a ready ``MultiAgentBatch``.
* Logs ``num_gradient_updates_lifetime``, ``num_gradient_updates`` (this
  iteration) and ``replay_buffer_size`` at the top level of the result dict.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional

import numpy as np
from ray.rllib.algorithms.sac.sac import SAC
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_AGENT_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    REPLAY_BUFFER_ADD_DATA_TIMER,
    REPLAY_BUFFER_SAMPLE_TIMER,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TD_ERROR_KEY,
    TIMERS,
)

from spirl_ray.rl.spirl.config import SPiRLConfig

#: top-level result key: gradient steps taken so far.
NUM_UPDATES_LIFETIME = "num_gradient_updates_lifetime"
#: top-level result key: gradient steps taken in this iteration.
NUM_UPDATES = "num_gradient_updates"
#: top-level result key: replay buffer size (transitions).
REPLAY_SIZE = "replay_buffer_size"


class TransitionReplayBuffer:
    """Uniform FIFO replay of (s, a, r, s', terminated) transitions in preallocated numpy arrays.

    Arrays are allocated (``np.empty``) on the first ``add``; memory pages are
    only touched as transitions arrive. Actions are stored as the RL module
    emits them (normalised to [-1, 1]).

    Args:
        capacity: max transitions kept (oldest overwritten first).
        seed: RNG seed of ``sample``.
    """

    def __init__(self, capacity: int, seed: Optional[int] = None):
        self.capacity = int(capacity)
        self.rng = np.random.default_rng(seed)
        self._data: Optional[Dict[str, np.ndarray]] = None
        self._next = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add_episodes(self, episodes: Iterable[Any]) -> int:
        """Append every transition of the (chunks of) ``SingleAgentEpisode``s; returns how many."""
        n = 0
        for ep in episodes:
            if len(ep) == 0:
                continue
            obs = np.asarray(ep.get_observations(), dtype=np.float32)
            t = len(ep)
            term = np.zeros(t, dtype=np.float32)
            term[-1] = float(ep.is_terminated)
            n += self.add(
                obs=obs[:-1],
                actions=np.asarray(ep.get_actions(), dtype=np.float32),
                rewards=np.asarray(ep.get_rewards(), dtype=np.float32),
                next_obs=obs[1:],
                terminateds=term,
            )
        return n

    def add(self, *, obs, actions, rewards, next_obs, terminateds) -> int:
        """Append a block of T transitions (arrays with leading dim T)."""
        cols = {
            Columns.OBS: obs,
            Columns.ACTIONS: actions,
            Columns.REWARDS: rewards,
            Columns.NEXT_OBS: next_obs,
            Columns.TERMINATEDS: terminateds,
        }
        t = len(rewards)
        if self._data is None:
            self._data = {k: np.empty((self.capacity,) + np.shape(v)[1:], np.float32) for k, v in cols.items()}
        idx = (self._next + np.arange(t)) % self.capacity
        for k, v in cols.items():
            self._data[k][idx] = v
        self._next = (self._next + t) % self.capacity
        self._size = min(self._size + t, self.capacity)
        return t

    def sample(self, n: int) -> Dict[str, np.ndarray]:
        """``n`` transitions drawn uniformly with replacement (dict of (n, ...) float32 arrays)."""
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = self.rng.integers(0, self._size, size=n)
        return {k: v[idx] for k, v in self._data.items()}

    def get_state(self) -> Dict[str, Any]:
        data = None if self._data is None else {k: v[: self._size].copy() for k, v in self._data.items()}
        return {"capacity": self.capacity, "next": self._next, "size": self._size, "data": data}

    def set_state(self, state: Dict[str, Any]) -> None:
        self._data, self._next, self._size = None, state["next"], state["size"]
        if state["data"] is not None and self._size > 0:
            self._data = {k: np.empty((self.capacity,) + v.shape[1:], np.float32) for k, v in state["data"].items()}
            for k, v in state["data"].items():
                self._data[k][: self._size] = v

    def get_metrics(self) -> Dict[str, Any]:
        return {"size": self._size}


class SPiRL(SAC):
    """Skill-Prior RL (Pertsch, Lee, Lim, CoRL 2020) on RLlib's new API stack.

    Use with a skill env (action space Box(-2, 2, (|Z|,)), one step = one skill
    = up to H low-level steps) and :class:`SPiRLConfig`. Tune-trainable:
    ``tune.Tuner(SPiRL, param_space=config)``.
    """

    @classmethod
    @override(SAC)
    def get_default_config(cls) -> SPiRLConfig:
        return SPiRLConfig()

    @override(SAC)
    def setup(self, config) -> None:
        super().setup(config)
        self.local_replay_buffer = TransitionReplayBuffer(
            self.config.replay_buffer_config.get("capacity", int(1e6)), seed=self.config.seed
        )
        self._update_credit = 0.0

    @override(SAC)
    def training_step(self) -> None:
        cfg = self.config
        # ---- Algorithm 1 lines 4-6: collect high-level transitions -------------------------
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            episodes, env_runner_results = synchronous_parallel_sample(
                worker_set=self.env_runner_group,
                concat=True,
                sample_timeout_s=cfg.sample_timeout_s,
                _uses_new_env_runners=True,
                _return_metrics=True,
            )
        self.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)
        with self.metrics.log_time((TIMERS, REPLAY_BUFFER_ADD_DATA_TIMER)):
            n_new = self.local_replay_buffer.add_episodes(episodes)
        self.metrics.log_value(REPLAY_SIZE, len(self.local_replay_buffer), window=1)

        sampled = self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
        # ---- lines 7-12: `updates_per_step` gradient steps per new transition ------------
        n_updates = 0
        if sampled >= cfg.num_steps_sampled_before_learning_starts and len(self.local_replay_buffer) > 0:
            self._update_credit += n_new * cfg.updates_per_step
            n_updates = int(self._update_credit)
            self._update_credit -= n_updates
        self.metrics.log_value(NUM_UPDATES_LIFETIME, n_updates, reduce="lifetime_sum")
        self.metrics.log_value(NUM_UPDATES, n_updates, reduce="sum")
        if n_updates == 0:
            return
        timesteps = {
            NUM_ENV_STEPS_SAMPLED_LIFETIME: sampled,
            NUM_AGENT_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                (ENV_RUNNER_RESULTS, NUM_AGENT_STEPS_SAMPLED_LIFETIME), default={}
            ),
        }
        for _ in range(n_updates):
            with self.metrics.log_time((TIMERS, REPLAY_BUFFER_SAMPLE_TIMER)):
                data = self.local_replay_buffer.sample(cfg.total_train_batch_size)
                batch = MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(data)}, env_steps=len(data[Columns.REWARDS]))
            with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
                learner_results = self.learner_group.update(batch=batch, timesteps=timesteps)
                for res in learner_results:
                    for module_results in res.values():
                        if isinstance(module_results, dict):
                            module_results.pop(TD_ERROR_KEY, None)
                self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)

        # ---- push the new policy weights to the EnvRunners ---------------------------------
        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group,
                policies=set(learner_results[0].keys()) - {ALL_MODULES},
                inference_only=True,
            )
