"""What an env family declares: its ``env:`` config fields and everything the pipeline needs to know about it.

An env family is one pydantic model, a subclass of :class:`EnvFamily`, in
its own module under ``spirl_ray/envs/families/``. Its fields are the
``env:`` section of an experiment YAML for ``env.name: <its name>`` (with
their validation); its class attributes and methods are the rest:

* :attr:`EnvFamily.factory` — ``"module:function"`` building the low-level
  env from :meth:`EnvFamily.env_kwargs` (imported lazily, in the EnvRunner);
* :attr:`EnvFamily.collector` + :meth:`EnvFamily.collect` — the optional
  data collector that writes a D4RL-layout file when ``data.path`` is unset;
* :attr:`EnvFamily.episode_metrics` — which ``info`` keys of an episode's
  last step become which RLlib result keys (success, subtasks, blocks);
* :meth:`EnvFamily.prior_rollout_summary` — the line printed per sampler by
  the prior-rollout stage;
* :meth:`EnvFamily.check_experiment` / :meth:`EnvFamily.preflight` — checks
  against the rest of the config (at load) and of the env itself (before Ray).

The pipeline, config, callbacks and prior rollouts only call these: none of
them branches on a family's name. Collectors live in the data layer, which
imports the envs; a family therefore names its collector as an entry point
string (as gymnasium names env entry points) and never imports it itself.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict


class EpisodeMetric(NamedTuple):
    """An ``info`` key of an episode's last step, logged as ``env_runners/<result_key>`` (mean over episodes)."""

    info_key: str
    result_key: str


def load_entry_point(entry: str) -> Callable[..., Any]:
    """The object ``"package.module:attribute"`` names (imports the module).

    Raises:
        ValueError: not of the form ``module:attribute``, the module cannot be
            imported, or it has no such attribute (the message says which).
    """
    module, sep, attr = str(entry).partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{entry!r} is not an entry point of the form 'package.module:function'")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"cannot import module {module!r} of {entry!r}: {e}") from None
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {module!r} has no attribute {attr!r} (entry point {entry!r})")
        obj = getattr(obj, part)
    return obj


class EnvFamily(BaseModel):
    """Base of every env family's ``env:`` section (see the module docstring for what a family declares).

    Subclasses declare ``name: Literal["<family>"] = "<family>"`` first and
    ``max_episode_steps`` last (the resolved YAML lists fields in this order).
    """

    model_config = ConfigDict(extra="forbid")

    name: str  #: ``env.name``; each family narrows it to ``Literal["<family>"]`` (the union's tag)

    #: ``"module:function"`` of the env factory, called with :meth:`env_kwargs`.
    factory: ClassVar[str]
    #: ``"module:function"`` of the data collector, or None: ``data.path`` is then required.
    collector: ClassVar[str | None] = None
    #: info keys of an episode's last step -> ``env_runners/...`` result keys (:mod:`spirl_ray.rl.callbacks`).
    episode_metrics: ClassVar[tuple[EpisodeMetric, ...]] = ()
    #: whether :attr:`factory` accepts ``state_in_info=True`` and then reports the low-dimensional simulator
    #: state as ``info["state"]`` ((D,) float32) at reset and every step: the input of an asymmetric critic
    #: (``rl.asymmetric_critic``) when the policy observes images.
    state_in_info: ClassVar[bool] = False

    # ---- the env -------------------------------------------------------------------------
    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :attr:`factory` (JSON-serialisable; they travel to every EnvRunner)."""
        raise NotImplementedError

    @property
    def image_states(self) -> bool:
        """True when the env observes (C, H, W) uint8 images (the data then need key ``images``)."""
        return False

    @property
    def label(self) -> str:
        """Short name for trial names and collected files (default: ``env.name``)."""
        return str(self.name)

    # ---- the data ------------------------------------------------------------------------
    def reader_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments of :func:`~spirl_ray.data.readers.read_dataset` for this env's data."""
        return {"state_layout": None}

    def data_settings(self) -> dict[str, Any]:
        """How this env's data are read, as it enters the prior's cache key (with ``data.*`` settings)."""
        return {"state_layout": None}

    def dataset_variant(self, collect: Any = None) -> str:
        """What distinguishes a collected file of this env beyond episodes and seed (part of its name);
        ``collect``: the ``data.collect`` section."""
        raise NotImplementedError

    def collection_banner(self, collect: Any) -> str:
        """What :meth:`collect` is about to do, e.g. ``"collecting 600 scripted kitchen episodes"``."""
        return f"collecting {collect.episodes} {self.name} episodes"

    def collect(self, collect: Any, path: Path, show_progress: bool = True) -> str:
        """Collect a dataset into ``path`` with :attr:`collector`; returns a one-line summary.

        ``collect``: the ``data.collect`` section (``episodes``, ``seed``,
        ``num_workers``, ...).

        Raises:
            ValueError: the family has no collector (``data.path`` is required).
        """
        raise ValueError(f"env.name {self.name!r} has no data collector: set data.path")

    def missing_images_hint(self) -> str:
        """Appended to a dataset error about a missing ``images`` key (what setting chose images)."""
        return ""

    # ---- checks --------------------------------------------------------------------------
    def check_experiment(self, data: Any, offline_model: str | None) -> None:
        """Checks against the rest of the config, at load (``data``: the ``data`` section;
        ``offline_model``: the method's, None for SAC).

        Raises:
            ValueError: a setting that cannot work with this env (the message names it).
        """
        if data.collect.policy is not None and self.collector is not None:
            raise ValueError(f"data.collect.policy: env.name {self.name!r} collects with its own scripted "
                             "expert; a policy applies to env.name 'gymnasium'")
        if data.collect.subtask_order != "random" and self.name != "kitchen":
            raise ValueError(f"data.collect.subtask_order: {data.collect.subtask_order!r} orders the kitchen's "
                             f"scripted subtasks; env.name {self.name!r} has none (leave it 'random')")
        if data.collect.step_noise_scale != 1.0 and self.name != "block_stacking":
            raise ValueError(f"data.collect.step_noise_scale: {data.collect.step_noise_scale:g} scales the block-stacking "
                             f"script's action noise; env.name {self.name!r} does not read it (leave it 1)")

    def preflight(self, data: Any = None, offline_model: str | None = None) -> None:
        """Checks of the env itself before Ray starts (default: none; built-in envs are known to build).

        ``data``: the ``data`` section; ``offline_model``: the method's (None for SAC).

        Raises:
            ValueError: the env cannot be used (the message says why).
        """

    # ---- results -------------------------------------------------------------------------
    def prior_rollout_summary(self, report: dict[str, Any]) -> str:
        """One line for a sampler's :func:`~spirl_ray.experiments.prior_rollouts.prior_rollouts` result."""
        line = f"mean return {report['mean_return']:.2f}"
        if "success_rate" in report:
            line = f"success rate {report['success_rate']:.2f}, " + line
        return line


class ImageOrVectorFamily(EnvFamily):
    """A family whose ``env.state`` chooses ``image`` or vector (``state``) observations (maze, block stacking).

    Subclasses declare the ``state`` field; the collected file is named by it, and a file
    without ``images`` given to an image env says which setting asked for them.
    """

    def dataset_variant(self, collect: Any = None) -> str:
        return self.state  # type: ignore[attr-defined]

    def missing_images_hint(self) -> str:
        return "env.state 'image' trains on image states (key 'images'), 'state' on 'observations'"
