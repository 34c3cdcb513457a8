"""End-effector controller for the Franka arm of FrankaKitchen-v1.

The kitchen action is a 9-d joint *velocity* command in [-1, 1] (x 2 rad/s;
7 arm joints + 2 fingers) that the environment integrates over one step
(dt = 0.08 s) into targets for position servos *without* gravity
compensation. The controller therefore

1. maps a Cartesian twist (proportional to the position and orientation error
   of the ``end_effector`` site, speed-capped) to joint velocities with
   damped-least-squares inverse kinematics on ``mj_jacSite`` (7 arm columns),
2. adds a weak null-space pull toward the reset posture,
3. locks any joint within ``limit_margin`` of its range that the solution
   would push further out (its Jacobian column is removed and the IK solved
   again),
4. adds a gravity feed-forward ``qfrc_bias / actuator_gain / dt`` so that the
   servo target sits above the joint by the static sag,
5. scales to the action range (/ 2 rad/s) and clips to [-1, 1].

Rotations are 3x3 matrices whose columns are the site's axes in the world
frame. For the Franka hand the site's z axis is the pointing direction of the
fingers and its y axis the direction along which the fingers close.
"""

from __future__ import annotations

import mujoco
import numpy as np

#: FrankaKitchen-v1 reset posture of the 7 arm joints
HOME_QPOS = np.array([0.148388, -1.768486, 1.843903, -2.476858, 0.260252, 0.712533, 1.595154])
ACTION_SCALE = 2.0  # rad/s per unit of action (the env's act_rng)
N_ARM = 7


