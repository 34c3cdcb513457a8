"""Any gymnasium env as a SPiRL low-level env: Box actions, a flat vector (or one image) observation, ``info["success"]``.

:func:`make_gymnasium_env` builds the env from a registered id (``gym.make``;
``"package.module:EnvName-v0"`` imports the package first, gymnasium's own
syntax) or from an entry point ``"package.module:EnvClass"`` (a ``gym.Env``
subclass or factory, called with the kwargs), and wraps it in
:class:`GymnasiumAdapter`:

* observation: a Box is used flattened to (D,) float32; a Dict of Box
  entries is flattened by concatenating ``obs_keys`` (default: every key,
  sorted — gymnasium's own Dict order) to (D,) float32; with ``image_key``
  the observation is that entry alone, an (H, W, C) uint8 image returned as
  (C, H, W) uint8 (what the skill model's conv encoder reads).
* action: must be a Box (SPiRL's decoder outputs continuous actions).
* ``info["success"]``: ``bool(info["success"])`` or ``bool(info["is_success"])``
  (gymnasium-robotics' key) when the env reports either.

Any other space is refused with a ``ValueError`` that says which space and why.
"""

from __future__ import annotations

import importlib
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def success_of(info: dict[str, Any]) -> bool | None:
    """``info["success"]`` or else ``info["is_success"]`` as a bool; None when the env reports neither."""
    for key in ("success", "is_success"):
        if key in info:
            return bool(np.asarray(info[key]).any())
    return None


def flatten_dict_batch(obs: dict[str, Any], keys: Sequence[str]) -> np.ndarray:
    """Concatenate dict observations ``obs[k]`` (T, ...) over ``keys`` into (T, D) float32.

    The same order and layout as :class:`GymnasiumAdapter` gives a single
    observation (so offline data and the env agree).

    Raises:
        KeyError: a key is missing (the message lists the keys present).
    """
    missing = [k for k in keys if k not in obs]
    if missing:
        raise KeyError(f"observation keys {missing} missing; present: {sorted(obs)}")
    parts = [np.asarray(obs[k]) for k in keys]
    n = parts[0].shape[0]
    return np.concatenate([p.reshape(n, -1).astype(np.float32) for p in parts], axis=1)


def _box_bounds(space: spaces.Box) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(space.low, np.float32).reshape(-1), np.asarray(space.high, np.float32).reshape(-1)


class GymnasiumAdapter(gym.ObservationWrapper):
    """Flattens/selects observations and adds ``info["success"]`` (module docstring).

    Args:
        env: any gymnasium env with a Box action space.
        obs_keys: Dict spaces: the entries to concatenate, in this order (None: all, sorted).
        image_key: Dict spaces: the (H, W, C) uint8 entry that is the observation (image states).
    Raises:
        ValueError: the action space is not a Box; the observation space is not a Box or a Dict
            of Box entries; ``obs_keys`` / ``image_key`` name missing entries or do not fit the space.
    """

    def __init__(self, env: gym.Env, obs_keys: Sequence[str] | None = None, image_key: str | None = None):
        super().__init__(env)
        act = env.action_space
        if not isinstance(act, spaces.Box):
            raise ValueError(f"its action space is {act}, not a Box: SPiRL's skill decoder outputs continuous actions")
        space = env.observation_space
        self.image_key = image_key
        if isinstance(space, spaces.Dict):
            names = list(space.spaces)
            wrong = [k for k in list(obs_keys or []) + ([image_key] if image_key else []) if k not in space.spaces]
            if wrong:
                raise ValueError(f"observation keys {wrong} are not in its Dict observation space (keys: {names})")
            if image_key is not None:
                if obs_keys:
                    raise ValueError("env.obs_keys and env.image_key: the skill model reads either one image or a "
                                     "vector; set one of them")
                img = space.spaces[image_key]
                if not (isinstance(img, spaces.Box) and img.dtype == np.uint8 and len(img.shape) == 3):
                    raise ValueError(f"image_key {image_key!r} is {img}, expected a Box of (height, width, channels) "
                                     "uint8 images")
                h, w, c = img.shape
                self.keys: list[str] = []
                self.observation_space = spaces.Box(0, 255, (c, h, w), np.uint8)
                return
            self.keys = list(obs_keys) if obs_keys else sorted(names)
            bad = {k: space.spaces[k] for k in self.keys if not isinstance(space.spaces[k], spaces.Box)}
            if bad:
                raise ValueError(f"observation entries {bad} are not Box spaces; only Box entries can be flattened "
                                 "(select the others out with env.obs_keys)")
            lows, highs = zip(*(_box_bounds(space.spaces[k]) for k in self.keys))
            low, high = np.concatenate(lows), np.concatenate(highs)
        elif isinstance(space, spaces.Box):
            if obs_keys or image_key:
                raise ValueError(f"its observation space is a Box {space.shape}; env.obs_keys / env.image_key apply "
                                 "to Dict observation spaces only")
            self.keys = []
            low, high = _box_bounds(space)
        else:
            raise ValueError(f"its observation space {space} is not supported: expected a Box or a Dict of Box entries")
        self.observation_space = spaces.Box(low, high, low.shape, np.float32)

    def observation(self, observation: Any) -> np.ndarray:
        """The processed observation of one raw observation (a copy)."""
        if self.image_key is not None:
            return np.ascontiguousarray(np.transpose(np.asarray(observation[self.image_key], np.uint8), (2, 0, 1)))
        if self.keys:
            return flatten_dict_batch({k: np.asarray(observation[k])[None] for k in self.keys}, self.keys)[0]
        return np.asarray(observation, np.float32).reshape(-1).copy()

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        success = success_of(info)
        if success is not None:
            info = dict(info, success=success)
        return self.observation(obs), reward, terminated, truncated, info


