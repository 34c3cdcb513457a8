"""FrankaKitchen-v1 with D4RL's state layout and SPiRL's ordered scoring.

The wrapper builds gymnasium-robotics' ``FrankaKitchen-v1`` with *all seven*
subtasks and no time limit, and does the scoring and truncation itself:

* observation: ``d4rl30`` = robot qpos (obs[0:9]) + object qpos (obs[18:39]),
  i.e. the first 30 dimensions of D4RL's kitchen observation; ``full59`` =
  the whole 59-d ``observation`` vector of FrankaKitchen-v1. Always a copy.
* completion: a subtask is done when the L2 distance between its object qpos
  slice and its goal is below gymnasium-robotics' threshold (0.3), computed
  from the simulator state with gymnasium-robotics' own indices and goals.
  Once done, a subtask stays done for the rest of the episode.
* scoring ``ordered`` (the reference SPiRL scoring): target subtask ``i``
  counts only once target subtasks ``0..i-1`` count (a subtask that was done
  out of order, and is still flagged done, counts as soon as its predecessors
  count). ``any_order`` (gymnasium's): every completed target counts.
  The reward of a step is the number of targets that became counted.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

try:  # use gymnasium-robotics' own constants rather than retyping them
    from gymnasium_robotics.envs.franka_kitchen.kitchen_env import (
        BONUS_THRESH,
        OBS_ELEMENT_GOALS,
        OBS_ELEMENT_INDICES,
    )
except ImportError:  # pragma: no cover - only for very old/new layouts
    BONUS_THRESH = 0.3
    OBS_ELEMENT_INDICES = {
        "bottom burner": np.array([11, 12]),
        "top burner": np.array([15, 16]),
        "light switch": np.array([17, 18]),
        "slide cabinet": np.array([19]),
        "hinge cabinet": np.array([20, 21]),
        "microwave": np.array([22]),
        "kettle": np.array([23, 24, 25, 26, 27, 28, 29]),
    }
    OBS_ELEMENT_GOALS = {
        "bottom burner": np.array([-0.88, -0.01]),
        "top burner": np.array([-0.92, -0.01]),
        "light switch": np.array([-0.69, -0.05]),
        "slide cabinet": np.array([0.37]),
        "hinge cabinet": np.array([0.0, 1.45]),
        "microwave": np.array([-0.75]),
        "kettle": np.array([-0.23, 0.75, 1.62, 0.99, 0.0, 0.0, -0.06]),
    }

KITCHEN_SUBTASKS: tuple[str, ...] = (
    "microwave",
    "kettle",
    "bottom burner",
    "top burner",
    "light switch",
    "slide cabinet",
    "hinge cabinet",
)
PAPER_TARGET_TASKS: tuple[str, ...] = ("microwave", "kettle", "bottom burner", "light switch")
STATE_LAYOUTS = {"d4rl30": 30, "full59": 59}
SCORINGS: tuple[str, ...] = ("ordered", "any_order")
ENV_ID = "spirl_ray/Kitchen-v0"

#: slices of the 59-d FrankaKitchen-v1 observation kept by each layout
_LAYOUT_INDEX = {
    "d4rl30": np.concatenate([np.arange(0, 9), np.arange(18, 39)]),
    "full59": np.arange(59),
}


def subtask_completion(qpos: np.ndarray, tasks=KITCHEN_SUBTASKS) -> dict[str, bool]:
    """Raw (instantaneous) completion of ``tasks`` from a full simulator ``qpos`` (30,)."""
    qpos = np.asarray(qpos)
    return {
        t: bool(np.linalg.norm(qpos[OBS_ELEMENT_INDICES[t]] - OBS_ELEMENT_GOALS[t]) < BONUS_THRESH)
        for t in tasks
    }


def _register_base_envs() -> None:
    import gymnasium_robotics

    if "FrankaKitchen-v1" not in gym.registry:
        gym.register_envs(gymnasium_robotics)


class KitchenEnv(gym.Env):
    """FrankaKitchen-v1 with a flat Box observation, SPiRL scoring and own truncation."""

    metadata = {"render_modes": [], "render_fps": 12}

    def __init__(
        self,
        tasks_to_complete=PAPER_TARGET_TASKS,
        state_layout: str = "d4rl30",
        scoring: str = "ordered",
        max_episode_steps: int | None = 280,
        terminate_on_tasks_completed: bool = True,
    ):
        tasks = tuple(tasks_to_complete)
        bad = [t for t in tasks if t not in KITCHEN_SUBTASKS]
        if bad or not tasks:
            raise ValueError(
                f"tasks_to_complete has unknown subtask(s) {bad} (or is empty); valid names: {list(KITCHEN_SUBTASKS)}"
            )
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks_to_complete has duplicates: {tasks}")
        if state_layout not in STATE_LAYOUTS:
            raise ValueError(f"state_layout={state_layout!r}; valid values: {list(STATE_LAYOUTS)}")
        if scoring not in SCORINGS:
            raise ValueError(f"scoring={scoring!r}; valid values: {list(SCORINGS)}")
        if max_episode_steps is not None and int(max_episode_steps) <= 0:
            raise ValueError(f"max_episode_steps must be positive or None, got {max_episode_steps}")

        self.tasks_to_complete = tasks
        self.state_layout = state_layout
        self.scoring = scoring
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.terminate_on_tasks_completed = bool(terminate_on_tasks_completed)

        _register_base_envs()
        # all 7 subtasks, no termination and (practically) no time limit inside:
        # this wrapper scores and truncates itself.
        self._env = gym.make(
            "FrankaKitchen-v1",
            tasks_to_complete=list(KITCHEN_SUBTASKS),
            terminate_on_tasks_completed=False,
            max_episode_steps=2**62,
            disable_env_checker=True,
        )
        self._index = _LAYOUT_INDEX[state_layout]
        dim = STATE_LAYOUTS[state_layout]
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)
        base_space = self._env.action_space
        self.action_space = spaces.Box(
            low=np.asarray(base_space.low, dtype=np.float32),
            high=np.asarray(base_space.high, dtype=np.float32),
            shape=base_space.shape,
            dtype=np.float32,
        )
        self._done = {t: False for t in KITCHEN_SUBTASKS}
        self._counted = {t: False for t in tasks}
        self._steps = 0
        self._last_obs59: np.ndarray | None = None

    # ------------------------------------------------------------------ sim access
    @property
    def model(self):
        """The MuJoCo ``MjModel`` (for scripted controllers)."""
        return self._env.unwrapped.model

    @property
    def data(self):
        """The MuJoCo ``MjData`` (for scripted controllers)."""
        return self._env.unwrapped.data

    @property
    def dt(self) -> float:
        """Seconds of simulated time per env step (0.08)."""
        return float(self._env.unwrapped.robot_env.dt)

    @property
    def base_env(self):
        """The unwrapped gymnasium-robotics ``KitchenEnv``."""
        return self._env.unwrapped

    @property
    def elapsed_steps(self) -> int:
        return self._steps

    @property
    def last_obs59(self) -> np.ndarray:
        """A copy of the full 59-d observation of the last reset/step."""
        return None if self._last_obs59 is None else self._last_obs59.copy()

    # ------------------------------------------------------------------ scoring
    def _update_scores(self) -> int:
        raw = subtask_completion(self.data.qpos)
        for t, v in raw.items():
            self._done[t] = self._done[t] or v
        newly = 0
        prev_ok = True
        for t in self.tasks_to_complete:
            if self.scoring == "ordered":
                ok = prev_ok and self._done[t]
                prev_ok = ok
            else:
                ok = self._done[t]
            if ok and not self._counted[t]:
                newly += 1
            self._counted[t] = self._counted[t] or ok
        return newly

    def _info(self) -> dict[str, Any]:
        n = int(sum(self._counted.values()))
        return {
            "subtasks": dict(self._done),
            "target_completed": dict(self._counted),
            "num_subtasks_completed": n,
            "scoring": self.scoring,
            "success": n == len(self.tasks_to_complete),
        }

    def _obs(self, obs_dict) -> np.ndarray:
        obs59 = np.array(obs_dict["observation"], dtype=np.float64, copy=True)
        self._last_obs59 = obs59
        return obs59[self._index].astype(np.float32)  # fancy indexing -> new array

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, _ = self._env.reset(seed=seed)
        self._done = {t: False for t in KITCHEN_SUBTASKS}
        self._counted = {t: False for t in self.tasks_to_complete}
        self._steps = 0
        self._update_scores()  # a task already satisfied at reset is done (never in practice)
        return self._obs(obs), self._info()

    def step(self, action):
        action = np.asarray(action, dtype=np.float64).reshape(self.action_space.shape)
        obs, _, _, _, _ = self._env.step(action)
        self._steps += 1
        reward = float(self._update_scores())
        info = self._info()
        terminated = bool(self.terminate_on_tasks_completed and info["success"])
        truncated = bool(
            self.max_episode_steps is not None and self._steps >= self.max_episode_steps and not terminated
        )
        return self._obs(obs), reward, terminated, truncated, info

    def close(self):
        self._env.close()


def make_kitchen_env(**kwargs) -> KitchenEnv:
    """Build a :class:`KitchenEnv` (same keyword arguments)."""
    return KitchenEnv(**kwargs)


def register_kitchen_env() -> None:
    """Register :data:`ENV_ID` with gymnasium (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point=make_kitchen_env, disable_env_checker=True)


register_kitchen_env()
