"""Planar block stacking in MuJoCo (SPiRL, Pertsch et al. 2020, section 4.3 and appendix C).

A two-finger gripper moves in the x-z plane above a table; cubic blocks are
confined to the same plane (each block has a slide-x, a slide-z and a hinge-y
joint). Walls at both table edges and a ceiling form the barrier that keeps
the agent and the blocks over the table. Physics, contacts and grasping are
MuJoCo's: a block is lifted only if the fingers squeeze it hard enough for
friction to carry its weight. The model is generated as an MJCF string.

Frame and units: metres, seconds; x along the table (0 = table centre), z up
(0 = table top); blocks are 8 cm cubes (half size :data:`BLOCK_HALF`).

Variants (appendix C): 5 blocks on a 1.2 m table, randomly stacked or
scattered (data collection, :data:`DATA_COLLECTION_KWARGS`); 11 blocks on a
2.4 m table in a row, 1000-step episodes (downstream, the factory's defaults).

**Action** (3,) float32: ``(dx, dz, opening)``. ``dx, dz`` in [-1, 1] move the
gripper's position target by ``dx * MAX_DISPLACEMENT`` metres per env step
(the target stays within ``TARGET_LEAD`` of the gripper, so pushing against a
block or wall never winds up); ``opening`` in [0, 1] is the finger opening
(0 closed, 1 open: inner half-gap ``opening * OPEN_HALF_GAP``). Out-of-range
actions are clipped. One env step is ``FRAME_SKIP`` MuJoCo steps of
``TIMESTEP`` s (0.04 s).

**Observation** (``obs_mode``):

* ``"state"``: (5 + 4 n,) float32 = gripper ``[x, z, vx, vz, finger half-gap]``
  then per block ``[x, z, sin a, cos a]`` (a = rotation about +y).
* ``"image"``: (6, 32, 32) uint8, channel-first (C, H, W) like every image
  state of the project (the skill prior's conv encoder reads (C, H, W)):
  two stacked RGB front views centred on the gripper, previous frame in
  channels 0-2, current in 3-5 (appendix C, Fig. 7: "a stack of two 32x32 px
  images"); at reset both are the first frame (:func:`stack_frames`).
  Rendered by the numpy rasteriser in
  :mod:`spirl_ray.envs.block_stacking_render`; the data collector stores the
  same bytes (``images`` of :mod:`spirl_ray.data.collect_block_stacking`).

**Reward** (appendix C; magnitudes of the reference implementation):
``"dense"`` = per step ``LIFT_REWARD`` x (blocks lifted off the ground) +
``ON_TOP_REWARD`` x (lifted blocks above another block) +
``TOWER_REWARD_PER_METRE`` x height of the highest tower (stacked blocks x 8 cm,
i.e. 4 per stacked block); ``"sparse"`` = the tower term only. The predicates
(:func:`scene_predicates`) are geometric, on the block centres:

* lifted: centre more than ``GROUND_TOL`` above its resting height ``BLOCK_HALF``;
* above block j: lifted, ``|x - x_j| < BLOCK_HALF`` and ``z - z_j > 2 BLOCK_HALF - STACK_Z_TOL``;
* rests on block j: ``|x - x_j| < BLOCK_HALF`` and ``|z - z_j - 2 BLOCK_HALF| <= STACK_Z_TOL``;
* stack level: 0 on the ground, 1 + the level of a supporting block, undefined
  for a block supported by nothing (in the air). ``stacked_blocks`` = the
  highest level = the number of blocks on top of the base of the highest tower
  (the paper's "# blocks stacked"; 0 when no block rests on another).

``info``: ``stacked_blocks``, ``max_stacked_blocks`` (episode maximum),
``tower_height`` (blocks in the highest tower), ``num_lifted``,
``num_on_top``, ``reward_lift``, ``reward_on_top``, ``reward_tower``; with
``state_in_info`` also ``state``, the ``"state"`` observation (for an
asymmetric critic on image observations).
Episodes never terminate; they truncate after ``max_episode_steps``.

Choices where appendix C leaves room: the lift and on-top terms are
instantaneous per-block predicates of the current scene (the reference code
keeps per-block flags that stay set once a *grasped* block was lifted); a
block resting on a tower counts as lifted and on top, so letting go of a block
on a tower raises the per-step reward (3 while holding it above, 7 once it
rests there). The gripper is a parallel gripper: its two fingers are coupled
by an equality constraint. Contacts use elliptic friction cones and a sharper
impedance than MuJoCo's defaults so that tall towers stand (see ``IMPRATIO``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from spirl_ray.envs.block_stacking_render import rasterise

# ----------------------------------------------------------------------------- geometry (metres)
BLOCK_HALF = 0.04  #: half edge of a block (8 cm cubes, as the reference's ``block_size``)
BLOCK_MASS = 0.1  #: kg
FINGER_HALF_THICK = 0.01  #: finger half thickness along x
FINGER_HALF_LEN = 0.04  #: finger half length along z
FINGER_Z = 0.005  #: finger centre above the gripper origin (tips 3.5 cm below it)
PALM_HALF = (0.10, 0.015)  #: palm half width (x) / half height (z)
PALM_Z = 0.06  #: palm centre above the gripper origin
OPEN_HALF_GAP = 0.07  #: inner finger half-gap at opening 1 (block half 0.04 + 3 cm)
MAX_FINGER_HALF_GAP = 0.08
GRIPPER_Z_MIN = 0.03  #: lowest gripper origin (fingertips just above the table)
TABLE_MARGIN = 0.1  #: the gripper origin stays this far inside the walls (palm half width)

# ----------------------------------------------------------------------------- control / time
TIMESTEP = 0.004  #: MuJoCo step (s)
FRAME_SKIP = 10  #: MuJoCo steps per env step -> 0.04 s per env step
MAX_DISPLACEMENT = 0.03  #: metres of target motion per env step at |dx| = 1 (0.75 m/s)
TARGET_LEAD = 0.05  #: the position target stays within this distance of the gripper (m)
KP_GRIPPER, KV_GRIPPER = 1000.0, 80.0  #: base servo: N/m, N s/m
KP_FINGER, FINGER_FORCE = 400.0, 20.0  #: finger servo: N/m, max |force| N
FINGER_DAMPING = 15.0  #: finger joint damping, N s/m (the coupled fingers settle without ringing)
SETTLE_STEPS = 25  #: MuJoCo steps run at reset so resting contacts settle
#: contact model: elliptic friction cones, impratio 10 (less slip) and a stiffer, sharper
#: impedance (solimp 0.95 0.99 0.001). With MuJoCo's defaults an 11-block tower with 1-2.5 cm
#: offsets leans and falls on its own within 30 s; with these it stands. (Stiffer solref,
#: 0.008-0.01 s, also steadies towers but makes stacked blocks jump and grasped ones twist.)
IMPRATIO = 10.0
CONTACT_SOLREF = "0.02 1"
CONTACT_SOLIMP = "0.95 0.99 0.001"

# ----------------------------------------------------------------------------- reward (appendix C)
GROUND_TOL = 0.02  #: a block is lifted when its centre is > this above BLOCK_HALF
STACK_Z_TOL = 0.015  #: vertical tolerance of "rests on" / "above"
LIFT_REWARD = 1.0  #: per lifted block per step (reference: LIFTED_REWARD)
ON_TOP_REWARD = 2.0  #: per lifted block above another block per step (reference: LIFTED_ABOVE_REWARD)
TOWER_REWARD_PER_METRE = 50.0  #: x tower height in metres (reference: REWARD_SCALE); 4 per block

OBS_MODES = ("state", "image")
REWARD_TYPES = ("dense", "sparse")
INITIAL_LAYOUTS = ("row", "random")
ENV_ID = "spirl_ray/BlockStacking-v0"

#: the data-collection variant (appendix C): 5 blocks, randomly stacked or scattered
DATA_COLLECTION_KWARGS: dict[str, Any] = {"num_blocks": 5, "initial_layout": "random", "max_episode_steps": None}
#: the downstream variant: 11 blocks in a row, 1000-step episodes (the factory's defaults)
DOWNSTREAM_KWARGS: dict[str, Any] = {"num_blocks": 11, "initial_layout": "row", "max_episode_steps": 1000}

# colours (RGB)
_BACKGROUND = (205, 222, 240)
_TABLE = (139, 99, 62)
_WALL = (95, 95, 105)
_BLOCK_EDGE = (120, 30, 25)
_BLOCK_FILL = (228, 70, 50)
_PALM = (45, 45, 50)
_FINGER = (120, 125, 135)
_BLOCK_BORDER = 0.008  #: drawn edge width (m) so adjacent blocks stay distinguishable


def stack_frames(prev: np.ndarray | None, frame: np.ndarray) -> np.ndarray:
    """The image observation from two HWC front views: (6, S, S) uint8, channel-first.

    Args:
        prev: (S, S, 3) uint8 frame of the previous env step, or None at reset
            (the current frame is repeated, as in the env).
        frame: (S, S, 3) uint8 current frame (:meth:`BlockStackingEnv.render_frame`).

    Returns:
        (6, S, S) uint8: channels 0-2 = ``prev`` (R, G, B), 3-5 = ``frame``.

    Raises:
        ValueError: frames not (S, S, 3) of the same shape.
    """
    frame = np.asarray(frame)
    prev = frame if prev is None else np.asarray(prev)
    if frame.ndim != 3 or frame.shape[2] != 3 or prev.shape != frame.shape:
        raise ValueError(f"frames must be (S, S, 3) of one shape, got prev {prev.shape} and frame {frame.shape}")
    return np.ascontiguousarray(np.concatenate([prev, frame], axis=2).transpose(2, 0, 1), dtype=np.uint8)


def default_table_width(num_blocks: int) -> float:
    """Table width (m): 1.2 m up to 5 blocks, else 0.2 m per block + 0.2 m (2.4 m for 11)."""
    return max(1.2, 0.2 * (num_blocks + 1))


def default_ceiling(num_blocks: int) -> float:
    """Ceiling height (m): room to carry a block over a tower of all ``num_blocks``."""
    return 2 * BLOCK_HALF * (num_blocks + 1) + 0.15


def scene_predicates(block_xz: np.ndarray) -> dict[str, np.ndarray]:
    """Lift / above / rest / stack-level predicates of blocks at centres ``block_xz``.

    Args:
        block_xz: (n, 2) block centres (x, z) in metres (table top at z = 0).

    Returns:
        dict with ``lifted`` (n,) bool, ``above`` (n, n) bool (``[i, j]``: i is
        lifted and above j), ``on_top`` (n,) bool (above some block),
        ``rests_on`` (n, n) bool, ``level`` (n,) int (-1 = unsupported) and
        ``stacked_blocks`` (int, highest level or 0). Definitions: module docstring.

    Raises:
        ValueError: ``block_xz`` not of shape (n, 2).
    """
    p = np.asarray(block_xz, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"block_xz must have shape (n, 2), got {p.shape}")
    n = p.shape[0]
    x, z = p[:, 0], p[:, 1]
    lifted = z > BLOCK_HALF + GROUND_TOL
    on_ground = ~lifted
    dx = np.abs(x[:, None] - x[None, :])
    dz = z[:, None] - z[None, :]
    aligned = dx < BLOCK_HALF
    off_diag = ~np.eye(n, dtype=bool)
    above = lifted[:, None] & aligned & (dz > 2 * BLOCK_HALF - STACK_Z_TOL) & off_diag
    rests_on = aligned & (np.abs(dz - 2 * BLOCK_HALF) <= STACK_Z_TOL) & off_diag
    level = np.full(n, -1, dtype=np.int64)
    level[on_ground] = 0
    for i in np.argsort(z, kind="stable"):  # supports are lower, so they are settled first
        if level[i] >= 0:
            continue
        sup = level[rests_on[i]]
        sup = sup[sup >= 0]
        if sup.size:
            level[i] = int(sup.max()) + 1
    return {
        "lifted": lifted,
        "above": above,
        "on_top": above.any(axis=1),
        "rests_on": rests_on,
        "level": level,
        "stacked_blocks": int(max(level.max(initial=0), 0)),
    }


def reward_terms(block_xz: np.ndarray, reward_type: str = "dense") -> dict[str, float | int]:
    """Reward of a scene (appendix C), as a pure function of the block centres.

    Args:
        block_xz: (n, 2) block centres in metres.
        reward_type: ``"dense"`` (lift + on-top + tower terms) or ``"sparse"`` (tower only).

    Returns:
        dict: ``reward`` and its terms ``reward_lift``, ``reward_on_top``,
        ``reward_tower`` (floats), plus ``num_lifted``, ``num_on_top``,
        ``stacked_blocks``, ``tower_height`` (ints; tower_height = blocks in
        the highest tower, 0 without blocks).

    Raises:
        ValueError: unknown ``reward_type`` or badly shaped ``block_xz``.
    """
    if reward_type not in REWARD_TYPES:
        raise ValueError(f"reward_type={reward_type!r}; expected one of {list(REWARD_TYPES)}")
    pr = scene_predicates(block_xz)
    n_lift = int(pr["lifted"].sum())
    n_top = int(pr["on_top"].sum())
    k = pr["stacked_blocks"]
    r_tower = TOWER_REWARD_PER_METRE * k * 2 * BLOCK_HALF
    r_lift = LIFT_REWARD * n_lift if reward_type == "dense" else 0.0
    r_top = ON_TOP_REWARD * n_top if reward_type == "dense" else 0.0
    return {
        "reward": float(r_lift + r_top + r_tower),
        "reward_lift": float(r_lift),
        "reward_on_top": float(r_top),
        "reward_tower": float(r_tower),
        "num_lifted": n_lift,
        "num_on_top": n_top,
        "stacked_blocks": int(k),
        "tower_height": int(pr["level"].max(initial=-1) + 1),
    }


def build_mjcf(num_blocks: int, table_width: float, ceiling: float) -> str:
    """The MJCF model: table, walls + ceiling, planar gripper with two fingers, ``num_blocks`` blocks.

    Joint order in ``qpos``: gripper x, gripper z, left finger, right finger
    (inner half-gap, m), then (x, z, angle) per block. Actuators: position
    servos on gripper x/z, velocity (feed-forward) on gripper x/z, position
    servos on both fingers. An equality constraint couples the fingers
    symmetrically (a parallel gripper), so a grasped block cannot slide
    sideways between them.
    """
    hw = table_width / 2
    xr = hw - TABLE_MARGIN
    zr = ceiling - PALM_Z - PALM_HALF[1] - 0.005
    fr = "1 0.005 0.0001"
    blocks = "".join(
        f"""
    <body name="block{i}">
      <joint name="block{i}_x" type="slide" axis="1 0 0"/>
      <joint name="block{i}_z" type="slide" axis="0 0 1"/>
      <joint name="block{i}_a" type="hinge" axis="0 1 0"/>
      <geom name="block{i}" type="box" size="{BLOCK_HALF} {BLOCK_HALF} {BLOCK_HALF}" mass="{BLOCK_MASS}" friction="{fr}"/>
    </body>"""
        for i in range(num_blocks)
    )
    return f"""<mujoco model="spirl_block_stacking_{num_blocks}">
  <option timestep="{TIMESTEP}" integrator="implicitfast" cone="elliptic" impratio="{IMPRATIO}"/>
  <default><geom solref="{CONTACT_SOLREF}" solimp="{CONTACT_SOLIMP}"/></default>
  <worldbody>
    <geom name="table" type="box" pos="0 0 -0.05" size="{hw} 0.3 0.05" friction="{fr}"/>
    <geom name="wall_left" type="box" pos="{-hw - 0.01} 0 {ceiling / 2}" size="0.01 0.3 {ceiling / 2}"/>
    <geom name="wall_right" type="box" pos="{hw + 0.01} 0 {ceiling / 2}" size="0.01 0.3 {ceiling / 2}"/>
    <geom name="ceiling" type="box" pos="0 0 {ceiling + 0.01}" size="{hw} 0.3 0.01"/>
    <body name="gripper" gravcomp="1">
      <joint name="gripper_x" type="slide" axis="1 0 0" limited="true" range="{-xr} {xr}"/>
      <joint name="gripper_z" type="slide" axis="0 0 1" limited="true" range="{GRIPPER_Z_MIN} {zr}"/>
      <geom name="palm" type="box" pos="0 0 {PALM_Z}" size="{PALM_HALF[0]} 0.02 {PALM_HALF[1]}" mass="1"/>
      <body name="finger_left" pos="{-FINGER_HALF_THICK} 0 0" gravcomp="1">
        <joint name="finger_left" type="slide" axis="-1 0 0" limited="true" damping="{FINGER_DAMPING}" range="0 {MAX_FINGER_HALF_GAP}"/>
        <geom name="finger_left" type="box" pos="0 0 {FINGER_Z}" size="{FINGER_HALF_THICK} 0.02 {FINGER_HALF_LEN}" mass="0.1" friction="1.5 0.005 0.0001"/>
      </body>
      <body name="finger_right" pos="{FINGER_HALF_THICK} 0 0" gravcomp="1">
        <joint name="finger_right" type="slide" axis="1 0 0" limited="true" damping="{FINGER_DAMPING}" range="0 {MAX_FINGER_HALF_GAP}"/>
        <geom name="finger_right" type="box" pos="0 0 {FINGER_Z}" size="{FINGER_HALF_THICK} 0.02 {FINGER_HALF_LEN}" mass="0.1" friction="1.5 0.005 0.0001"/>
      </body>
    </body>{blocks}
  </worldbody>
  <contact><exclude body1="finger_left" body2="finger_right"/></contact>
  <equality><joint joint1="finger_left" joint2="finger_right" polycoef="0 1 0 0 0"/></equality>
  <actuator>
    <position name="servo_x" joint="gripper_x" kp="{KP_GRIPPER}"/>
    <position name="servo_z" joint="gripper_z" kp="{KP_GRIPPER}"/>
    <velocity name="vel_x" joint="gripper_x" kv="{KV_GRIPPER}"/>
    <velocity name="vel_z" joint="gripper_z" kv="{KV_GRIPPER}"/>
    <position name="finger_left" joint="finger_left" kp="{KP_FINGER}" forcelimited="true" forcerange="{-FINGER_FORCE} {FINGER_FORCE}"/>
    <position name="finger_right" joint="finger_right" kp="{KP_FINGER}" forcelimited="true" forcerange="{-FINGER_FORCE} {FINGER_FORCE}"/>
  </actuator>
