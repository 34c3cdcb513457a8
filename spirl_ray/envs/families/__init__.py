"""Env families: one module per family declares its env, config fields, data collector, metrics and summaries.

The registry is :data:`FAMILIES` (``env.name`` -> the family's class, a
:class:`~spirl_ray.envs.families.base.EnvFamily`). Adding an env family:
write ``spirl_ray/envs/families/<name>.py`` with a subclass of ``EnvFamily``
(see ``base.py`` for what it declares; ``maze.py`` is a compact example),
add it to :data:`_FAMILY_CLASSES` below, and set ``env.name: <name>`` in a
YAML. Any gymnasium env needs no new family: ``env.name: gymnasium``
(:mod:`spirl_ray.envs.families.gymnasium_env`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from spirl_ray.envs.families.base import EnvFamily, EpisodeMetric, load_entry_point
from spirl_ray.envs.families.block_stacking import BlockStackingFamily
from spirl_ray.envs.families.gymnasium_env import GymnasiumFamily
from spirl_ray.envs.families.kitchen import KitchenFamily
from spirl_ray.envs.families.maze import MazeFamily

#: the registry, one line per family (the first is the default ``env.name``)
_FAMILY_CLASSES: tuple[type[EnvFamily], ...] = (KitchenFamily, MazeFamily, BlockStackingFamily, GymnasiumFamily)
#: ``env.name`` -> family class
FAMILIES: dict[str, type[EnvFamily]] = {cls.model_fields["name"].default: cls for cls in _FAMILY_CLASSES}
#: ``env.name`` when the YAML gives none
DEFAULT_FAMILY = "kitchen"


def get_family(name: str) -> type[EnvFamily]:
    """The family class registered as ``name``.

    Raises:
        ValueError: unknown name (the message lists the registered ones).
    """
    if name not in FAMILIES:
        raise ValueError(f"unknown env {name!r}; expected one of {sorted(FAMILIES)}")
    return FAMILIES[name]


def make_env(name: str, env_kwargs: dict[str, Any] | None = None) -> gym.Env:
    """Build the low-level env of family ``name`` from its factory's keyword arguments.

    Raises:
        ValueError: unknown family, or the factory refuses the arguments.
    """
    return load_entry_point(get_family(name).factory)(**(env_kwargs or {}))


def episode_metrics(name: str | None) -> tuple[EpisodeMetric, ...]:
    """The family's episode metrics; for an unknown or missing name every built-in family's (read when present)."""
    if name in FAMILIES:
        return FAMILIES[name].episode_metrics
    seen: dict[str, EpisodeMetric] = {}
    for cls in _FAMILY_CLASSES:
        for m in cls.episode_metrics:
            seen.setdefault(m.info_key, m)
    return tuple(seen.values())


__all__ = ["DEFAULT_FAMILY", "EnvFamily", "EpisodeMetric", "FAMILIES", "episode_metrics", "get_family",
           "load_entry_point", "make_env"]
