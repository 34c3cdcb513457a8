"""Hand-coded, noisy block-stacking policy for data collection (SPiRL appendix C).

The paper collects its block-stacking data with "a hand-coded data collection
policy [generating] trajectories with up to three consecutive stacking
manipulations", made noisy "by placing pseudo-random subgoals in between and
within stacking sequences" to widen the data's support. This module is such a
policy for :class:`~spirl_ray.envs.block_stacking.BlockStackingEnv`.

An episode (:func:`run_episode`) draws how many stacks to do (1-3, by
``StackingNoise.stacks_probs``) and runs them one after another. One stack
moves a *source* block with nothing on it onto a *target* block with nothing
on it: rise to a height that clears the blocks on the way, move above the
source, descend with the fingers open, close, lift, carry above the target,
lower until the block sits on it, open, rise. Consecutive stacks usually
continue the same tower (the block just placed becomes the next target,
probability ``same_tower_prob``), so towers of 3-4 blocks arise. A failed
grasp (the block did not come up) counts as an attempt; an episode makes at
most ``stacks + 1`` attempts.

Noise: Gaussian noise on every (dx, dz) action; a per-move speed factor;
jittered grasp/place x targets and carry heights; random subgoals (a random
point above the table, with a random finger opening when empty-handed)
before a stack (``subgoal_between_prob``), on the way to the source and while
carrying (``subgoal_within_prob``).

The policy is a generator over the live MuJoCo state (closed loop): it reads
block and gripper positions from the env after every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from spirl_ray.envs.block_stacking import (
    BLOCK_HALF,
    FINGER_HALF_LEN,
    FINGER_Z,
    MAX_DISPLACEMENT,
    BlockStackingEnv,
    reward_terms,
    scene_predicates,
    stack_frames,
)

__all__ = ["StackingNoise", "run_episode", "episode_script", "MAX_STACKS"]

MAX_STACKS = 3  #: appendix C: "up to three consecutive stacking manipulations"
_TIP = FINGER_HALF_LEN - FINGER_Z  #: fingertips are this far below the gripper origin (m)
_CLEAR = 0.03  #: vertical clearance kept above blocks while moving (m)


@dataclass
class StackingNoise:
    """Randomisation of the scripted stacking policy (all per episode / per move).

    Attributes:
        action_noise: std of Gaussian noise added to (dx, dz) (action units; 1 = 3 cm per step).
        opening_noise: std of Gaussian noise on the finger opening (clipped to [0, 1]).
        place_jitter: std (m) of the x offset of grasp and place targets.
        speed_range: range of the per-move speed cap (fraction of the max displacement per step).
        subgoal_between_prob: probability of a random subgoal before each stack.
        subgoal_within_prob: probability of a random via point on the way to the source,
            and again while carrying.
        stacks_probs: probabilities of planning 1, 2, 3 stacks in an episode.
        same_tower_prob: probability that a stack continues the tower of the previous one.
    """

    action_noise: float = 0.1
    opening_noise: float = 0.05
    place_jitter: float = 0.008
    speed_range: tuple[float, float] = (0.5, 1.0)
    subgoal_between_prob: float = 0.5
    subgoal_within_prob: float = 0.3
    stacks_probs: tuple[float, float, float] = (0.1, 0.3, 0.6)
    same_tower_prob: float = 0.7

    def __post_init__(self):
        for name in ("action_noise", "opening_noise", "place_jitter"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        lo, hi = self.speed_range
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"speed_range must satisfy 0 < lo <= hi <= 1, got {self.speed_range}")
        for name in ("subgoal_between_prob", "subgoal_within_prob", "same_tower_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        p = np.asarray(self.stacks_probs, dtype=float)
        if p.shape != (MAX_STACKS,) or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
            raise ValueError(f"stacks_probs must be {MAX_STACKS} non-negative numbers summing to 1, got {self.stacks_probs}")


class _Script:
    """Motion helpers over one env and one episode's RNG; every helper is a generator of actions."""

    def __init__(self, env: BlockStackingEnv, rng: np.random.Generator, noise: StackingNoise):
        self.env = env
        self.rng = rng
        self.noise = noise
        self.xr = env.workspace["x"]
        self.zr = env.workspace["z"]
        self.stats = {"attempts": 0, "successes": 0, "grasp_failures": 0, "subgoals": 0}

    # ------------------------------------------------------------ scene queries
    def clear_blocks(self) -> np.ndarray:
        """Indices of blocks with nothing resting on them and standing (supported) in a tower."""
        pr = scene_predicates(self.env.block_xz)
        covered = pr["rests_on"].any(axis=0)
        return np.flatnonzero(~covered & (pr["level"] >= 0))

    def top_on_path(self, x0: float, x1: float, exclude: int | None = None) -> float:
        """Highest block top (m) within the gripper's reach of the x interval [x0, x1]."""
        b = self.env.block_xz
        lo, hi = min(x0, x1) - 0.16, max(x0, x1) + 0.16
        keep = (b[:, 0] >= lo) & (b[:, 0] <= hi)
        if exclude is not None:
            keep[exclude] = False
        return float(b[keep, 1].max() + BLOCK_HALF) if keep.any() else 0.0

    def clip_xz(self, p) -> np.ndarray:
        return np.array([np.clip(p[0], *self.xr), np.clip(p[1], *self.zr)])

    # ------------------------------------------------------------ primitives
    def _action(self, target, opening: float, speed: float, gain: float = 0.8, noise_scale: float = 1.0
                ) -> np.ndarray:
        err = (np.asarray(target) - self.env.gripper_xz) / MAX_DISPLACEMENT
        d = np.clip(gain * err, -speed, speed)
        if self.noise.action_noise > 0:
            d = d + self.rng.normal(0.0, self.noise.action_noise * noise_scale, size=2)
        op = opening + (self.rng.normal(0.0, self.noise.opening_noise) if self.noise.opening_noise > 0 else 0.0)
        return np.array([*np.clip(d, -1.0, 1.0), np.clip(op, 0.0, 1.0)], dtype=np.float32)

    def speed(self) -> float:
        return float(self.rng.uniform(*self.noise.speed_range))

    def move(self, target, opening: float, speed: float | None = None, tol: float = 0.008, max_steps: int = 60,
             gain: float = 0.8, noise_scale: float = 1.0) -> Iterator[np.ndarray]:
        """Servo the gripper to ``target`` (array or callable -> (2,)) until within ``tol`` (m).

        ``noise_scale`` scales the action noise (fine motions near blocks use 0.3).
        """
        speed = self.speed() if speed is None else speed
        for _ in range(max_steps):
            t = self.clip_xz(target() if callable(target) else target)
            if np.linalg.norm(t - self.env.gripper_xz) < tol:
                return
            yield self._action(t, opening, speed, gain, noise_scale)

    def hold(self, opening: float, steps: int) -> Iterator[np.ndarray]:
        """Stay in place for ``steps`` env steps with the fingers at ``opening`` (fine-motion noise)."""
        g = self.env.gripper_xz
        for _ in range(steps):
            yield self._action(g, opening, 0.3, noise_scale=0.3)

    def travel(self, x: float, z_min: float, opening: float, carrying: int | None = None) -> Iterator[np.ndarray]:
        """Go to above ``x`` at a height >= ``z_min`` that clears the blocks on the way (rise first)."""
        g = self.env.gripper_xz
        hang = (g[1] - self.env.block_xz[carrying, 1] + BLOCK_HALF) if carrying is not None else _TIP
        z = max(z_min, self.top_on_path(g[0], x, exclude=carrying) + hang + _CLEAR)
        z = min(z + float(self.rng.uniform(0.0, 0.06)), self.zr[1])
        if g[1] < z - 0.01:
            yield from self.move((g[0], z), opening, tol=0.015)
        yield from self.move((x, z), opening, tol=0.012)

    def subgoal(self, opening: float | None, carrying: int | None = None) -> Iterator[np.ndarray]:
        """A pseudo-random via point above the table (random opening if ``opening`` is None)."""
        self.stats["subgoals"] += 1
        x = float(self.rng.uniform(*self.xr))
        top = self.top_on_path(x, x, exclude=carrying)
        z = float(self.rng.uniform(min(top + 0.12, self.zr[1]), self.zr[1]))
        op = float(self.rng.uniform(0.3, 1.0)) if opening is None else opening
        yield from self.travel(x, z, op, carrying)

    # ------------------------------------------------------------ one stack
    def stack(self, src: int, dst: int) -> Iterator[np.ndarray]:
        """Move block ``src`` onto block ``dst``; records attempts/successes in ``self.stats``."""
        env, rng, nz = self.env, self.rng, self.noise
        self.stats["attempts"] += 1
        if rng.random() < nz.subgoal_within_prob:
            yield from self.subgoal(1.0)
        dx = float(rng.normal(0.0, nz.place_jitter))
        # above the source, then down around it with open fingers
        yield from self.travel(env.block_xz[src, 0] + dx, 0.0, 1.0)
        z = env.gripper_xz[1]
        yield from self.move(lambda: (env.block_xz[src, 0] + dx, z), 1.0, speed=0.4, tol=0.004, max_steps=15,
                             noise_scale=0.3)  # line up over the block before going down
        yield from self.move(lambda: env.block_xz[src] + (dx, 0.0), 1.0, speed=self.speed() * 0.8, tol=0.006,
                             noise_scale=0.3)
        yield from self.hold(0.0, int(rng.integers(4, 7)))
        # lift straight up
        z0 = env.block_xz[src, 1]
        g = env.gripper_xz
        yield from self.move((g[0], g[1] + 0.1), 0.0, tol=0.02, max_steps=20)
        if env.block_xz[src, 1] < z0 + 0.05:  # the grasp did not hold
            self.stats["grasp_failures"] += 1
            yield from self.hold(1.0, 3)
            return
        if rng.random() < nz.subgoal_within_prob:
            yield from self.subgoal(0.0, carrying=src)
        # carry above the target, lower onto it, let go, rise
        px = float(rng.normal(0.0, nz.place_jitter))
        yield from self.travel(env.block_xz[dst, 0] + px, 0.0, 0.0, carrying=src)

        def place_target():  # the held block 6 mm above the target's top, corrected for where it hangs
            return env.block_xz[dst] + (px, 2 * BLOCK_HALF + 0.006) + (env.gripper_xz - env.block_xz[src])

        yield from self.move(place_target, 0.0, speed=self.speed() * 0.6, tol=0.006, gain=0.6, noise_scale=0.3)
        yield from self.hold(float(rng.uniform(0.8, 1.0)), int(rng.integers(3, 6)))
        g = env.gripper_xz
        yield from self.move((g[0], g[1] + float(rng.uniform(0.06, 0.14))), 1.0, tol=0.02, max_steps=20)
        if scene_predicates(env.block_xz)["rests_on"][src, dst]:
            self.stats["successes"] += 1


