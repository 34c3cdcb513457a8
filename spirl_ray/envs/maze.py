"""Maze navigation (paper appendix C) on gymnasium-robotics' PointMaze: real MuJoCo point-mass physics.

:class:`MazeEnv` wraps ``gymnasium_robotics.envs.maze.point_maze.PointMazeEnv``
built from a :class:`~spirl_ray.envs.maze_layout.MazeLayout` ``maze_map``
(1 m cells, point mass of radius 0.1 m, force actuators with gear 100,
0.01 s per env step, speed clipped to 5 m/s by PointMaze). The base env runs
as a continuing task without goal resampling (``continuing_task=True``,
``reset_target=False``); this wrapper does the goal test, reward,
termination and truncation itself. The model is compiled without
PointMaze's procedural skybox texture (scenery for MuJoCo's renderer, unused
here, ~98 % of the compile time): a new layout costs ~0.02 s instead of
~0.2 s, with identical physics (checked bit for bit in the tests).

* action: (2,) float32 in [-1, 1], PointMaze's x/y force command.
* observation ``state="state"`` (default): (4,) float32 ``(x, y, vx, vy)``
  in m and m/s. ``state="image"``: (2, 32, 32) uint8 ``[previous, current]``
  top-down frames centred on the agent (:mod:`spirl_ray.envs.maze_render`;
  255 = wall, row 0 = +y); uint8 keeps replay buffers and datasets 4x
  smaller than float32 — divide by 255 in the encoder. At reset both frames
  are the reset frame.
* reward (``reward_type="sparse"``, the paper's): 1.0 on every step that ends
  within :data:`GOAL_THRESHOLD` (0.45 m, PointMaze's sparse threshold) of the
  goal, else 0.0 — "a per-timestep binary reward when the distance to the goal
  is below a threshold". ``"dense"``: PointMaze's ``exp(-distance)``.
* termination: none by default (``terminate_on_success=False``): the paper's
  per-timestep reward means the agent keeps collecting reward at the goal
  until the 2000-step time limit. With ``terminate_on_success=True`` the
  episode ends on the first step at the goal.
* truncation: after ``max_episode_steps`` env steps (2000 downstream).
* ``info``: ``success`` (goal reached at some step of this episode, sticky),
  ``at_goal`` (this step), ``xy`` (2,) float64 agent position in m (for
  exploration maps), ``goal_xy`` (2,), ``distance`` to the goal (m),
  ``cell`` (row, col) of the agent.

Start and goal: cells ``start_cell`` / ``goal_cell`` (row, col); the goal is
the goal cell's centre exactly; the start is the start cell's centre plus
uniform noise in ``[-start_noise, start_noise]`` m per axis (PointMaze's
default 0.25), drawn from the env's seeded ``np_random``. ``reset(options=...)``
accepts ``layout`` (a new :class:`MazeLayout`; rebuilds the MuJoCo model),
``start_cell``, ``goal_cell`` and ``start_xy`` (exact start position, m) —
the data collector uses these; the downstream task leaves them fixed.

:func:`make_maze_env` builds the downstream task: a seeded 20x20-cell layout
(four times the 10x10 training area), fixed start and goal 40 BFS cells
apart (the scripted planner needs ~900-1100 of the 2000 steps for it).
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from spirl_ray.envs.maze_layout import (
    DOWNSTREAM_MAZE_SIZE,
    MazeLayout,
    far_apart_cells,
    generate_layout,
)
from spirl_ray.envs.maze_render import FRAME_STACK, IMAGE_SIZE, VIEW_CELLS, MazeRenderer

#: goal radius in metres: PointMaze's sparse-reward / success distance (``<= 0.45``)
GOAL_THRESHOLD = 0.45
#: downstream episode length in env steps (reference configs: maze 2000)
DOWNSTREAM_EPISODE_STEPS = 2000
#: seed of the fixed downstream layout (and of its start/goal choice)
DOWNSTREAM_LAYOUT_SEED = 0
#: BFS path length (cells) between the default downstream start and goal. The
#: scripted planner covers ~25-30 env steps per cell, so 40 cells take it
#: ~1100 of the 2000 steps; the diameter of a 20x20 layout (~70 cells) would
#: take it ~1700-2000.
DOWNSTREAM_GOAL_DISTANCE = 40
#: observation variants
STATE_VARIANTS = ("state", "image")
REWARD_TYPES = ("sparse", "dense")
ENV_ID = "spirl_ray/Maze-v0"

_BUILD_ATTEMPTS = 3


_light_xml_dir = None


def _light_point_xml() -> str:
    """gymnasium-robotics' ``point.xml`` without its skybox texture, in a per-process temp dir.

    The procedural 800x800 skybox is only scenery for MuJoCo's renderer (which
    this env does not use) but takes ~98 % of the model compile time
    (~0.1-0.2 s vs ~2 ms): with a new layout per data episode it would
    dominate collection. Bodies, geoms, joints, actuators and options are untouched.
    """
    global _light_xml_dir
    import tempfile
    import xml.etree.ElementTree as ET

    import gymnasium_robotics.envs.maze.point_maze as pm

    if _light_xml_dir is None:
        _light_xml_dir = tempfile.TemporaryDirectory(prefix="spirl_ray_maze_")  # removed at exit
    out = os.path.join(_light_xml_dir.name, "point_noskybox.xml")
    if not os.path.exists(out):
        src = os.path.join(os.path.dirname(os.path.realpath(pm.__file__)), "../assets/point/point.xml")
        tree = ET.parse(src)
        asset = tree.find(".//asset")
        for tex in list(asset.findall("texture")) if asset is not None else []:
            if tex.get("type") == "skybox":
                asset.remove(tex)
        tree.write(out)
    return out


@functools.lru_cache(maxsize=None)
def _point_maze_class():
    """``PointMazeEnv`` whose MazeEnv base builds the maze on :func:`_light_point_xml`.

    ``PointMazeEnv.__init__`` hard-codes its agent XML and passes it up to
    ``MazeEnv.__init__``; the mixin sits between the two in the MRO and swaps
    the path — no gymnasium-robotics code is copied or patched.
    """
    from gymnasium_robotics.envs.maze.maze_v4 import MazeEnv as _BaseMazeEnv
    from gymnasium_robotics.envs.maze.point_maze import PointMazeEnv

    class _LightXml(_BaseMazeEnv):
        def __init__(self, agent_xml_path: str, **kwargs):
            super().__init__(agent_xml_path=_light_point_xml(), **kwargs)

    class _PointMaze(PointMazeEnv, _LightXml):
        pass

    return _PointMaze


def _build_point_maze(layout: MazeLayout):
    """PointMazeEnv for ``layout``; checks the compiled walls and removes PointMaze's temp XML.

    PointMaze writes its MJCF to ``/tmp/ant_maze<time>.xml`` and never deletes
    it; parallel workers could in principle collide on that name, so the wall
    geoms of the compiled model are compared with the layout (rebuilt on a
    mismatch).
    """
    import mujoco

    want = {f"block_{i}_{j}" for i, j in np.argwhere(layout.walls)}
    cls = _point_maze_class()
    for _ in range(_BUILD_ATTEMPTS):
        env = cls(maze_map=layout.maze_map(), reward_type="sparse", continuing_task=True, reset_target=False)
        tmp = getattr(env, "tmp_xml_file_path", None)
        if tmp and os.path.exists(tmp):
            try:
                os.remove(tmp)
            except OSError:
                pass
        model = env.point_env.model
        names = {mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) for g in range(model.ngeom)}
        got = {n for n in names if n and n.startswith("block_")}
        if got == want:
            return env
        env.close()
    raise RuntimeError(f"PointMaze built a model whose walls differ from the layout {_BUILD_ATTEMPTS} times")


def _cell(value, name: str, layout: MazeLayout) -> tuple[int, int]:
    try:
        i, j = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (row, col) pair of ints, got {value!r}") from None
    if not layout.is_free((i, j)):
        raise ValueError(f"{name}={(i, j)} is not a free cell of the {layout.shape[0]}x{layout.shape[1]} maze grid")
    return i, j


class MazeEnv(gym.Env):
    """SPiRL maze navigation on a PointMaze built from a :class:`MazeLayout` (see module docstring).

    Args:
        layout: the maze (border included).
        start_cell, goal_cell: (row, col) free cells; ``None`` = a far-apart
            pair from :func:`far_apart_cells` with ``task_seed``.
        state: ``"state"`` -> (4,) float32 ``(x, y, vx, vy)``; ``"image"`` ->
            (2, image_size, image_size) uint8 stacked local views.
        max_episode_steps: truncation in env steps; ``None`` = never.
        terminate_on_success: end the episode on the first step at the goal.
        reward_type: ``"sparse"`` (paper) or ``"dense"``.
        start_noise: half-width (m) of the uniform start jitter per axis.
        image_size, view_cells: frame size (px) and view side (cells = m).
        task_seed: seed for the default start/goal choice.
        goal_distance: longest BFS distance (cells) of the default start/goal
            pair (None = the layout's diameter).
        state_in_info: also report the ``"state"`` observation ``(x, y, vx, vy)`` in ``info["state"]``
            ((4,) float32, whatever ``state``): the input of an asymmetric critic (``rl.asymmetric_critic``).

    Raises:
        ValueError: unknown ``state`` / ``reward_type``, a start/goal cell that
            is not free, equal start and goal, non-positive ``max_episode_steps``,
            ``start_noise`` outside ``[0, 0.35]`` m (the ball must stay off the walls).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 100}

    def __init__(
        self,
        layout: MazeLayout,
        start_cell=None,
        goal_cell=None,
        state: str = "state",
        max_episode_steps: int | None = DOWNSTREAM_EPISODE_STEPS,
        terminate_on_success: bool = False,
        reward_type: str = "sparse",
        start_noise: float = 0.25,
        image_size: int = IMAGE_SIZE,
        view_cells: float = VIEW_CELLS,
        task_seed: int | None = DOWNSTREAM_LAYOUT_SEED,
        goal_distance: int | None = DOWNSTREAM_GOAL_DISTANCE,
        render_mode: str | None = None,
        state_in_info: bool = False,
    ):
        if not isinstance(layout, MazeLayout):
            raise ValueError(f"layout must be a MazeLayout, got {type(layout).__name__}")
        if state not in STATE_VARIANTS:
            raise ValueError(f"state={state!r}; expected one of {list(STATE_VARIANTS)}")
        if reward_type not in REWARD_TYPES:
            raise ValueError(f"reward_type={reward_type!r}; expected one of {list(REWARD_TYPES)}")
        if max_episode_steps is not None and int(max_episode_steps) <= 0:
            raise ValueError(f"max_episode_steps must be a positive number of env steps or None, got {max_episode_steps}")
        if not 0.0 <= float(start_noise) <= 0.35:
            raise ValueError(f"start_noise must be in [0, 0.35] m (ball radius 0.1 in a 1 m cell), got {start_noise}")
        if int(image_size) < 1 or not float(view_cells) > 0:
            raise ValueError(f"image_size must be >= 1 px and view_cells > 0, got {image_size}, {view_cells}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}; expected None or 'rgb_array'")
        self.state = state
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.terminate_on_success = bool(terminate_on_success)
        self.reward_type = reward_type
        self.start_noise = float(start_noise)
        self.image_size = int(image_size)
        self.view_cells = float(view_cells)
        self.render_mode = render_mode
        self.state_in_info = bool(state_in_info)

        if start_cell is None or goal_cell is None:
            s, g = far_apart_cells(layout, task_seed, goal_distance)
            start_cell = s if start_cell is None else start_cell
            goal_cell = g if goal_cell is None else goal_cell
        self._base = None
        self._set_layout(layout)
        self.start_cell = _cell(start_cell, "start_cell", layout)
        self.goal_cell = _cell(goal_cell, "goal_cell", layout)
        if self.start_cell == self.goal_cell:
            raise ValueError(f"start_cell and goal_cell must differ, both are {self.start_cell}")

        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        if state == "state":
            self.observation_space = spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
        else:
            self.observation_space = spaces.Box(
                0, 255, shape=(FRAME_STACK, self.image_size, self.image_size), dtype=np.uint8
            )
        self._steps = 0
        self._success = False
        self._goal_xy = self.layout.cell_to_xy(self.goal_cell)
        self._prev_frame: np.ndarray | None = None

    # ------------------------------------------------------------------ layout / sim access
    def _set_layout(self, layout: MazeLayout) -> None:
        if self._base is not None and np.array_equal(layout.walls, self.layout.walls):
            self.layout = layout
            return
        if self._base is not None:
            self._base.close()
        self.layout = layout
        self._base = _build_point_maze(layout)
        self._renderer = MazeRenderer(layout.walls, self.image_size, self.view_cells)

    @property
    def base_env(self):
        """The gymnasium-robotics ``PointMazeEnv``."""
        return self._base

    @property
    def dt(self) -> float:
        """Seconds of simulated time per env step (0.01)."""
        return float(self._base.point_env.dt)

    @property
    def elapsed_steps(self) -> int:
        """Env steps since the last reset."""
        return self._steps

    @property
    def agent_xy(self) -> np.ndarray:
        """(2,) float64 agent position in metres (a copy)."""
        return np.array(self._base.point_env.data.qpos[:2], dtype=np.float64)

    @property
    def agent_velocity(self) -> np.ndarray:
        """(2,) float64 agent velocity in m/s (a copy)."""
        return np.array(self._base.point_env.data.qvel[:2], dtype=np.float64)

    @property
    def goal_xy(self) -> np.ndarray:
        """(2,) float64 goal position in metres (a copy)."""
        return self._goal_xy.copy()

    # ------------------------------------------------------------------ observation
    def render_frame(self, xy=None) -> np.ndarray:
        """(image_size, image_size) uint8 local view at ``xy`` (default: the agent)."""
        return self._renderer(self.agent_xy if xy is None else xy)

    def state_vector(self) -> np.ndarray:
        """(4,) float32 ``(x, y, vx, vy)`` of the simulator now."""
        d = self._base.point_env.data
        return np.concatenate([d.qpos[:2], d.qvel[:2]]).astype(np.float32)

    def _obs(self) -> np.ndarray:
        if self.state == "state":
            return self.state_vector()
        frame = self.render_frame()
        prev = frame if self._prev_frame is None else self._prev_frame
        self._prev_frame = frame
        return np.stack([prev, frame], axis=0)

    def _info(self, xy: np.ndarray, dist: float) -> dict[str, Any]:
        rows, cols = self.layout.shape
        info = {
            "success": self._success,
            "at_goal": bool(dist <= GOAL_THRESHOLD),
            "xy": xy,
            "goal_xy": self._goal_xy.copy(),
            "distance": float(dist),
            "cell": (math.floor(rows / 2 - xy[1]), math.floor(xy[0] + cols / 2)),
        }
        if self.state_in_info:
            info["state"] = self.state_vector()
        return info

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reset; ``options`` may hold ``layout``, ``start_cell``, ``goal_cell``, ``start_xy`` (see module doc).

        Raises:
            ValueError: unknown option keys, non-free cells, equal start and goal cells.
        """
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"layout", "start_cell", "goal_cell", "start_xy"}
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; expected layout, start_cell, goal_cell, start_xy")
        if options.get("layout") is not None:
            if not isinstance(options["layout"], MazeLayout):
                raise ValueError(f"options['layout'] must be a MazeLayout, got {type(options['layout']).__name__}")
            self._set_layout(options["layout"])
        if options.get("start_cell") is not None:
            self.start_cell = _cell(options["start_cell"], "start_cell", self.layout)
        if options.get("goal_cell") is not None:
            self.goal_cell = _cell(options["goal_cell"], "goal_cell", self.layout)
        # re-validate (a new layout may invalidate the kept cells)
        self.start_cell = _cell(self.start_cell, "start_cell", self.layout)
        self.goal_cell = _cell(self.goal_cell, "goal_cell", self.layout)
        if self.start_cell == self.goal_cell:
            raise ValueError(f"start_cell and goal_cell must differ, both are {self.start_cell}")

        base = self._base
        base.reset(seed=None if seed is None else int(self.np_random.integers(2**31)),
                   options={"goal_cell": np.array(self.goal_cell), "reset_cell": np.array(self.start_cell)})
        # exact goal (cell centre) and our own seeded start jitter, overriding PointMaze's noise
        self._goal_xy = self.layout.cell_to_xy(self.goal_cell)
        base.goal = self._goal_xy.copy()
        base.update_target_site_pos()
        if options.get("start_xy") is not None:
            start = np.asarray(options["start_xy"], dtype=np.float64).reshape(2)
        else:
            start = self.layout.cell_to_xy(self.start_cell) + self.np_random.uniform(
                -self.start_noise, self.start_noise, size=2)
        qpos = base.point_env.init_qpos.copy()
        qpos[:2] = start
        base.point_env.set_state(qpos, np.zeros_like(base.point_env.init_qvel))
        self._steps = 0
        self._prev_frame = None
        xy = self.agent_xy
        dist = math.hypot(xy[0] - self._goal_xy[0], xy[1] - self._goal_xy[1])
        self._success = dist <= GOAL_THRESHOLD
        return self._obs(), self._info(xy, dist)

    def step(self, action):
        a = np.asarray(action, dtype=np.float64).reshape(2)
        self._base.step(a)  # PointMaze clips the action to [-1, 1] and the speed to 5 m/s
        self._steps += 1
        xy = self.agent_xy
        dist = math.hypot(xy[0] - self._goal_xy[0], xy[1] - self._goal_xy[1])
        at_goal = dist <= GOAL_THRESHOLD
        self._success = self._success or at_goal
        if self.reward_type == "sparse":
            reward = 1.0 if at_goal else 0.0
        else:
            reward = math.exp(-dist)
        terminated = bool(self.terminate_on_success and at_goal)
        truncated = bool(self.max_episode_steps is not None and self._steps >= self.max_episode_steps
                         and not terminated)
        return self._obs(), reward, terminated, truncated, self._info(xy, dist)

    def render(self):
        """``rgb_array``: the current local view as (H, W, 3) uint8 (walls white)."""
        if self.render_mode != "rgb_array":
            return None
        return np.repeat(self.render_frame()[:, :, None], 3, axis=2)

    def close(self):
        if self._base is not None:
            self._base.close()
            self._base = None


def downstream_layout(size=DOWNSTREAM_MAZE_SIZE, layout_seed: int = DOWNSTREAM_LAYOUT_SEED, **layout_kwargs) -> MazeLayout:
    """The fixed downstream maze: :func:`generate_layout` (``size`` cells, seed ``layout_seed``)."""
    return generate_layout(size, layout_seed, **layout_kwargs)


def make_maze_env(
    size=DOWNSTREAM_MAZE_SIZE,
    layout_seed: int = DOWNSTREAM_LAYOUT_SEED,
    maze_map=None,
    start_cell=None,
    goal_cell=None,
    state: str = "state",
    max_episode_steps: int | None = DOWNSTREAM_EPISODE_STEPS,
    terminate_on_success: bool = False,
    reward_type: str = "sparse",
    start_noise: float = 0.25,
    image_size: int = IMAGE_SIZE,
    view_cells: float = VIEW_CELLS,
    min_room: int = 2,
    door_width: int = 1,
    goal_distance: int | None = DOWNSTREAM_GOAL_DISTANCE,
    state_in_info: bool = False,
) -> MazeEnv:
    """The downstream maze task (appendix C): fixed layout, start and goal; sparse per-step reward.

    The layout is ``generate_layout(size, layout_seed)`` (default 20x20 cells,
    four times the 10x10 training area) unless ``maze_map`` (a PointMaze list
    of lists) is given; ``start_cell``/``goal_cell`` default to a far-apart
    pair chosen with ``layout_seed``. Episodes last ``max_episode_steps``
    (2000) env steps; see :class:`MazeEnv` for spaces, reward and ``info``.

    Raises:
        ValueError: bad ``size`` (see :func:`generate_layout`), bad ``maze_map``,
            or any :class:`MazeEnv` argument error.
    """
    if maze_map is not None:
        layout = MazeLayout.from_maze_map(maze_map)
    else:
        layout = downstream_layout(size, layout_seed, min_room=min_room, door_width=door_width)
    return MazeEnv(
        layout, start_cell=start_cell, goal_cell=goal_cell, state=state, max_episode_steps=max_episode_steps,
        terminate_on_success=terminate_on_success, reward_type=reward_type, start_noise=start_noise,
        image_size=image_size, view_cells=view_cells, task_seed=layout_seed, goal_distance=goal_distance,
        state_in_info=state_in_info,
    )


def register_maze_env() -> None:
    """Register :data:`ENV_ID` (:func:`make_maze_env`) with gymnasium (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point=make_maze_env, disable_env_checker=True)


register_maze_env()
