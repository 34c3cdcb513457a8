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
* Checkpoints hold the replay buffer (``store_buffer_in_checkpoints``, on by
  default). RLlib 2.60's new-stack ``Algorithm.get_state`` never saves it, so
  a resumed trial would restart learning from an empty buffer with no warm-up:
  in ``kitchen_cl`` one seed's first evaluation after a resume fell from 3.0
  to 1.1 subtasks (results/kitchen/diagnosis_timeout_bootstrap, "Outcome").

Speed (config switches, see :class:`SPiRLConfig`; ``benchmarks/`` measures them):

* ``learner_fast_path``: all gradient steps of a ``training_step`` go to the
  learner in one call (one replay gather of K x 256 rows); the learner runs K
  exact Algorithm-1 steps (:mod:`spirl_ray.rl.spirl.learner`).
* ``overlap_sampling``: with remote EnvRunners, the runners sample the next
  high-level steps while the learner takes the gradient steps earned by the
  previous ones, instead of both waiting for each other. The update ratio stays
  exact; the policy that samples lags one ``training_step`` more (it holds the
  weights from before the latest batch of updates).
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
from ray.rllib.algorithms.sac.sac import SAC
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    EVALUATION_RESULTS,
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

from spirl_ray.rl.callbacks import ENV_STEPS_LIFETIME
from spirl_ray.rl.spirl.config import SPiRLConfig
from spirl_ray.rl.spirl.prior_sampling import prior_sample_prob
from spirl_ray.rl.spirl.rl_module import CRITIC_STATE, CRITIC_STATE_NEXT, PRIOR_FEATURES, PRIOR_FEATURES_NEXT

#: top-level result key: gradient steps taken so far.
NUM_UPDATES_LIFETIME = "num_gradient_updates_lifetime"
#: top-level result key: gradient steps taken in this iteration.
NUM_UPDATES = "num_gradient_updates"
#: top-level result key: replay buffer size (transitions).
REPLAY_SIZE = "replay_buffer_size"
#: checkpoint-state key of the skill model's (H, |Z|, state dim) the RL state was trained with.
SKILL_MODEL_STATE_KEY = "spirl_skill_model"
#: checkpoint-state key of the replay buffer's rows (:meth:`TransitionReplayBuffer.get_state`).
REPLAY_STATE_KEY = "local_replay_buffer"
#: top-level result key: ω, the fraction of rollout skills drawn from the prior (appendix F).
PRIOR_SAMPLE_PROB = "prior_sample_prob"
#: ``evaluation/<key>``: training env steps (low-level) at which an evaluation ran.
EVALUATED_AT_ENV_STEPS = "evaluated_at_env_steps"
#: tag of the asynchronous sample requests (``overlap_sampling``).
_SAMPLE_TAG = "spirl_sample"


def _sample_with_metrics(env_runner, num_timesteps: Optional[int] = None):
    """What ``synchronous_parallel_sample`` runs on each EnvRunner: one sample() call and its metrics.

    ``num_timesteps=None`` samples one rollout fragment per env (RLlib's default).
    """
    return env_runner.sample(num_timesteps=num_timesteps), env_runner.get_metrics()


def _storage_dtype(column: str, value: Any) -> np.dtype:
    """uint8 for uint8 observations (images), float32 for everything else."""
    if column in (Columns.OBS, Columns.NEXT_OBS) and np.asarray(value).dtype == np.uint8:
        return np.dtype(np.uint8)
    return np.dtype(np.float32)


#: the replay's feature encoder: (N, C, H, W) uint8 images -> ((N, F) float32 features, fingerprint of the weights).
FeatureEncoder = Callable[[np.ndarray], Tuple[np.ndarray, str]]


