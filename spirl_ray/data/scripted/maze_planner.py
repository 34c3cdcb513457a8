"""Planner-based scripted maze navigation: BFS on the cell grid + a waypoint-following velocity controller.

Appendix C: "we collect goal-reaching examples through a combination of
high-level planner with access to a map of the maze and a low-level controller
that follows the plan" (after D4RL's maze2d collection, Fu et al.).

* Plan: a shortest 4-connected cell path (BFS,
  :func:`spirl_ray.envs.maze_layout.shortest_path`), reduced to its corner
  cells; waypoints are the corner-cell centres plus uniform jitter, the last
  waypoint is the goal. Consecutive waypoints lie in one straight run of free
  cells (a convex rectangle), so the straight segments between them never
  cross a wall.
* Control: the desired velocity points at the current waypoint with a speed
  that brakes toward the waypoint (``sqrt(v_pass^2 + 2 a d)``, capped at the
  episode's cruise speed; ``v_pass = 0`` at the goal); the force command is
  ``gain * (v_desired - v)``, clipped to [-1, 1]. The controller moves on to
  the next waypoint within ``switch_radius`` of the current one.
* Noise (per episode ``numpy.random.Generator``): Gaussian action noise,
  waypoint jitter, a random cruise speed.

Units: metres, m/s, env steps (0.01 s); actions are PointMaze force commands
in [-1, 1] (gear 100 N on a ~4.2 kg ball).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spirl_ray.envs.maze import GOAL_THRESHOLD, MazeEnv
from spirl_ray.envs.maze_layout import MazeLayout, bfs_distances, shortest_path

#: shortest and longest episode of the collected data (env steps)
MIN_EPISODE_STEPS = 20
MAX_EPISODE_STEPS = 500
#: BFS distance range (cells) of sampled start/goal pairs. The ball covers a
#: cell in ~25-30 env steps at the planner's 3-5 m/s, so 15 cells fit in 500
#: steps; 2 cells take > 20 steps from rest.
MIN_GOAL_DISTANCE = 2
MAX_GOAL_DISTANCE = 15


@dataclass(frozen=True)
class PlannerNoise:
    """Per-episode variation of the scripted navigator.

    Attributes:
        action_noise: std of the Gaussian added to each action component
            (force-command units; actions are clipped to [-1, 1] afterwards).
        waypoint_jitter: half-width (m) of the uniform offset added to every
            intermediate waypoint per axis (must be < 0.3 so the ball keeps
            clear of the walls).
        speed_range: (low, high) m/s; the cruise speed of an episode is uniform in it.
    """

    action_noise: float = 0.1
    waypoint_jitter: float = 0.1
    speed_range: tuple[float, float] = (3.0, 5.0)

    def __post_init__(self):
        if self.action_noise < 0:
            raise ValueError(f"action_noise must be >= 0, got {self.action_noise}")
        if not 0 <= self.waypoint_jitter < 0.3:
            raise ValueError(f"waypoint_jitter must be in [0, 0.3) m, got {self.waypoint_jitter}")
        lo, hi = self.speed_range
        if not 0 < lo <= hi <= 5.0:
            raise ValueError(f"speed_range must satisfy 0 < low <= high <= 5 m/s (PointMaze's cap), got {self.speed_range}")


def plan_waypoints(
    layout: MazeLayout, start_xy, goal_xy, rng: np.random.Generator | None = None, jitter: float = 0.0
) -> np.ndarray:
    """Waypoints (K, 2) in metres from ``start_xy`` to ``goal_xy`` along a shortest cell path.

    The corner cells of the BFS path (where it changes direction), each at its
    centre plus uniform ``[-jitter, jitter]`` m per axis, then ``goal_xy``
    exactly. The start itself is not a waypoint.

    Raises:
        ValueError: start or goal not in a free cell, or unreachable.
    """
    start_cell = layout.xy_to_cell(start_xy)
    goal_cell = layout.xy_to_cell(goal_xy)
    cells = shortest_path(layout.walls, start_cell, goal_cell)
    corners = []
    for k in range(1, len(cells) - 1):
        d_in = (cells[k][0] - cells[k - 1][0], cells[k][1] - cells[k - 1][1])
        d_out = (cells[k + 1][0] - cells[k][0], cells[k + 1][1] - cells[k][1])
        if d_in != d_out:
            corners.append(cells[k])
    pts = layout.cell_to_xy(np.array(corners, dtype=np.int64).reshape(-1, 2))
    if jitter > 0 and len(pts):
        rng = rng if rng is not None else np.random.default_rng()
        pts = pts + rng.uniform(-jitter, jitter, size=pts.shape)
    return np.concatenate([pts, np.asarray(goal_xy, dtype=np.float64).reshape(1, 2)], axis=0)


class WaypointController:
    """Velocity-tracking waypoint follower for the PointMaze ball.

    Args:
        waypoints: (K, 2) metres; the last one is the goal.
        cruise_speed: speed cap in m/s.
        pass_speed: speed (m/s) aimed for when passing an intermediate waypoint.
        brake_accel: deceleration (m/s^2) of the braking profile.
        gain: force command per m/s of velocity error.
        switch_radius: distance (m) at which the next waypoint becomes the target.
    """

    def __init__(self, waypoints, cruise_speed: float = 4.0, pass_speed: float = 2.0, brake_accel: float = 10.0,
                 gain: float = 0.5, switch_radius: float = 0.3):
        self.waypoints = np.asarray(waypoints, dtype=np.float64).reshape(-1, 2)
        if len(self.waypoints) == 0:
            raise ValueError("waypoints must hold at least the goal, got an empty array")
        self.cruise_speed = float(cruise_speed)
        self.pass_speed = float(pass_speed)
        self.brake_accel = float(brake_accel)
        self.gain = float(gain)
        self.switch_radius = float(switch_radius)
        self.index = 0

    def act(self, xy, velocity) -> np.ndarray:
        """(2,) float64 force command in [-1, 1] for position ``xy`` (m) and ``velocity`` (m/s)."""
        xy = np.asarray(xy, dtype=np.float64)
        last = len(self.waypoints) - 1
        while self.index < last and np.linalg.norm(self.waypoints[self.index] - xy) < self.switch_radius:
            self.index += 1
        err = self.waypoints[self.index] - xy
        dist = float(np.linalg.norm(err))
        v_end = 0.0 if self.index == last else self.pass_speed
        speed = min(self.cruise_speed, np.sqrt(v_end**2 + 2.0 * self.brake_accel * dist))
        v_des = err / dist * speed if dist > 1e-9 else np.zeros(2)
        return np.clip(self.gain * (v_des - np.asarray(velocity, dtype=np.float64)), -1.0, 1.0)


def sample_task(layout: MazeLayout, rng: np.random.Generator, min_distance: int = MIN_GOAL_DISTANCE,
                max_distance: int | None = MAX_GOAL_DISTANCE) -> tuple[tuple[int, int], tuple[int, int]]:
    """Random (start_cell, goal_cell): start uniform over free cells, goal uniform over free
    cells whose BFS distance from the start is in ``[min_distance, max_distance]`` cells.

    Raises:
        ValueError: ``min_distance < 1`` or no start/goal pair in the layout satisfies the range.
    """
    if min_distance < 1:
        raise ValueError(f"min_distance must be >= 1 cell, got {min_distance}")
    free = layout.free_cells()
    for _ in range(100):
        s = free[rng.integers(len(free))]
        d = bfs_distances(layout.walls, s)
        ok = d >= min_distance
        if max_distance is not None:
            ok &= d <= max_distance
        cand = np.argwhere(ok)
        if len(cand):
            g = cand[rng.integers(len(cand))]
            return (int(s[0]), int(s[1])), (int(g[0]), int(g[1]))
    raise ValueError(f"no start/goal pair with BFS distance in [{min_distance}, {max_distance}] cells in this layout")


def wall_contact(env: MazeEnv) -> bool:
    """True when the ball touches a wall geom right now (MuJoCo contacts)."""
    base = env.base_env
    model, data = base.point_env.model, base.point_env.data
    blocks = getattr(env, "_block_geom_mask", None)
    if blocks is None or len(blocks) != model.ngeom:
        import mujoco

        blocks = np.array([(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) or "").startswith("block_")
                           for g in range(model.ngeom)])
        env._block_geom_mask = blocks
    n = data.ncon
    if n == 0:
        return False
    g1, g2 = data.contact.geom1[:n], data.contact.geom2[:n]
    return bool(np.any(blocks[g1] | blocks[g2]))


def run_planner_episode(
    env: MazeEnv,
    rng: np.random.Generator,
    noise: PlannerNoise = PlannerNoise(),
    layout: MazeLayout | None = None,
    start_cell=None,
    goal_cell=None,
    max_steps: int = MAX_EPISODE_STEPS,
    min_goal_distance: int = MIN_GOAL_DISTANCE,
    max_goal_distance: int | None = MAX_GOAL_DISTANCE,
) -> dict:
    """Run one scripted goal-reaching episode; stop on reaching the goal or after ``max_steps``.

    ``layout`` (optional) replaces the env's layout; ``start_cell``/``goal_cell``
    default to :func:`sample_task` with BFS distance in
    ``[min_goal_distance, max_goal_distance]`` cells. The env should
    have ``max_episode_steps=None`` (this function truncates itself).

    Returns a dict: ``observations`` (T, 4) float32 ``(x, y, vx, vy)`` at the
    start of each step; ``images`` (T, 2, H, W) uint8 (the env's image
    observation at the start of each step; only when ``env.state == "image"``);
    ``actions`` (T, 2) float32 (executed, noise included, clipped);
    ``rewards`` (T,) float32 (env's sparse reward); ``success`` (goal within
    0.45 m at the last step); ``length`` T; ``collision_steps`` (steps ending
    in wall contact); ``start_cell``, ``goal_cell``, ``goal_xy``, ``walls``
    (layout grid), ``cruise_speed``, ``num_waypoints``.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1 env step, got {max_steps}")
    lay = layout if layout is not None else env.layout
    if start_cell is None or goal_cell is None:
        s, g = sample_task(lay, rng, min_goal_distance, max_goal_distance)
        start_cell = s if start_cell is None else start_cell
        goal_cell = g if goal_cell is None else goal_cell
    obs, info = env.reset(seed=int(rng.integers(2**31)),
                          options={"layout": layout, "start_cell": start_cell, "goal_cell": goal_cell})
    waypoints = plan_waypoints(env.layout, env.agent_xy, env.goal_xy, rng, noise.waypoint_jitter)
    cruise = float(rng.uniform(*noise.speed_range))
    ctrl = WaypointController(waypoints, cruise_speed=cruise)
    states, images, actions, rewards = [], [], [], []
    collisions = 0
    success = bool(info["at_goal"])
    for _ in range(max_steps):
        xy, vel = env.agent_xy, env.agent_velocity
        a = ctrl.act(xy, vel)
        if noise.action_noise > 0:
            a = a + rng.normal(0.0, noise.action_noise, size=2)
        a = np.clip(a, -1.0, 1.0).astype(np.float32)
        states.append(env.state_vector())
        if env.state == "image":
            images.append(obs)
        actions.append(a)
        obs, r, _, _, info = env.step(a)
        rewards.append(r)
        collisions += int(wall_contact(env))
        if info["at_goal"]:
            success = True
            break
    out = {
        "observations": np.asarray(states, dtype=np.float32).reshape(-1, 4),
        "actions": np.asarray(actions, dtype=np.float32).reshape(-1, 2),
        "rewards": np.asarray(rewards, dtype=np.float32),
        "success": bool(success and info["distance"] <= GOAL_THRESHOLD),
        "length": len(actions),
        "collision_steps": collisions,
        "start_cell": tuple(env.start_cell),
        "goal_cell": tuple(env.goal_cell),
        "goal_xy": env.goal_xy,
        "walls": np.asarray(env.layout.walls, dtype=bool),
        "cruise_speed": cruise,
        "num_waypoints": len(waypoints),
    }
    if env.state == "image":
        out["images"] = np.stack(images).astype(np.uint8) if images else np.zeros((0, 2, env.image_size, env.image_size), np.uint8)
    return out
