"""Checks of a run's inputs beyond the YAML itself, done before Ray starts and before any stage.

``python -m spirl_ray.run`` calls :func:`preflight` right after the config
loads, so bad input costs seconds, not a data collection or a prior training:

* :func:`check_dataset_fits_env`: the dataset of every sweep arm whose method
  reads one (``data.path``, or a collected file already on disk) fits the
  env's spaces: observation dim after the family's reader settings (kitchen's
  ``env.state_layout``, gymnasium's ``env.obs_keys``), action dim, and
  for image states the ``images`` shape and dtype. Shapes come from the hdf5
  headers (:func:`~spirl_ray.data.readers.read_dataset_spec`); the env is
  built once per distinct env config to read its spaces (< 1 s).
* :func:`check_envs`: each env family's own checks
  (:meth:`~spirl_ray.envs.families.base.EnvFamily.preflight`): ``env.name:
  gymnasium`` builds the env, so an unregistered id or unsupported spaces
  are refused with gymnasium's reason.
* :func:`check_trackers_installed`: a configured experiment tracker's package
  is importable.
* :func:`check_resume`: ``--resume`` continues an existing Tune experiment
  only with the config it was started with (Tune restores the trials' stored
  settings and skill-prior path and would silently ignore a change).

Each raises :class:`~spirl_ray.experiments.config.ConfigError` with one
message naming the file and the fields. The dataset checks depend on the env
only through its Gymnasium spaces (:func:`env_spaces`) and the family's reader
settings, so a new env family needs no code here; its own checks live in its
module.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from spirl_ray.experiments.config import ConfigError, ExperimentConfig

#: The Tune experiment's folder name under ``<root>/tune`` (one per experiment config).
TUNE_EXPERIMENT = "spirl"
#: Resolved config a Tune experiment was started with, beside Tune's own state in its folder.
TUNE_CONFIG_SNAPSHOT = "config.resolved.yaml"
#: Dotted-key prefixes that may change on ``--resume``: they do not reach the resumed trials (the prior
#: rollouts are re-evaluated by their own stage; data-collection workers only change its speed).
RESUME_MAY_CHANGE: tuple[str, ...] = ("prior_rollouts.", "data.collect.num_workers")
#: Dotted keys that locate the experiment (equal by construction when the folder is found).
_LOCATION_KEYS = ("name", "storage_path")


def tune_experiment_dir(cfg: ExperimentConfig) -> Path:
    """``<storage_path>/<name>/tune/spirl``: the run's Tune experiment folder."""
    return cfg.root / "tune" / TUNE_EXPERIMENT


# ---- env spaces -----------------------------------------------------------------------------
@dataclass(frozen=True)
class EnvSpaces:
    """The low-level env's spaces, as the skill prior sees them."""

    obs_shape: tuple[int, ...]  #: observation shape: (D,) vectors, (C, H, W) images
    obs_dtype: str  #: numpy dtype name of observations (``uint8`` for images)
    act_dim: int  #: primitive action dim

    @property
    def image_states(self) -> bool:
        return len(self.obs_shape) == 3


def env_spaces(env_name: str, env_kwargs: dict[str, Any]) -> EnvSpaces:
    """Build the low-level env ``env_name`` with ``env_kwargs`` (no reset), read its spaces, close it.

    Raises:
        ConfigError: the env cannot be built from these settings (names the env and the error).
    """
    from spirl_ray.rl.envs import make_low_level_env

    try:
        env = make_low_level_env(env_name, env_kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"env {env_name!r} cannot be built from the config's env section: {e}") from None
    try:
        obs, act = env.observation_space, env.action_space
        return EnvSpaces(tuple(int(d) for d in obs.shape), str(obs.dtype), int(act.shape[0]))
    finally:
        env.close()


# ---- dataset vs env -------------------------------------------------------------------------
def dataset_mismatches(spec, spaces: EnvSpaces) -> list[str]:
    """What a dataset's shapes (:class:`~spirl_ray.data.readers.DatasetSpec`) get wrong for an env; [] if it fits.

    Image states are compared by the ``images`` key's (C, H, W) and dtype,
    vector states by the observation dim; actions by their dim.
    """
    problems = []
    if spaces.image_states:
        if spec.image_shape is None:
            problems.append("it has no key 'images', but the env observes images "
                            f"{spaces.obs_shape} {spaces.obs_dtype} (env.state: image)")
        else:
            if spec.image_shape != spaces.obs_shape:
                problems.append(f"key 'images' holds {spec.image_shape} images per step, the env observes "
                                f"{spaces.obs_shape} (channels, height, width)")
            if spec.image_dtype != spaces.obs_dtype:
                problems.append(f"key 'images' has dtype {spec.image_dtype}, the env's images are {spaces.obs_dtype}")
    elif (spec.obs_dim,) != spaces.obs_shape:
        problems.append(f"key '{spec.obs_key}' has dim {spec.obs_dim} (after the state layout), the env's "
                        f"observations are {spaces.obs_shape[0] if len(spaces.obs_shape) == 1 else spaces.obs_shape}-d")
    if spec.act_dim != spaces.act_dim:
        problems.append(f"key '{spec.act_key}' has dim {spec.act_dim}, the env's actions are {spaces.act_dim}-d")
    return problems


