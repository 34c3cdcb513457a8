"""'Prior rollouts': judge a skill prior without RL (reference-facts §6.7).

Skills are drawn from the learned prior p(z|s) alone — no policy, no reward —
and executed with the decoder; the same is done with z ~ N(0, I) (what a
skill-space agent without a prior explores with). A useful prior completes
more subtasks (kitchen), reaches the goal more often and visits more of the
maze (maze), or stacks more blocks (block stacking) than N(0, I).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from spirl_ray.envs.maze_layout import cell_coverage
from spirl_ray.rl.skill_env import SkillEnv
from spirl_ray.rl.envs import make_low_level_env
from spirl_ray.skills.models import SkillModel


@torch.inference_mode()
def prior_rollouts(
    skill_model: SkillModel,
    env_name: str,
    env_kwargs: dict[str, Any],
    sampler: Literal["prior", "normal"],
    episodes: int,
    seed: int = 0,
    z_bound: float = 2.0,
) -> dict[str, Any]:
    """Run ``episodes`` episodes with skills from ``sampler``; returns per-episode and mean stats.

    ``prior``: z ~ p(z | s) of ``skill_model``; ``normal``: z ~ N(0, I). Samples
    are clipped to [-z_bound, z_bound], the skill env's action space.

    Returns:
        dict with ``sampler``, ``returns`` (list, summed env reward per episode),
        ``subtasks`` (list, ``info["num_subtasks_completed"]`` at episode end,
        0 when the env does not report it; env's scoring), ``mean_return``,
        ``mean_subtasks``, ``mean_any_subtasks`` (all 7 kitchen subtasks, any order),
        ``env_steps`` (total low-level steps). When the env reports
        ``info["success"]``: ``success`` (list of bools, last step's value) and
        ``success_rate``. When it reports positions (maze, ``info["xy"]``):
        ``coverage`` (list, fraction of the maze's free cells visited per
        episode) and ``mean_coverage``. When it reports
        ``info["stacked_blocks"]`` (block stacking): ``stacked_blocks`` (list,
        the last step's value: the paper's "# blocks stacked"),
        ``max_stacked_blocks`` (list, the episode's highest tower) and their
        means ``mean_stacked_blocks``, ``mean_max_stacked_blocks``.

    Raises:
        ValueError: unknown ``sampler``.
    """
    if sampler not in ("prior", "normal"):
        raise ValueError(f"sampler must be 'prior' or 'normal', got {sampler!r}")
    env = SkillEnv(make_low_level_env(env_name, env_kwargs), skill_model, z_bound=z_bound)
    rng = torch.Generator().manual_seed(seed)
    latent = skill_model.config.latent_dim
    returns, subtasks, any_subtasks, env_steps = [], [], [], 0
    success: list[bool] = []
    coverage: list[float] = []
    stacked: list[int] = []
    max_stacked: list[int] = []
    for ep in range(episodes):
        obs, info = env.reset(seed=seed + ep)
        done, ep_ret = False, 0.0
        xy = [np.asarray(info["xy"], np.float64).reshape(1, 2)] if "xy" in info else None
        while not done:
            if sampler == "prior":
                d = skill_model.prior.dist(torch.as_tensor(np.asarray(obs), dtype=torch.float32)[None])
                z = d.loc + d.scale * torch.randn(d.loc.shape, generator=rng)
            elif sampler == "normal":
                z = torch.randn((1, latent), generator=rng)
            z = z.clamp(-z_bound, z_bound)[0].numpy()
            obs, r, term, trunc, info = env.step(z)
            ep_ret += r
            env_steps += info["env_steps"]
            done = term or trunc
            if xy is not None and "xy_trace" in info:
                xy.append(np.asarray(info["xy_trace"], np.float64))
        if "success" in info:
            success.append(bool(info["success"]))
        if "stacked_blocks" in info:
            stacked.append(int(info["stacked_blocks"]))
            max_stacked.append(int(info.get("max_stacked_blocks", info["stacked_blocks"])))
        if xy is not None:
            coverage.append(cell_coverage(env.unwrapped.layout, np.concatenate(xy)))
        returns.append(ep_ret)
        subtasks.append(int(info.get("num_subtasks_completed", 0)))
        any_subtasks.append(int(sum(info.get("subtasks", {}).values())))
    env.close()
    extra: dict[str, Any] = {}
    if success:
        extra.update(success=success, success_rate=float(np.mean(success)))
    if coverage:
        extra.update(coverage=coverage, mean_coverage=float(np.mean(coverage)))
    if stacked:
        extra.update(stacked_blocks=stacked, max_stacked_blocks=max_stacked,
                     mean_stacked_blocks=float(np.mean(stacked)), mean_max_stacked_blocks=float(np.mean(max_stacked)))
    return {
        "sampler": sampler,
        "episodes": episodes,
        "returns": returns,
        "subtasks": subtasks,
        "mean_return": float(np.mean(returns)) if returns else float("nan"),
        "mean_subtasks": float(np.mean(subtasks)) if subtasks else float("nan"),
        "mean_any_subtasks": float(np.mean(any_subtasks)) if any_subtasks else float("nan"),
        "env_steps": env_steps,
        **extra,
    }
