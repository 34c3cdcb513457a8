"""A tiny scripted policy for FetchReach-v4: move the gripper toward the goal, with noise.

Called by the project's collector (``data.collect.policy:
"examples.fetch_reach.reach_policy:reach"``) once per env step as
``reach(observation, rng)``. ``observation`` is FetchReach's dict:
``achieved_goal`` (3,) the gripper position in metres, ``desired_goal`` (3,)
the target, ``observation`` (10,) the robot state. The action is 4-d in
[-1, 1]: a gripper displacement (x, y, z; 1 = 5 cm per step) and the finger
command, left at 0 (reaching does not use the fingers).
"""

from __future__ import annotations

import numpy as np

GAIN = 10.0  #: action per metre of distance to the goal (saturates beyond 10 cm)
NOISE = 0.3  #: std of the Gaussian noise on the displacement (varied demonstrations)


def reach(observation: dict, rng: np.random.Generator) -> np.ndarray:
    """(4,) float32 action: proportional step toward ``desired_goal`` plus noise; fingers at 0."""
    delta = np.asarray(observation["desired_goal"]) - np.asarray(observation["achieved_goal"])
    action = np.zeros(4, np.float32)
    action[:3] = np.clip(GAIN * delta + NOISE * rng.normal(size=3), -1.0, 1.0)
    return action