def check_dataset_fits_env(cfg: ExperimentConfig) -> int:
    """Every arm that trains an offline model gets a dataset that fits its env; returns how many were checked.

    A collected dataset that does not exist yet is skipped (the data stage
    records it in this env). A missing ``data.path`` is an error here (today's
    data stage would refuse it after Ray started).

    Raises:
        ConfigError: ``data.path`` does not exist, the dataset is unreadable
            (the reader's message: file and key), or its shapes do not fit the
            env (every mismatch, with the env settings).
    """
    from spirl_ray.data.readers import DatasetError, read_dataset_spec
    from spirl_ray.experiments.methods import get_method

    variants = cfg.variant_configs()
    spaces_cache: dict[str, EnvSpaces] = {}
    seen = set()
    for arm, vcfg in variants:
        if get_method(vcfg.rl.method).offline_model is None:
            continue
        where = f"sweep arm {arm!r}: " if len(variants) > 1 else ""
        path = vcfg.dataset_path
        given = vcfg.data.path is not None
        if not path.exists():
            if given:
                raise ConfigError(f"{where}data.path {vcfg.data.path!r} does not exist ({path}); expected a D4RL "
                                  "hdf5 file or a Minari dataset (remove the key to collect scripted data)")
            continue
        env_kwargs = json.loads(json.dumps(vcfg.env.env_kwargs()))
        env_key = json.dumps([vcfg.env.name, env_kwargs], sort_keys=True)
        reader_kwargs = vcfg.env.reader_kwargs()
        key = (str(path), vcfg.data.format, json.dumps(reader_kwargs, sort_keys=True), vcfg.env.image_states, env_key)
        if key in seen:
            continue
        seen.add(key)
        label = "data.path" if given else "collected dataset"
        try:
            spec = read_dataset_spec(path, vcfg.data.format, read_images=True if vcfg.env.image_states else None,
                                     **reader_kwargs)
        except DatasetError as e:
            hint = ""
            if vcfg.env.image_states and "missing key 'images'" in str(e) and vcfg.env.missing_images_hint():
                hint = f"; {vcfg.env.missing_images_hint()}"
            raise ConfigError(f"{where}{label}: {e}{hint}") from None
        if env_key not in spaces_cache:
            spaces_cache[env_key] = env_spaces(vcfg.env.name, vcfg.env.env_kwargs())
        problems = dataset_mismatches(spec, spaces_cache[env_key])
        if problems:
            settings = ", ".join(f"{k}={v}" for k, v in env_kwargs.items() if v is not None)
            raise ConfigError(
                f"{where}{label} {spec.file} does not fit env {vcfg.env.name!r} ({settings}): " + "; ".join(problems)
                + ". A model learned from it could not act in this env: use data recorded in this env"
                + (", or remove data.path to collect scripted data" if given else "")
            )
    return len(seen)