def episode_script(env: BlockStackingEnv, rng: np.random.Generator, noise: StackingNoise, script: _Script | None = None
                   ) -> Iterator[np.ndarray]:
    """The episode's action generator (after ``env.reset``): 1-3 stacks with random subgoals.

    Yields (3,) float32 actions; the caller steps ``env`` between yields.
    """
    s = script if script is not None else _Script(env, rng, noise)
    n_stacks = int(rng.choice(np.arange(1, MAX_STACKS + 1), p=np.asarray(noise.stacks_probs)))
    s.stats["planned"] = n_stacks
    prev: int | None = None
    while s.stats["successes"] < n_stacks and s.stats["attempts"] < n_stacks + 1:
        if rng.random() < noise.subgoal_between_prob:
            yield from s.subgoal(None)
        clear = s.clear_blocks()
        if prev is not None and prev in clear and rng.random() < noise.same_tower_prob:
            dst = prev
        else:
            if len(clear) < 2:
                break
            dst = int(rng.choice(clear))
        sources = [int(i) for i in clear if i != dst]
        if not sources:
            break
        src = int(rng.choice(sources))
        before = s.stats["successes"]
        yield from s.stack(src, dst)
        prev = src if s.stats["successes"] > before else None
    if rng.random() < noise.subgoal_between_prob:
        yield from s.subgoal(None)