class TransitionReplayBuffer:
    """Uniform FIFO replay of (s, a, r, s', terminated) transitions in preallocated numpy arrays.

    Arrays are allocated (``np.empty``) on the first ``add``; memory pages are
    only touched as transitions arrive. Actions are stored as the RL module
    emits them (normalised to [-1, 1]). Observations keep the dtype the env
    emits when it is ``uint8`` (image states: 1 byte per pixel instead of 4,
    converted to float on the learner by the conv encoder, which divides by
    255); every other column is float32.

    Prior-feature cache (``prior_features`` set; ``cache_prior_features`` of
    :class:`SPiRLConfig`): each transition also stores the frozen skill
    prior's conv features of s and s' (columns ``prior_features`` /
    ``prior_features_next``, (F,) float32 each), computed once when it is
    added, in one encoder call per ``add`` / ``add_episodes`` (an episode
    chunk's T + 1 observations once, not 2T), and sampled with the
    transition. A speed replacement of the prior's conv passes in every
    learner step, bit for bit the same features
    (``python -m benchmarks.bench_image_learner``, rows ``+cached``). Memory:
    2 x F x 4 bytes per transition on top of the images (paper conv, F = 512:
    4 KiB; maze 2 x 32 x 32 uint8 images: 4 KiB, so the cache doubles a maze
    replay). Peak RSS measured by ``python -m benchmarks.bench_image_replay
    --features 512`` (2026-11-30): maze 1M transitions 8.25 GiB (4.34 without
    the cache), i.e. just over 8 GiB; the configs' 100k: maze 1.35 GiB,
    block stacking 2.30 GiB (1.82 without). Features are stored as float32
    (not float16), so that they are exact. The encoder also returns a
    fingerprint of the weights it used; when it changes (the prior was
    replaced, e.g. by a restore), every stored feature is recomputed before
    the new ones are added, so the replay never mixes features of two priors.

    Args:
        capacity: max transitions kept (oldest overwritten first).
        seed: RNG seed of ``sample``.
        timeout_as_terminal: an episode's last transition counts as terminal
            when the env truncated it (time limit), not only when it terminated
            (see :meth:`SPiRLConfig.training <spirl_ray.rl.spirl.config.SPiRLConfig.training>`).
        prior_features: optional :data:`FeatureEncoder` (images -> features, weights fingerprint);
            None: no feature cache.
        critic_state: also store the env's low-dimensional state of s and s'
            (columns ``critic_state`` / ``critic_state_next``, (D,) float32),
            read by :meth:`add_episodes` from each observation's
            ``info["state"]``: the asymmetric critic's input (SPiRLConfig
            ``critic_state_dim``).
    """

    def __init__(self, capacity: int, seed: Optional[int] = None, timeout_as_terminal: bool = False,
                 prior_features: Optional[FeatureEncoder] = None, critic_state: bool = False):
        self.capacity = int(capacity)
        self.timeout_as_terminal = bool(timeout_as_terminal)
        self.rng = np.random.default_rng(seed)
        self._encode = prior_features
        self.critic_state = bool(critic_state)
        self._feature_key: Optional[str] = None  # fingerprint of the weights the stored features were computed with
        self._data: Optional[Dict[str, np.ndarray]] = None
        self._next = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add_episodes(self, episodes: Iterable[Any]) -> int:
        """Append every transition of the (chunks of) ``SingleAgentEpisode``s; returns how many.

        Raises:
            ValueError: with ``critic_state``, an observation's info has no ``"state"`` vector.
        """
        chunks = []
        states: List[Optional[np.ndarray]] = []
        for ep in episodes:
            if len(ep) == 0:
                continue
            obs = np.asarray(ep.get_observations())
            if obs.dtype != np.uint8:
                obs = obs.astype(np.float32, copy=False)
            t = len(ep)
            term = np.zeros(t, dtype=np.float32)
            term[-1] = float(ep.is_terminated or (self.timeout_as_terminal and ep.is_truncated))
            chunks.append((obs, np.asarray(ep.get_actions(), dtype=np.float32),
                           np.asarray(ep.get_rewards(), dtype=np.float32), term))
            states.append(self._info_states(ep, len(obs)) if self.critic_state else None)
        feats: List[Optional[np.ndarray]] = [None] * len(chunks)
        if self._encode is not None and chunks:
            # one encoder call for all chunks' observations (T + 1 per chunk: s' of step t is s of step t + 1)
            all_f = self._features(np.concatenate([c[0] for c in chunks]))
            feats = np.split(all_f, np.cumsum([len(c[0]) for c in chunks])[:-1])
        n = 0
        for (obs, actions, rewards, term), f, st in zip(chunks, feats, states):
            n += self.add(obs=obs[:-1], actions=actions, rewards=rewards, next_obs=obs[1:], terminateds=term,
                          prior_features=None if f is None else f[:-1],
                          prior_features_next=None if f is None else f[1:],
                          critic_state=None if st is None else st[:-1],
                          critic_state_next=None if st is None else st[1:])
        return n

    @staticmethod
    def _info_states(episode: Any, n_obs: int) -> np.ndarray:
        """(n_obs, D) float32: ``info["state"]`` of each observation of an episode chunk (infos align with obs)."""
        infos = list(episode.get_infos())
        if len(infos) != n_obs:
            raise ValueError(f"asymmetric critic: an episode chunk has {len(infos)} infos for {n_obs} observations")
        missing = [t for t, i in enumerate(infos) if not isinstance(i, dict) or "state" not in i]
        if missing:
            raise ValueError(f"asymmetric critic (critic_state_dim): the env's info has no 'state' at observation "
                             f"{missing[0]} of an episode chunk; the env must report info['state'] at reset and every "
                             f"step (block stacking: state_in_info=True)")
        return np.stack([np.asarray(i["state"], np.float32).reshape(-1) for i in infos])

    def add(self, *, obs, actions, rewards, next_obs, terminateds, prior_features=None, prior_features_next=None,
            critic_state=None, critic_state_next=None) -> int:
        """Append a block of T transitions (arrays with leading dim T).

        With the feature cache, ``prior_features`` / ``prior_features_next`` ((T, F)
        float32, from this buffer's encoder) are computed here when not given.
        With ``critic_state``, ``critic_state`` / ``critic_state_next`` ((T, D)) are required.

        Raises:
            ValueError: features given to a buffer without the feature cache; critic states missing
                from a buffer with ``critic_state``, or given to one without.
        """
        cols = {
            Columns.OBS: obs,
            Columns.ACTIONS: actions,
            Columns.REWARDS: rewards,
            Columns.NEXT_OBS: next_obs,
            Columns.TERMINATEDS: terminateds,
        }
        t = len(rewards)
        if self._encode is None:
            if prior_features is not None or prior_features_next is not None:
                raise ValueError("prior features given to a replay buffer built without the feature cache")
        else:
            if prior_features is None or prior_features_next is None:
                both = self._features(np.concatenate([np.asarray(obs), np.asarray(next_obs)]))
                prior_features, prior_features_next = both[:t], both[t:]
            cols[PRIOR_FEATURES], cols[PRIOR_FEATURES_NEXT] = prior_features, prior_features_next
        given = critic_state is not None and critic_state_next is not None
        if self.critic_state != given:
            raise ValueError("critic_state / critic_state_next: " + (
                "required by a replay buffer storing the asymmetric critic's state" if self.critic_state
                else "given to a replay buffer built without critic_state"))
        if given:
            cols[CRITIC_STATE], cols[CRITIC_STATE_NEXT] = critic_state, critic_state_next
        if self._data is None:
            self._data = {k: np.empty((self.capacity,) + np.shape(v)[1:], _storage_dtype(k, v)) for k, v in cols.items()}
        idx = (self._next + np.arange(t)) % self.capacity
        for k, v in cols.items():
            self._data[k][idx] = v
        self._next = (self._next + t) % self.capacity
        self._size = min(self._size + t, self.capacity)
        return t

    def _features(self, images: np.ndarray) -> np.ndarray:
        """The encoder's (N, F) features; first recomputes the stored ones if the encoder's weights changed."""
        feats, key = self._encode(np.ascontiguousarray(images))
        if key != self._feature_key:
            self._recompute_features()
            self._feature_key = key
        return np.asarray(feats, dtype=np.float32)

    def _recompute_features(self, chunk: int = 4096) -> None:
        """Re-encode the stored s and s' of every transition (the prior's weights changed, or a state without them)."""
        if self._data is None or self._size == 0:
            return
        n = self._size
        for src, dst in ((Columns.OBS, PRIOR_FEATURES), (Columns.NEXT_OBS, PRIOR_FEATURES_NEXT)):
            parts = [self._encode(self._data[src][i:min(i + chunk, n)])[0] for i in range(0, n, chunk)]
            f = np.concatenate(parts).astype(np.float32, copy=False)
            if dst not in self._data:
                self._data[dst] = np.empty((self.capacity,) + f.shape[1:], np.float32)
            self._data[dst][:n] = f

    def sample(self, n: int) -> Dict[str, np.ndarray]:
        """``n`` transitions drawn uniformly with replacement (dict of (n, ...) arrays; float32, uint8 image obs).

        With the feature cache also ``prior_features`` / ``prior_features_next`` (n, F) float32.
        """
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = self.rng.integers(0, self._size, size=n)
        return {k: v[idx] for k, v in self._data.items()}

    def get_state(self) -> Dict[str, Any]:
        """Capacity, ring position, size, the stored rows (copies) and the features' weight fingerprint."""
        data = None if self._data is None else {k: v[: self._size].copy() for k, v in self._data.items()}
        return {"capacity": self.capacity, "next": self._next, "size": self._size, "data": data,
                "prior_features_key": self._feature_key}

    def set_state(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`get_state`'s rows. With the feature cache, the stored features are kept only if they
        were computed with this encoder's weights (same fingerprint), else recomputed from the images; without
        it, feature columns in the state are dropped."""
        self._data, self._next, self._size = None, state["next"], state["size"]
        self._feature_key = state.get("prior_features_key")
        rows = state["data"]
        if rows is not None and self._size > 0:
            if self._encode is None:
                rows = {k: v for k, v in rows.items() if k not in (PRIOR_FEATURES, PRIOR_FEATURES_NEXT)}
                self._feature_key = None
            self._data = {k: np.empty((self.capacity,) + v.shape[1:], v.dtype) for k, v in rows.items()}
            for k, v in rows.items():
                self._data[k][: self._size] = v
            if self._encode is not None:
                key = self._encode(self._data[Columns.OBS][: min(2, self._size)])[1]
                if key != self._feature_key or PRIOR_FEATURES not in rows or PRIOR_FEATURES_NEXT not in rows:
                    self._recompute_features()
                    self._feature_key = key

    def get_metrics(self) -> Dict[str, Any]:
        return {"size": self._size}


def _why_no_prior_feature_cache(learner) -> str:
    """'' if the learner's SPiRL module can read cached prior features, else why not (runs on the learner)."""
    from spirl_ray.rl.spirl.rl_module import SPiRLTorchRLModule

    module = learner.module[DEFAULT_MODULE_ID]
    if not isinstance(module, SPiRLTorchRLModule):
        return f"needs SPiRL's RL module, got {type(module).__name__}"
    if not module._image or getattr(module, "skill_prior", None) is None:
        return "needs image observations and the skill prior on the learner (use_skill_prior=True, skill_model_path)"
    if not module._cfg("fused_image_forward"):
        return "needs model_config fused_image_forward=True (RLlib's generic forward does not read the cache)"
    return ""


def _prior_features_on_learner(learner, images: np.ndarray) -> Tuple[np.ndarray, str]:
    """(features (N, F) float32, weights fingerprint) of the learner module's frozen prior conv (runs on the learner)."""
    import torch

    module = learner.module[DEFAULT_MODULE_ID]
    feats = module.prior_features(torch.from_numpy(np.ascontiguousarray(images)))
    return feats.numpy(), module.prior_features_key()


def _first_result(results) -> Any:
    """The first learner's return value of ``foreach_learner``; its error is raised."""
    for r in results:
        if not r.ok:
            raise r.get()
        return r.get()
    raise RuntimeError("no healthy learner answered")


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
            self.config.replay_buffer_config.get("capacity", int(1e6)), seed=self.config.seed,
            timeout_as_terminal=self.config.timeout_as_terminal,
            prior_features=self._prior_feature_encoder() if self.config.cache_prior_features else None,
            critic_state=self.config.critic_state_dim is not None,
        )
        self._next_eval_env_steps: Optional[int] = None  # None: evaluate at the next iteration
        self._evaluated_at_env_steps: Optional[int] = None
        self._update_credit = 0.0
        self._pending_updates = 0  # earned by the last sample, taken by the next training_step (overlap)

    def _prior_feature_encoder(self) -> FeatureEncoder:
        """The replay's feature encoder (``cache_prior_features``): the learner's own frozen prior computes them.

        Called on every learner through ``learner_group.foreach_learner`` (in this process for a
        local learner, ``num_learners=0``; else one remote call per learner and add) and the first
        result is stored: each learner's call also records the prior weights its own cached-feature
        check compares against. With N remote learners the images are encoded N times per add.

        Raises:
            ValueError: the learner's module has no image skill prior or does not run the fused
                image forward (the only forward that reads the cached features).
        """
        group = self.learner_group
        why = _first_result(group.foreach_learner(_why_no_prior_feature_cache))
        if why:
            raise ValueError(f"cache_prior_features=True: {why}")

        def encode(images: np.ndarray) -> Tuple[np.ndarray, str]:
            return _first_result(group.foreach_learner(functools.partial(_prior_features_on_learner, images=images)))

        return encode

    # ---- deterministic evaluation on an env-step schedule ---------------------------------
    def evaluation_due(self, env_steps: int) -> bool:
        """Whether to evaluate after an iteration that ended at ``env_steps`` low-level env steps.

        True at the first call (the prior-initialised policy; also the first call
        after a restore) and whenever ``env_steps`` reached the next multiple of
        ``evaluation_every_env_steps``; always True without that schedule (RLlib's
        ``evaluation_interval`` alone decides then).
        """
        every = self.config.evaluation_every_env_steps
        if not every:
            return True
        if self._next_eval_env_steps is not None and env_steps < self._next_eval_env_steps:
            return False
        self._next_eval_env_steps = (int(env_steps) // every + 1) * every
        return True

    @override(SAC)
    def _run_one_evaluation(self, parallel_train_future=None):
        """RLlib's evaluation, run only when :meth:`evaluation_due` says so (else no ``evaluation`` results)."""
        steps = int(self.metrics.peek((ENV_RUNNER_RESULTS, ENV_STEPS_LIFETIME), default=0) or 0)
        if not self.evaluation_due(steps):
            return {}
        self._evaluated_at_env_steps = steps
        return super()._run_one_evaluation(parallel_train_future=parallel_train_future)

    @override(SAC)
    def step(self) -> Dict[str, Any]:
        """RLlib's step; the ``evaluation`` results appear only in iterations that evaluated.

        RLlib's metrics logger re-reports the last evaluation's (or NaN) values in
        later iterations; here they are dropped, and an evaluating iteration
        carries ``evaluation/evaluated_at_env_steps`` (the training env-step
        count, low-level, at which the policy was evaluated).
        """
        self._evaluated_at_env_steps = None
        results = super().step()
        if self.config.evaluation_every_env_steps:
            if self._evaluated_at_env_steps is None:
                results.pop(EVALUATION_RESULTS, None)
            elif isinstance(results.get(EVALUATION_RESULTS), dict):
                results[EVALUATION_RESULTS][EVALUATED_AT_ENV_STEPS] = self._evaluated_at_env_steps
        return results

    # ---- checkpoints: refuse a state made with another skill model ----------------------
    @override(SAC)
    def get_state(self, components=None, *, not_components=None, **kwargs) -> Dict[str, Any]:
        """RLlib's state + the skill model's H, |Z| and state dim (checked by :meth:`set_state`)."""
        state = super().get_state(components, not_components=not_components, **kwargs)
        meta = self.config._skill_model_meta
        if meta is not None:
            state[SKILL_MODEL_STATE_KEY] = {k: meta[k] for k in ("horizon", "latent_dim", "obs_dim")}
        if (self.config.store_buffer_in_checkpoints and getattr(self, "local_replay_buffer", None) is not None
                and self._check_component(REPLAY_STATE_KEY, components, not_components)):
            state[REPLAY_STATE_KEY] = self.local_replay_buffer.get_state()
        return state

    @override(SAC)
    def set_state(self, state: Dict[str, Any]) -> None:
        """Restore, including the replay buffer when the checkpoint holds it (a checkpoint written before
        replay buffers were saved restores with an empty one, as RLlib does).

        A checkpoint made with a skill model of another H / |Z| / state dim is refused.

        Raises:
            spirl_ray.skills.checkpoint.SkillModelMismatchError: names each differing field
                (the "expected" values are the checkpoint's).
        """
        saved = state.get(SKILL_MODEL_STATE_KEY)
        if saved and self.config.skill_model_path:
            from spirl_ray.skills.checkpoint import load_skill_model

            load_skill_model(self.config.skill_model_path, expect=saved)
        super().set_state(state)
        if REPLAY_STATE_KEY in state and getattr(self, "local_replay_buffer", None) is not None:
            self.local_replay_buffer.set_state(state[REPLAY_STATE_KEY])

    @override(SAC)
    def training_step(self) -> None:
        group = self.env_runner_group
        if self.config.overlap_sampling and group.num_remote_env_runners() > 0:
            return self._training_step_overlapped()
        # ---- Algorithm 1 lines 4-6: collect high-level transitions -------------------------
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            fn = self._sample_fn()
            if group.num_remote_env_runners() > 0:
                results = group.foreach_env_runner(fn, local_env_runner=False, timeout_seconds=self.config.sample_timeout_s)
            else:
                results = [fn(group.local_env_runner)]
        n_updates = self._add_samples([ep for eps, _ in results for ep in eps], [m for _, m in results])
        # ---- lines 7-12: `updates_per_step` gradient steps per new transition ------------
        self._learn_and_sync(n_updates)

    def _training_step_overlapped(self) -> None:
        """Sample on the remote EnvRunners while the learner takes the updates earned so far.

        1. one asynchronous ``sample()`` request per EnvRunner (weights: the last sync);
        2. meanwhile, the gradient steps earned by the previous samples, then a
           fire-and-forget weight sync (each runner applies it after its current sample);
        3. wait for the samples, add them, earn the updates of the next call.
        """
        group = self.env_runner_group
        if group.num_in_flight_async_reqs(_SAMPLE_TAG) == 0:
            group.foreach_env_runner_async(self._sample_fn(), tag=_SAMPLE_TAG)
        n_updates, self._pending_updates = self._pending_updates, 0
        self._learn_and_sync(n_updates)
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            results = []
            timeout = self.config.sample_timeout_s
            deadline = None if timeout is None else time.monotonic() + timeout
            while group.num_in_flight_async_reqs(_SAMPLE_TAG) > 0:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                results += group.fetch_ready_async_reqs(tags=_SAMPLE_TAG, timeout_seconds=wait)
                if deadline is not None and time.monotonic() >= deadline:
                    break
        episodes = [ep for _, (eps, _) in results for ep in eps]
        self._pending_updates = self._add_samples(episodes, [m for _, (_, m) in results])

    def _sample_fn(self):
        """The per-EnvRunner sample call: one rollout fragment, or a warm-up chunk.

        Before learning starts no weights change, so the warm-up is sampled in
        chunks of up to ``warmup_sample_chunk`` high-level steps per runner and
        request (the same transitions as one step per request, without a round
        trip per step); never past the warm-up by more than one step per runner.
        """
        cfg = self.config
        sampled = self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
        remaining = cfg.num_steps_sampled_before_learning_starts - sampled
        if remaining <= 1 or cfg.warmup_sample_chunk <= 1:
            return _sample_with_metrics
        runners = max(1, self.env_runner_group.num_healthy_remote_workers())
        per_env = min(cfg.warmup_sample_chunk, math.ceil(remaining / (runners * cfg.num_envs_per_env_runner)))
        return functools.partial(_sample_with_metrics, num_timesteps=per_env * cfg.num_envs_per_env_runner)

    def _add_samples(self, episodes: List[Any], env_runner_results: List[Dict[str, Any]]) -> int:
        """Aggregate the runners' metrics, add the transitions; returns the gradient steps they earn."""
        cfg = self.config
        self.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)
        with self.metrics.log_time((TIMERS, REPLAY_BUFFER_ADD_DATA_TIMER)):
            n_new = self.local_replay_buffer.add_episodes(episodes)
        self.metrics.log_value(REPLAY_SIZE, len(self.local_replay_buffer), window=1)
        sampled = self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
        # Transitions that earn updates: the one completing the warm-up and all after it (as when
        # sampling one step per call), even if a warm-up chunk brought several at once.
        n_earning = min(n_new, sampled - cfg.num_steps_sampled_before_learning_starts + 1)
        if n_earning <= 0 or len(self.local_replay_buffer) == 0:
            return 0
        self._update_credit += n_earning * cfg.updates_per_step
        n_updates = int(self._update_credit)
        self._update_credit -= n_updates
        return n_updates

    def _learn_and_sync(self, n_updates: int) -> None:
        """Take ``n_updates`` gradient steps, then push the new policy weights to the EnvRunners."""
        self.metrics.log_value(NUM_UPDATES_LIFETIME, n_updates, reduce="lifetime_sum")
        self.metrics.log_value(NUM_UPDATES, n_updates, reduce="sum")
        if n_updates == 0:
            return
        timesteps = {
            NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0),
            NUM_AGENT_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                (ENV_RUNNER_RESULTS, NUM_AGENT_STEPS_SAMPLED_LIFETIME), default={}
            ),
        }
        learner_results = self._learn(n_updates, timesteps)
        self._update_prior_sample_prob()
        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group,
                policies=set(learner_results[0].keys()) - {ALL_MODULES},
                inference_only=True,
            )

    def _update_prior_sample_prob(self) -> None:
        """Recompute ω from the low-level env steps (appendix F schedule); the next weight sync ships it."""
        sched = self.config.prior_sampling_schedule
        if sched is None:
            return
        env_steps = self.metrics.peek((ENV_RUNNER_RESULTS, ENV_STEPS_LIFETIME), default=None)
        if env_steps is None:  # no SPiRLMetricsCallback: high-level steps x H
            hl = self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
            env_steps = hl * self.config.horizon
        omega = prior_sample_prob(float(env_steps), *sched)
        self.learner_group.foreach_learner(
            lambda learner: learner.module.foreach_module(lambda _mid, m: m.set_prior_sample_prob(omega))
        )
        self.metrics.log_value(PRIOR_SAMPLE_PROB, omega, window=1)

    def _learn(self, n_updates: int, timesteps: Dict[str, Any]) -> List[Dict[str, Any]]:
        """``n_updates`` gradient steps on uniform replay batches; returns the last learner results.

        Fast path (``learner_fast_path``): K = up to ``max_updates_per_learner_call``
        batches are drawn in one replay gather and sent in ONE
        ``learner_group.update(batch, minibatch_size=B, num_epochs=1)``; the
        learner takes K sequential gradient steps (each with its target update).
        Otherwise one ``learner_group.update`` per gradient step.
        """
        cfg = self.config
        batch_size = cfg.total_train_batch_size
        per_call = cfg.max_updates_per_learner_call if cfg.learner_fast_path else 1
        learner_results: List[Dict[str, Any]] = []
        done = 0
        while done < n_updates:
            k = min(per_call, n_updates - done)
            with self.metrics.log_time((TIMERS, REPLAY_BUFFER_SAMPLE_TIMER)):
                data = self.local_replay_buffer.sample(k * batch_size)
                batch = MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(data)}, env_steps=k * batch_size)
            with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
                kwargs = {"minibatch_size": cfg.train_batch_size_per_learner, "num_epochs": 1} if cfg.learner_fast_path else {}
                learner_results = self.learner_group.update(batch=batch, timesteps=timesteps, **kwargs)
                for res in learner_results:
                    for module_results in res.values():
                        if isinstance(module_results, dict):
                            module_results.pop(TD_ERROR_KEY, None)
                self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
            done += k
        return learner_results