# ---- the env family's own checks ------------------------------------------------------------
def check_envs(cfg: ExperimentConfig) -> int:
    """Every arm's env family runs its own pre-Ray checks
    (:meth:`~spirl_ray.envs.families.base.EnvFamily.preflight`; e.g. ``env.name: gymnasium`` builds the env:
    an unregistered id, a non-Box action space or unsupported observations fail here). Returns how many
    distinct envs were checked.

    Raises:
        ConfigError: the family's reason, naming the env.
    """
    from spirl_ray.experiments.methods import get_method

    variants = cfg.variant_configs()
    seen = set()
    for arm, vcfg in variants:
        key = json.dumps([vcfg.model_dump(mode="json")["env"], vcfg.data.model_dump(mode="json"),
                          get_method(vcfg.rl.method).offline_model], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        try:
            vcfg.env.preflight(vcfg.data, get_method(vcfg.rl.method).offline_model)
        except ValueError as e:
            where = f"sweep arm {arm!r}: " if len(variants) > 1 else ""
            raise ConfigError(f"{where}env (env.name {vcfg.env.name!r}): {e}") from None
    return len(seen)


# ---- trackers -------------------------------------------------------------------------------
def check_trackers_installed(cfg: ExperimentConfig) -> None:
    """Configured experiment trackers can be imported (otherwise the RL stage would fail after the prior).

    Raises:
        ConfigError: ``tracking.mlflow_tracking_uri`` without mlflow, ``tracking.wandb_project`` without wandb.
    """
    for field, package in (("mlflow_tracking_uri", "mlflow"), ("wandb_project", "wandb")):
        if getattr(cfg.tracking, field) and importlib.util.find_spec(package) is None:
            raise ConfigError(f"tracking.{field} is set but {package} is not installed (pip install {package})")


# ---- --resume -------------------------------------------------------------------------------
def flatten_config(d: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Leaves of nested dicts as ``(dotted key, value)``; an empty dict has no leaves."""
    for k, v in d.items():
        key = f"{prefix}{k}"
        if not prefix and k == "variants" and isinstance(v, list):  # arms by name: variants.<arm>.<dotted key>
            v = {str(x.get("name")): x.get("set") or {} for x in v if isinstance(x, dict)}
        if isinstance(v, dict):
            yield from flatten_config(v, key + ".")
        else:
            yield key, v


def _resolved_dump(cfg: ExperimentConfig) -> dict[str, Any]:
    """``cfg`` as JSON types, ``skill_model`` with its defaults filled in (unset H = the default H)."""
    from spirl_ray.skills.models import SkillModelConfig

    out = cfg.model_dump(mode="json")
    model = SkillModelConfig(obs_dim=1, action_dim=1, **cfg.skill_model).model_dump(mode="json")
    out["skill_model"] = {k: v for k, v in model.items() if k not in ("obs_dim", "action_dim", "image_shape")}
    return out


def config_differences(old: dict[str, Any], new: ExperimentConfig) -> list[tuple[str, Any, Any]]:
    """``[(dotted key, old value, new value)]`` that differ; a side that lacks the key shows ``"<unset>"``.

    ``old`` is a resolved config as written to ``config.resolved.yaml``; it
    is validated first, so keys added to the config since then take their
    defaults instead of showing as differences (an old file that no longer
    validates is compared as written). ``skill_model`` is compared with its
    defaults filled in: ``horizon`` unset and ``horizon: 10`` are the same.
    """
    try:
        old = _resolved_dump(ExperimentConfig(**old))
    except Exception:  # noqa: BLE001 - an outdated file is still compared, key by key
        pass
    a, b = dict(flatten_config(old)), dict(flatten_config(_resolved_dump(new)))
    out = []
    for key in list(a) + [k for k in b if k not in a]:
        va, vb = a.get(key, "<unset>"), b.get(key, "<unset>")
        if va != vb:
            out.append((key, va, vb))
    return out


def check_resume(cfg: ExperimentConfig) -> Path | None:
    """``--resume`` continues the Tune experiment only with the config it was started with.

    Tune restores a trial with its stored config (skill-prior path, H, |Z|,
    method, budget, ...), so after a config change a resume would silently
    continue the old experiment while the offline stages retrain for the new
    config. The reference is the snapshot the RL stage writes into the Tune
    folder (:data:`TUNE_CONFIG_SNAPSHOT`), else ``<root>/config.resolved.yaml``
    (experiments started before the snapshot existed). Fields under
    :data:`RESUME_MAY_CHANGE` may differ. Returns the reference file, or None
    when there is no restorable Tune experiment (the run then starts it).

    Raises:
        ConfigError: fields differ (each listed as ``key: old -> new``), or the reference is unreadable.
    """
    from ray.tune import Tuner

    exp_dir = tune_experiment_dir(cfg)
    if not Tuner.can_restore(str(exp_dir)):
        return None
    ref = next((p for p in (exp_dir / TUNE_CONFIG_SNAPSHOT, cfg.root / "config.resolved.yaml") if p.is_file()), None)
    if ref is None:
        return None
    try:
        old = yaml.safe_load(ref.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"--resume: cannot read {ref} to compare configs ({e})") from None
    if not isinstance(old, dict):
        raise ConfigError(f"--resume: {ref} holds no config mapping; cannot compare configs")
    diffs = [(k, a, b) for k, a, b in config_differences(old, cfg)
             if k not in _LOCATION_KEYS and not any(k.startswith(p) for p in RESUME_MAY_CHANGE)]
    if diffs:
        lines = "\n".join(f"  {k}: {json.dumps(a)} -> {json.dumps(b)}" for k, a, b in diffs)
        raise ConfigError(
            f"--resume: the config differs from the one the Tune experiment in {exp_dir} was started with "
            f"({ref}); resumed trials keep their stored settings and skill prior, so these changes would be "
            f"ignored:\n{lines}\nUndo them to resume, or run them as a new experiment (e.g. --set name=<new name>)"
        )
    return ref


def preflight(cfg: ExperimentConfig, resume: bool = False) -> None:
    """All checks above, in order of cost; run before Ray starts and before any stage.

    Raises:
        ConfigError: the first problem found (one message naming file and fields).
    """
    check_trackers_installed(cfg)
    if resume:
        check_resume(cfg)
    check_envs(cfg)
    check_dataset_fits_env(cfg)


__all__ = [
    "EnvSpaces",
    "RESUME_MAY_CHANGE",
    "TUNE_CONFIG_SNAPSHOT",
    "TUNE_EXPERIMENT",
    "check_dataset_fits_env",
    "check_envs",
    "check_resume",
    "check_trackers_installed",
    "config_differences",
    "dataset_mismatches",
    "env_spaces",
    "preflight",
    "tune_experiment_dir",
]