def run_episode(
    env: BlockStackingEnv,
    seed: int,
    noise: StackingNoise | None = None,
    max_steps: int = 400,
    random_actions: bool = False,
    random_length: tuple[int, int] = (150, 300),
    render_images: bool = False,
) -> dict:
    """Reset ``env`` from ``seed`` and run one scripted (or uniform-random) episode.

    Args:
        env: a state-observation :class:`BlockStackingEnv` (the data variant:
            ``make_data_collection_env()``), ideally with ``max_episode_steps=None``.
        seed: episode seed (the reset and every random choice derive from it).
        noise: policy randomisation (default :class:`StackingNoise`).
        max_steps: cap on the episode length in env steps.
        random_actions: uniform random actions in the action space instead of the
            script (appendix G's low-quality data), for ``random_length`` steps
            (uniform integer range, inclusive-exclusive), capped by ``max_steps``.
        render_images: also record the image observation before every step:
            two stacked 32x32 front views, channel-first, the same bytes an
            ``obs_mode="image"`` env returns (:func:`~spirl_ray.envs.block_stacking.stack_frames`).

    Returns:
        dict with ``observations`` (T, obs_dim) float32 (state before each step),
        ``actions`` (T, 3) float32, ``rewards`` (T,) float32, ``stacked_blocks``
        (T,) int16 (after each step), ``images`` (T, 6, S, S) uint8 when
        ``render_images``, ``stats`` (planned / attempts / successes /
        grasp_failures / subgoals), ``initial_stacked`` / ``final_stacked`` /
        ``max_stacked`` (ints), ``seed``.

    Raises:
        ValueError: ``max_steps`` < 1 or an image-observation env.
    """
    if int(max_steps) < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if env.obs_mode != "state":
        raise ValueError(f"run_episode needs a state-observation env (obs_mode='state'), got {env.obs_mode!r}")
    rng = np.random.default_rng(seed)
    noise = StackingNoise() if noise is None else noise
    obs, info = env.reset(seed=int(rng.integers(2**31)))
    script = _Script(env, rng, noise)
    if random_actions:
        length = int(rng.integers(*random_length))
        low, high = env.action_space.low, env.action_space.high
        gen = (rng.uniform(low, high).astype(np.float32) for _ in range(length))
        script.stats["planned"] = 0
    else:
        gen = episode_script(env, rng, noise, script)
    observations, actions, rewards, stacked, images = [], [], [], [], []
    prev_frame = None
    initial = int(info["stacked_blocks"])
    for t, action in enumerate(gen):
        if t >= max_steps:
            break
        observations.append(obs)
        if render_images:
            frame = env.render_frame()
            images.append(stack_frames(prev_frame, frame))
            prev_frame = frame
        actions.append(np.asarray(action, dtype=np.float32))
        obs, r, _, _, info = env.step(action)
        rewards.append(r)
        stacked.append(info["stacked_blocks"])
    out = {
        "observations": np.asarray(observations, dtype=np.float32).reshape(len(actions), -1),
        "actions": np.asarray(actions, dtype=np.float32).reshape(len(actions), 3),
        "rewards": np.asarray(rewards, dtype=np.float32),
        "stacked_blocks": np.asarray(stacked, dtype=np.int16),
        "stats": dict(script.stats),
        "initial_stacked": initial,
        "final_stacked": int(reward_terms(env.block_xz)["stacked_blocks"]),
        "max_stacked": int(max(stacked, default=initial)),
        "seed": int(seed),
    }
    if render_images:
        s = env.image_size
        out["images"] = np.asarray(images, dtype=np.uint8).reshape(len(actions), 6, s, s)
    return out