</mujoco>"""


def sample_random_layout(
    rng: np.random.Generator, num_blocks: int, table_width: float, max_tower: int = 3, min_spacing: float = 0.16,
    stack_prob: float = 0.35,
) -> np.ndarray:
    """Random initial block centres (n, 2) for data collection: scattered or stacked (appendix C).

    Each block in turn goes on top of an existing stack (probability
    ``stack_prob``, if one is lower than ``max_tower``) or onto a new ground
    spot at least ``min_spacing`` (m) from every other spot, with
    ``TABLE_MARGIN + BLOCK_HALF`` clearance to the walls (so the gripper can
    reach every block). Blocks are numbered in placement order.

    Raises:
        ValueError: the table is too narrow for ``num_blocks`` spots.
    """
    lo = -table_width / 2 + TABLE_MARGIN + BLOCK_HALF
    hi = -lo
    if (hi - lo) < (num_blocks - 1) * min_spacing * 0.5:
        raise ValueError(f"table_width={table_width} is too narrow for {num_blocks} blocks")
    spots: list[float] = []
    heights: list[int] = []
    out = np.zeros((num_blocks, 2))
    for i in range(num_blocks):
        open_stacks = [k for k, h in enumerate(heights) if h < max_tower]
        k = None
        if open_stacks and rng.random() < stack_prob:
            k = int(rng.choice(open_stacks))
        else:
            for _ in range(200):
                x = float(rng.uniform(lo, hi))
                if all(abs(x - s) >= min_spacing for s in spots):
                    spots.append(x)
                    heights.append(0)
                    k = len(spots) - 1
                    break
            if k is None:  # no free spot: stack instead
                k = int(rng.choice(open_stacks or list(range(len(spots)))))
        out[i] = (spots[k], BLOCK_HALF + 2 * BLOCK_HALF * heights[k])
        heights[k] += 1
    return out


def row_layout(num_blocks: int, table_width: float) -> np.ndarray:
    """Blocks on the ground in a row, 0.2 m apart, centred (the reference's downstream layout)."""
    xs = (np.arange(num_blocks) - (num_blocks - 1) / 2) * 0.2
    if num_blocks and xs[-1] + BLOCK_HALF > table_width / 2 - TABLE_MARGIN:
        raise ValueError(f"table_width={table_width} is too narrow for a row of {num_blocks} blocks")
    return np.stack([xs, np.full(num_blocks, BLOCK_HALF)], axis=1)


class BlockStackingEnv(gym.Env):
    """Planar MuJoCo block stacking (SPiRL appendix C); see the module docstring for spaces and rewards.

    Args:
        num_blocks: number of blocks (paper: 5 for data collection, 11 downstream).
        initial_layout: ``"row"`` (ground row 0.2 m apart, fixed; downstream) or
            ``"random"`` (scattered / stacked per :func:`sample_random_layout`; data).
        obs_mode: ``"state"`` (flat float32) or ``"image"`` (32x32, two stacked frames).
        reward_type: ``"dense"`` or ``"sparse"`` (tower term only).
        max_episode_steps: truncation in env steps (``None``: never).
        table_width: metres; default :func:`default_table_width`.
        image_size: side of the observation image in pixels.
        view_size: side of the gripper-centred view window in metres.
        render_mode: ``None`` or ``"rgb_array"`` (``render()`` = the whole scene at 250 px per metre).
        max_initial_tower: tallest initial tower of the random layout (blocks).
        randomize_gripper: random initial gripper x / height (default: ``initial_layout == "random"``).
        state_in_info: also report the ``"state"`` observation in ``info["state"]`` ((5 + 4 n,) float32,
            whatever ``obs_mode``): the low-dimensional input of an asymmetric critic (``rl.asymmetric_critic``).

    Raises:
        ValueError: any argument outside the values listed above.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(
        self,
        num_blocks: int = 11,
        initial_layout: str = "row",
        obs_mode: str = "state",
        reward_type: str = "dense",
        max_episode_steps: int | None = 1000,
        table_width: float | None = None,
        image_size: int = 32,
        view_size: float = 0.8,
        render_mode: str | None = None,
        max_initial_tower: int = 3,
        randomize_gripper: bool | None = None,
        state_in_info: bool = False,
    ):
        if not isinstance(num_blocks, (int, np.integer)) or num_blocks < 1:
            raise ValueError(f"num_blocks must be a positive integer, got {num_blocks!r}")
        if initial_layout not in INITIAL_LAYOUTS:
            raise ValueError(f"initial_layout={initial_layout!r}; expected one of {list(INITIAL_LAYOUTS)}")
        if obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode={obs_mode!r}; expected one of {list(OBS_MODES)}")
        if reward_type not in REWARD_TYPES:
            raise ValueError(f"reward_type={reward_type!r}; expected one of {list(REWARD_TYPES)}")
        if max_episode_steps is not None and int(max_episode_steps) <= 0:
            raise ValueError(f"max_episode_steps must be a positive integer or None, got {max_episode_steps!r}")
        if int(image_size) < 4:
            raise ValueError(f"image_size must be an integer >= 4 pixels, got {image_size!r}")
        if not view_size > 0:
            raise ValueError(f"view_size must be positive (metres), got {view_size!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}; expected None or 'rgb_array'")
        if int(max_initial_tower) < 1:
            raise ValueError(f"max_initial_tower must be >= 1 block, got {max_initial_tower!r}")
        self.num_blocks = int(num_blocks)
        self.table_width = float(table_width) if table_width is not None else default_table_width(self.num_blocks)
        if initial_layout == "row":
            row_layout(self.num_blocks, self.table_width)  # raises if the row does not fit
        elif self.table_width - 2 * (TABLE_MARGIN + BLOCK_HALF) <= 0:
            raise ValueError(f"table_width={table_width} is too narrow (needs > {2 * (TABLE_MARGIN + BLOCK_HALF)} m)")
        self.initial_layout = initial_layout
        self.obs_mode = obs_mode
        self.reward_type = reward_type
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.image_size = int(image_size)
        self.view_size = float(view_size)
        self.render_mode = render_mode
        self.max_initial_tower = int(max_initial_tower)
        self.randomize_gripper = (initial_layout == "random") if randomize_gripper is None else bool(randomize_gripper)
        self.ceiling = default_ceiling(self.num_blocks)
        self.state_in_info = bool(state_in_info)

        self.model = mujoco.MjModel.from_xml_string(build_mjcf(self.num_blocks, self.table_width, self.ceiling))
        self.data = mujoco.MjData(self.model)
        self._x_range = tuple(self.model.jnt_range[0])
        self._z_range = tuple(self.model.jnt_range[1])
        self.dt = TIMESTEP * FRAME_SKIP

        self.action_space = spaces.Box(
            low=np.array([-1.0, -1.0, 0.0], np.float32), high=np.array([1.0, 1.0, 1.0], np.float32), dtype=np.float32
        )
        if obs_mode == "state":
            self.observation_space = spaces.Box(-np.inf, np.inf, shape=(5 + 4 * self.num_blocks,), dtype=np.float32)
        else:
            s = self.image_size
            self.observation_space = spaces.Box(0, 255, shape=(6, s, s), dtype=np.uint8)

        # static render geometry: table (drawn down to -1 m) and walls
        hw = self.table_width / 2
        self._static_rects = np.array(
            [
                [0.0, -0.5, hw, 0.5, 0.0],
                [-hw - 0.01, self.ceiling / 2, 0.01, self.ceiling / 2, 0.0],
                [hw + 0.01, self.ceiling / 2, 0.01, self.ceiling / 2, 0.0],
            ]
        )
        n = self.num_blocks
        self._colors = np.array([_TABLE, _WALL, _WALL] + [_BLOCK_EDGE, _BLOCK_FILL] * n + [_PALM, _FINGER, _FINGER],
                                dtype=np.uint8)
        self._target = np.zeros(2)
        self._steps = 0
        self._max_stacked = 0
        self._prev_frame: np.ndarray | None = None

    # ------------------------------------------------------------------ state access
    @property
    def gripper_xz(self) -> np.ndarray:
        """Gripper origin (x, z) in metres (the point midway between the fingers), copy."""
        return self.data.qpos[0:2].copy()

    @property
    def finger_half_gap(self) -> float:
        """Mean inner half-gap of the two fingers (m): ~0.037 on a grasped block, 0.07 open."""
        return float(self.data.qpos[2:4].mean())

    @property
    def block_xz(self) -> np.ndarray:
        """(n, 2) block centres (x, z) in metres, copy."""
        return self.data.qpos[4:].reshape(self.num_blocks, 3)[:, :2].copy()

    @property
    def block_angle(self) -> np.ndarray:
        """(n,) block rotations about +y in radians, copy."""
        return self.data.qpos[4:].reshape(self.num_blocks, 3)[:, 2].copy()

    @property
    def elapsed_steps(self) -> int:
        """Env steps since the last reset."""
        return self._steps

    @property
    def workspace(self) -> dict[str, tuple[float, float]]:
        """Reachable range of the gripper origin: ``{"x": (lo, hi), "z": (lo, hi)}`` in metres."""
        return {"x": self._x_range, "z": self._z_range}

    def set_state(self, gripper_xz, block_xz, block_angle=None, finger_half_gap: float = OPEN_HALF_GAP) -> None:
        """Place gripper and blocks (velocities zero) without simulating; for tests and scripted resets.

        Args:
            gripper_xz: (2,) gripper origin in metres (clipped to the workspace).
            block_xz: (n, 2) block centres in metres.
            block_angle: (n,) rotations in radians (default 0).
            finger_half_gap: inner half-gap of both fingers (m), also the finger targets.

        Raises:
            ValueError: arrays of the wrong shape.
        """
        g = np.asarray(gripper_xz, dtype=np.float64).reshape(-1)
        b = np.asarray(block_xz, dtype=np.float64)
        a = np.zeros(self.num_blocks) if block_angle is None else np.asarray(block_angle, dtype=np.float64).reshape(-1)
        if g.shape != (2,):
            raise ValueError(f"gripper_xz must have shape (2,), got {g.shape}")
        if b.shape != (self.num_blocks, 2):
            raise ValueError(f"block_xz must have shape ({self.num_blocks}, 2), got {b.shape}")
        if a.shape != (self.num_blocks,):
            raise ValueError(f"block_angle must have shape ({self.num_blocks},), got {a.shape}")
        g = np.array([np.clip(g[0], *self._x_range), np.clip(g[1], *self._z_range)])
        d = self.data
        d.qpos[0:2] = g
        d.qpos[2:4] = float(np.clip(finger_half_gap, 0.0, MAX_FINGER_HALF_GAP))
        q = d.qpos[4:].reshape(self.num_blocks, 3)
        q[:, :2] = b
        q[:, 2] = a
        d.qvel[:] = 0.0
        self._target = g.copy()
        d.ctrl[0:2] = g
        d.ctrl[2:4] = 0.0
        d.ctrl[4:6] = d.qpos[2:4]
        mujoco.mj_forward(self.model, d)

    # ------------------------------------------------------------------ observations
    def state_vector(self) -> np.ndarray:
        """The ``"state"`` observation (5 + 4 n,) float32 (layout in the module docstring)."""
        d = self.data
        q = d.qpos[4:].reshape(self.num_blocks, 3)
        blocks = np.concatenate([q[:, :2], np.sin(q[:, 2:3]), np.cos(q[:, 2:3])], axis=1)
        head = np.array([d.qpos[0], d.qpos[1], d.qvel[0], d.qvel[1], d.qpos[2:4].mean()])
        return np.concatenate([head, blocks.reshape(-1)]).astype(np.float32)

    def scene_rects(self) -> tuple[np.ndarray, np.ndarray]:
        """Rectangles ``(cx, cz, hx, hz, angle)`` (K, 5) and colours (K, 3) uint8 of the current scene."""
        d = self.data
        q = d.qpos[4:].reshape(self.num_blocks, 3)
        n = self.num_blocks
        blocks = np.empty((2 * n, 5))
        blocks[0::2, 0:2] = q[:, :2]
        blocks[0::2, 2:4] = BLOCK_HALF
        blocks[1::2, 0:2] = q[:, :2]
        blocks[1::2, 2:4] = BLOCK_HALF - _BLOCK_BORDER
        blocks[0::2, 4] = q[:, 2]
        blocks[1::2, 4] = q[:, 2]
        gx, gz = d.qpos[0], d.qpos[1]
        off = FINGER_HALF_THICK
        gripper = np.array(
            [
                [gx, gz + PALM_Z, PALM_HALF[0], PALM_HALF[1], 0.0],
                [gx - off - d.qpos[2], gz + FINGER_Z, FINGER_HALF_THICK, FINGER_HALF_LEN, 0.0],
                [gx + off + d.qpos[3], gz + FINGER_Z, FINGER_HALF_THICK, FINGER_HALF_LEN, 0.0],
            ]
        )
        return np.concatenate([self._static_rects, blocks, gripper]), self._colors

    def render_frame(self, size: int | None = None) -> np.ndarray:
        """Front view centred on the gripper (window ``view_size`` m, centre 0.15 m below it).

        Returns (size, size, 3) uint8 HWC (default ``image_size``); one frame of the image observation
        (which holds it channel-first, see :func:`stack_frames`).
        """
        s = self.image_size if size is None else int(size)
        rects, colors = self.scene_rects()
        center = (float(self.data.qpos[0]), float(self.data.qpos[1]) - 0.15)
        return rasterise(rects, colors, center, (self.view_size, self.view_size), (s, s), _BACKGROUND, supersample=4)

    def render(self):
        """``render_mode="rgb_array"``: the whole table, walls to ceiling, at 250 px per metre; else None."""
        if self.render_mode != "rgb_array":
            return None
        rects, colors = self.scene_rects()
        ex, ez = self.table_width + 0.1, self.ceiling + 0.15
        size = (int(round(ez * 250)), int(round(ex * 250)))
        return rasterise(rects, colors, (0.0, (self.ceiling + 0.15) / 2 - 0.1), (ex, ez), size, _BACKGROUND, 2)

    def _obs(self) -> np.ndarray:
        if self.obs_mode == "state":
            return self.state_vector()
        frame = self.render_frame()
        obs = stack_frames(self._prev_frame, frame)
        self._prev_frame = frame
        return obs

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reset blocks (``initial_layout``) and gripper (open, above the table); returns (obs, info).

        ``options`` may hold ``block_xz`` (n, 2) and ``gripper_xz`` (2,) to start from a given scene.
        """
        super().reset(seed=seed)
        rng = self.np_random
        opts = options or {}
        mujoco.mj_resetData(self.model, self.data)
        if "block_xz" in opts:
            blocks = np.asarray(opts["block_xz"], dtype=np.float64)
        elif self.initial_layout == "row":
            blocks = row_layout(self.num_blocks, self.table_width)
        else:
            blocks = sample_random_layout(rng, self.num_blocks, self.table_width, self.max_initial_tower)
        if "gripper_xz" in opts:
            g = np.asarray(opts["gripper_xz"], dtype=np.float64)
        elif self.randomize_gripper:
            top = float(blocks[:, 1].max()) + BLOCK_HALF
            zlo = min(top + 0.1, self._z_range[1])
            g = np.array([rng.uniform(*self._x_range), rng.uniform(zlo, max(zlo, min(top + 0.3, self._z_range[1])))])
        else:
            g = np.array([0.0, min(0.35, self._z_range[1])])
        self.set_state(g, blocks)
        self.data.ctrl[4:6] = OPEN_HALF_GAP
        mujoco.mj_step(self.model, self.data, nstep=SETTLE_STEPS)
        self._steps = 0
        self._prev_frame = None
        terms = reward_terms(self.block_xz, self.reward_type)
        self._max_stacked = terms["stacked_blocks"]
        return self._obs(), self._info(terms)

    def _info(self, terms: dict) -> dict[str, Any]:
        info = {k: v for k, v in terms.items() if k != "reward"}
        info["max_stacked_blocks"] = self._max_stacked
        if self.state_in_info:
            info["state"] = self.state_vector()
        return info

    def apply_action(self, action) -> None:
        """Set the actuator controls for ``action`` (clipped) without stepping (see the module docstring)."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (3,):
            raise ValueError(f"action must have shape (3,) = (dx, dz, opening), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action must be finite, got {a}")
        a = np.clip(a, self.action_space.low, self.action_space.high)
        d = self.data
        q = d.qpos[0:2]
        old = self._target.copy()
        tgt = np.clip(old + a[:2] * MAX_DISPLACEMENT, q - TARGET_LEAD, q + TARGET_LEAD)
        tgt[0] = np.clip(tgt[0], *self._x_range)
        tgt[1] = np.clip(tgt[1], *self._z_range)
        self._target = tgt
        d.ctrl[0:2] = tgt
        d.ctrl[2:4] = (tgt - old) / self.dt  # velocity feed-forward of the target's motion
        d.ctrl[4:6] = a[2] * OPEN_HALF_GAP

    def step(self, action):
        """Advance one env step (``FRAME_SKIP`` MuJoCo steps); returns (obs, reward, terminated, truncated, info).

        Raises:
            ValueError: ``action`` not of shape (3,) or not finite.
        """
        self.apply_action(action)
        mujoco.mj_step(self.model, self.data, nstep=FRAME_SKIP)
        self._steps += 1
        terms = reward_terms(self.block_xz, self.reward_type)
        self._max_stacked = max(self._max_stacked, terms["stacked_blocks"])
        truncated = self.max_episode_steps is not None and self._steps >= self.max_episode_steps
        return self._obs(), terms["reward"], False, bool(truncated), self._info(terms)


def make_block_stacking_env(**kwargs) -> BlockStackingEnv:
    """Build a :class:`BlockStackingEnv` (same keyword arguments; defaults = the 11-block downstream task)."""
    return BlockStackingEnv(**kwargs)


def make_data_collection_env(**kwargs) -> BlockStackingEnv:
    """The 5-block data-collection variant (:data:`DATA_COLLECTION_KWARGS`, overridable by ``kwargs``)."""
    return BlockStackingEnv(**{**DATA_COLLECTION_KWARGS, **kwargs})


def register_block_stacking_env() -> None:
    """Register :data:`ENV_ID` with gymnasium (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point=make_block_stacking_env, disable_env_checker=True)


register_block_stacking_env()
