"""One Tune trainable for every arm of a sweep (methods, H/|Z| ablations, data-quality ablations).

Tune grids over the *names* of the arms (``spirl_variant``) and the seeds;
the per-arm differences travel in the param space as a small table of
top-level ``AlgorithmConfig`` keys (``spirl_variant_overrides``), resolved
when the trial builds its algorithm. All arms are
:class:`~spirl_ray.rl.spirl.SPiRL` (baselines are switches of it, see
:mod:`spirl_ray.experiments.methods`), so one trainable class and one Tune
experiment hold them all: trials of different methods run side by side on a
cluster, and ``Tuner.restore`` resumes all of them.
"""

from __future__ import annotations

from typing import Any

from spirl_ray.rl.spirl import SPiRL

#: param-space key naming a trial's arm (also the plot's grouping key in ``params.json``).
VARIANT_KEY = "spirl_variant"
#: param-space key of ``{arm name: {AlgorithmConfig key: value}}``.
OVERRIDES_KEY = "spirl_variant_overrides"


def resolve_variant(config: Any) -> Any:
    """The trial's algorithm config dict: the base keys updated by its arm's overrides.

    Non-dict configs (an ``AlgorithmConfig``) and dicts without ``spirl_variant`` pass through.

    Raises:
        KeyError: ``spirl_variant`` names no arm of ``spirl_variant_overrides``.
    """
    if not isinstance(config, dict) or VARIANT_KEY not in config:
        return config
    config = dict(config)
    name = config.pop(VARIANT_KEY)
    table = config.pop(OVERRIDES_KEY, {}) or {}
    if name not in table:
        raise KeyError(f"sweep arm {name!r} not in {OVERRIDES_KEY} (arms: {sorted(table)})")
    config.update(table[name])
    return config


class SPiRLTrial(SPiRL):
    """``SPiRL`` whose Tune config names a sweep arm (see module docstring)."""

    def __init__(self, config=None, *args, **kwargs):
        super().__init__(resolve_variant(config), *args, **kwargs)

    @classmethod
    def default_resource_request(cls, config):
        return super().default_resource_request(resolve_variant(config))
