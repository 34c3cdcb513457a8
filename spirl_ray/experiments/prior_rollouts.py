"""'Prior rollouts': judge a skill prior without RL (reference-facts §6.7).

Skills are drawn from the learned prior p(z|s) alone — no policy, no reward —
and executed with the decoder; the same is done with the prior's mean skill
and with u ~ N(0, I) (what a skill-space agent without a prior explores with).
Every sample u is executed through the RL policy's own squash
z = 2·tanh(u / s) (:func:`squash_skill`, s = ``rl.squash_scale``, 2 for a skill
prior), so "prior rollouts" measure what the prior-initialised policy does
before its first update. A useful prior completes
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


SAMPLERS = ("prior", "prior_mean", "normal")


def squash_skill(u: torch.Tensor, z_bound: float = 2.0, squash_scale: float = 2.0) -> torch.Tensor:
    """The skill the RL policy executes for a pre-squash sample u: z = z_bound·tanh(u / squash_scale).

    Shapes: u (..., Z) -> z (..., Z) in (-z_bound, z_bound). The same map as
    :class:`~spirl_ray.rl.spirl.rl_module.SPiRLTorchRLModule` (dist inputs
    [μ/s, log σ − log s], RLlib's tanh squash, rescaled to Box(-2, 2)).
    """
    return z_bound * torch.tanh(u / squash_scale)


@torch.inference_mode()
def prior_rollouts(
    skill_model: SkillModel,
    env_name: str,
    env_kwargs: dict[str, Any],
    sampler: Literal["prior", "prior_mean", "normal"],
    episodes: int,
    seed: int = 0,
    z_bound: float = 2.0,
    squash_scale: float = 2.0,
) -> dict[str, Any]:
    """Run ``episodes`` episodes with skills from ``sampler``; returns per-episode and mean stats.

    ``prior``: u ~ p(z | s) of ``skill_model``; ``prior_mean``: u = the prior's
    mean at s (what a deterministic evaluation of the prior-initialised policy
    executes); ``normal``: u ~ N(0, I). Each u is executed as
    z = z_bound·tanh(u / squash_scale) (:func:`squash_skill`), the RL policy's map.

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
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
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
            if sampler in ("prior", "prior_mean"):
                d = skill_model.prior.dist(torch.as_tensor(np.asarray(obs), dtype=torch.float32)[None])
                u = d.loc if sampler == "prior_mean" else d.loc + d.scale * torch.randn(d.loc.shape, generator=rng)
            else:
                u = torch.randn((1, latent), generator=rng)
            z = squash_skill(u, z_bound, squash_scale)[0].numpy()
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
        "squash": f"z = {z_bound:g}*tanh(u/{squash_scale:g})",
        "episodes": episodes,
        "returns": returns,
        "subtasks": subtasks,
        "mean_return": float(np.mean(returns)) if returns else float("nan"),
        "mean_subtasks": float(np.mean(subtasks)) if subtasks else float("nan"),
        "mean_any_subtasks": float(np.mean(any_subtasks)) if any_subtasks else float("nan"),
        "env_steps": env_steps,
        **extra,
    }