def rot_error(r_des: np.ndarray, r_cur: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle, world frame) taking ``r_cur`` to ``r_des``."""
    r = r_des @ r_cur.T
    cos = np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)
    angle = float(np.arccos(cos))
    v = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    s = np.linalg.norm(v)
    if angle < 1e-6:
        return 0.5 * v
    if s < 1e-6:  # angle ~ pi: axis from the symmetric part
        axis = np.sqrt(np.clip((np.diag(r) + 1.0) / 2.0, 0.0, None))
        return axis * angle
    return v / s * angle


def rot_about(axis, angle: float) -> np.ndarray:
    """Rotation matrix about a world ``axis`` by ``angle`` (rad)."""
    axis = np.asarray(axis, dtype=float)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def frame(pointing, closing) -> np.ndarray:
    """Site rotation with fingers pointing along ``pointing`` and closing along ``closing``."""
    z = np.asarray(pointing, dtype=float)
    z = z / np.linalg.norm(z)
    y = np.asarray(closing, dtype=float)
    y = y - z * (y @ z)
    y = y / np.linalg.norm(y)
    x = np.cross(y, z)
    return np.stack([x, y, z], axis=1)


class EEController:
    """Damped-least-squares end-effector controller producing kitchen actions."""

    def __init__(
        self,
        model: mujoco.MjModel,
        data: mujoco.MjData,
        dt: float = 0.08,
        site: str = "end_effector",
        damping: float = 1e-3,
        pos_gain: float = 5.0,
        rot_gain: float = 4.0,
        null_gain: float = 0.5,
        limit_margin: float = 0.05,
        home_qpos: np.ndarray = HOME_QPOS,
    ):
        self.model = model
        self.data = data
        self.dt = float(dt)
        self.site_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site)
        if self.site_id < 0:
            raise ValueError(f"site {site!r} not in the model")
        self.damping = float(damping)
        self.pos_gain = float(pos_gain)
        self.rot_gain = float(rot_gain)
        self.null_gain = float(null_gain)
        self.limit_margin = float(limit_margin)
        self.home_qpos = np.asarray(home_qpos, dtype=float).copy()
        self.gain = model.actuator_gainprm[:N_ARM, 0].copy()
        # The servo target is q + v dt, held for the whole step while the joint
        # moves toward it against viscous damping d. In steady state the joint
        # velocity is v * k / (1 + k / 2), k = gain * dt / d (about 0.52 on the
        # big joints, 0.65 on the wrist): scale the command up so the joints
        # move as asked (then the big joints top out at ~1 rad/s).
        k = self.gain * self.dt / np.maximum(model.dof_damping[:N_ARM], 1e-9)
        self.damping_comp = np.maximum(1.0, (1.0 + k / 2.0) / k)
        self.qlo = model.jnt_range[:N_ARM, 0].copy()
        self.qhi = model.jnt_range[:N_ARM, 1].copy()
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    # ---------------------------------------------------------------- state
    @property
    def ee_pos(self) -> np.ndarray:
        return self.data.site_xpos[self.site_id].copy()

    @property
    def ee_rot(self) -> np.ndarray:
        return self.data.site_xmat[self.site_id].reshape(3, 3).copy()

    @property
    def q(self) -> np.ndarray:
        return self.data.qpos[:N_ARM].copy()

    def gravity_feedforward(self) -> np.ndarray:
        """Joint-velocity offset (rad/s) that pre-loads the position servos against gravity."""
        return self.data.qfrc_bias[:N_ARM] / self.gain / self.dt

    # ---------------------------------------------------------------- IK
    def _solve(self, jac: np.ndarray, twist: np.ndarray, free: np.ndarray) -> np.ndarray:
        j = jac[:, free]
        jjt = j @ j.T + self.damping * np.eye(j.shape[0])
        pinv = j.T @ np.linalg.solve(jjt, np.eye(j.shape[0]))
        dq = np.zeros(N_ARM)
        dq[free] = pinv @ twist
        q = self.data.qpos[:N_ARM]
        null = self.null_gain * (self.home_qpos - q)
        proj = np.eye(int(free.sum())) - pinv @ j
        dq[free] += proj @ null[free]
        return dq

    def joint_velocity(self, twist: np.ndarray, rot_weight: float = 1.0) -> np.ndarray:
        """Arm joint velocities (rad/s) for a world twist (v, w) of the site."""
        mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site_id)
        jac = np.vstack([self._jacp[:, :N_ARM], rot_weight * self._jacr[:, :N_ARM]])
        tw = np.concatenate([twist[:3], rot_weight * twist[3:]])
        q = self.data.qpos[:N_ARM]
        free = np.ones(N_ARM, dtype=bool)
        for _ in range(3):
            dq = self._solve(jac, tw, free)
            near_lo = (q - self.qlo < self.limit_margin) & (dq < 0)
            near_hi = (self.qhi - q < self.limit_margin) & (dq > 0)
            lock = (near_lo | near_hi) & free
            if not lock.any():
                break
            free &= ~lock
            if not free.any():
                return np.zeros(N_ARM)
        return dq

    def action(
        self,
        target_pos,
        target_rot=None,
        gripper: float = 1.0,
        max_speed: float = 0.5,
        max_ang_speed: float = 2.0,
        pos_gain: float | None = None,
        rot_gain: float | None = None,
    ) -> np.ndarray:
        """9-d action moving the site toward ``target_pos``/``target_rot``.

        ``gripper`` is the finger command in [-1, 1] (-1 closes, +1 opens).
        Speeds are caps in m/s and rad/s on the commanded twist.
        """
        kp = self.pos_gain if pos_gain is None else pos_gain
        kr = self.rot_gain if rot_gain is None else rot_gain
        v = kp * (np.asarray(target_pos, dtype=float) - self.data.site_xpos[self.site_id])
        n = np.linalg.norm(v)
        if n > max_speed:
            v *= max_speed / n
        if target_rot is None:
            w = np.zeros(3)
            rot_weight = 0.0
        else:
            w = kr * rot_error(np.asarray(target_rot), self.data.site_xmat[self.site_id].reshape(3, 3))
            n = np.linalg.norm(w)
            if n > max_ang_speed:
                w *= max_ang_speed / n
            rot_weight = 1.0
        if rot_weight == 0.0:
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site_id)
            dq = self._position_only(v)
        else:
            dq = self.joint_velocity(np.concatenate([v, w]))
        return self._to_action(dq, gripper)

    def _position_only(self, v: np.ndarray) -> np.ndarray:
        jac = self._jacp[:, :N_ARM]
        free = np.ones(N_ARM, dtype=bool)
        q = self.data.qpos[:N_ARM]
        for _ in range(3):
            dq = self._solve(jac, v, free)
            lock = (((q - self.qlo < self.limit_margin) & (dq < 0)) | ((self.qhi - q < self.limit_margin) & (dq > 0))) & free
            if not lock.any():
                break
            free &= ~lock
        return dq

    def joint_action(self, q_target, gripper: float = 1.0, gain: float = 5.0, max_speed: float = 1.5) -> np.ndarray:
        """9-d action moving the arm joints toward ``q_target`` (joint-space P control)."""
        dq = gain * (np.asarray(q_target, dtype=float) - self.data.qpos[:N_ARM])
        m = np.max(np.abs(dq))
        if m > max_speed:
            dq *= max_speed / m
        return self._to_action(dq, gripper)

    def _to_action(self, dq: np.ndarray, gripper: float) -> np.ndarray:
        ff = self.gravity_feedforward()
        vel = self.damping_comp * dq
        # scale the whole motion (not joint by joint) to stay inside the action range
        room = np.maximum(ACTION_SCALE - np.abs(ff), 1e-3)
        over = np.max(np.abs(vel) / room)
        if over > 1.0:
            vel = vel / over
        cmd = vel + ff
        act = np.empty(9)
        act[:N_ARM] = cmd / ACTION_SCALE
        act[7:] = gripper
        return np.clip(act, -1.0, 1.0)