def make_raw_gymnasium_env(env_id: str, kwargs: dict[str, Any] | None = None,
                           max_episode_steps: int | None = None) -> gym.Env:
    """The env named by ``env_id``, unwrapped by :class:`GymnasiumAdapter`.

    ``env_id``: a registered id (``"FetchReach-v4"``), gymnasium's
    ``"package.module:EnvName-v0"`` (imports the package, which registers
    it), or an entry point ``"package.module:EnvClass"`` (a ``gym.Env``
    class or factory, called with ``kwargs``). ``max_episode_steps`` overrides
    the registered time limit (entry points: adds one).

    Raises:
        ValueError: the id is not registered, the module cannot be imported, or the
            entry point does not build a ``gym.Env`` (with gymnasium's reason).
    """
    kwargs = dict(kwargs or {})
    make_id = env_id
    if ":" in env_id:
        module, _, attr = env_id.partition(":")
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            raise ValueError(f"cannot import module {module!r} of gymnasium id {env_id!r}: {e}") from None
        obj = getattr(mod, attr, None)
        if obj is not None and callable(obj):  # an entry point: the class or factory itself
            env = obj(**kwargs)
            if not isinstance(env, gym.Env):
                raise ValueError(f"{env_id!r} returned {type(env).__name__}, not a gymnasium.Env")
            return gym.wrappers.TimeLimit(env, max_episode_steps) if max_episode_steps else env
        make_id = attr  # gymnasium's "module:EnvName-v0": the import registered it
    try:
        return gym.make(make_id, max_episode_steps=max_episode_steps, **kwargs)
    except gym.error.Error as e:
        raise ValueError(f"gymnasium id {env_id!r} is not registered ({type(e).__name__}: {e})") from None


def make_gymnasium_env(env_id: str, kwargs: dict[str, Any] | None = None, max_episode_steps: int | None = None,
                       obs_keys: Sequence[str] | None = None, image_key: str | None = None) -> GymnasiumAdapter:
    """:func:`make_raw_gymnasium_env` wrapped in :class:`GymnasiumAdapter` (the ``gymnasium`` family's factory).

    Raises:
        ValueError: as both (unregistered id, unsupported spaces: the message says which and why).
    """
    env = make_raw_gymnasium_env(env_id, kwargs, max_episode_steps)
    try:
        return GymnasiumAdapter(env, obs_keys, image_key)
    except ValueError as e:
        env.close()
        raise ValueError(f"gymnasium env {env_id!r}: {e}") from None


def time_limit(env: gym.Env) -> int | None:
    """The env's episode limit in env steps (its spec's or a TimeLimit wrapper's), or None."""
    e = env
    while e is not None:
        if isinstance(e, gym.wrappers.TimeLimit):
            return int(e._max_episode_steps)
        spec = getattr(e, "spec", None)
        if spec is not None and spec.max_episode_steps:
            return int(spec.max_episode_steps)
        e = getattr(e, "env", None)
    return None
