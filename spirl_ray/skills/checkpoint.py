"""Saving and loading trained skill models (decoder + prior) as one ``.pt`` file.

The file holds ``{"format", "config", "state_dict", "extra"}``; a SHA-256 of it
is kept beside it (``<file>.sha256``) so a truncated or altered file is
rejected with a clear error instead of a deep torch traceback.

A file can also be sound but made for another setting (other H, |Z|, state or
action dims): ``load_skill_model(path, expect={...})`` and
:func:`check_skill_model_config` compare the stored config with what the
caller's config says and name every field that differs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from pydantic import ValidationError

from spirl_ray.skills.models import SkillModel, SkillModelConfig
from spirl_ray.utils import atomic_path, file_sha256

FORMAT = "spirl_ray.skill_model/v1"


class SkillModelError(ValueError):
    """A skill-model file is missing, truncated, corrupt or of another format; the message names it."""


class SkillModelMismatchError(SkillModelError):
    """A sound skill-model file whose config disagrees with the caller's (H, |Z|, dims, ...).

    ``mismatches`` maps each differing field to ``(value in the file, expected value)``.
    """

    def __init__(self, message: str, mismatches: dict[str, tuple[Any, Any]]):
        super().__init__(message)
        self.mismatches = mismatches


#: How fields are named in mismatch messages (the paper's symbols first).
_FIELD_NAMES = {
    "horizon": "H (horizon)",
    "latent_dim": "|Z| (latent_dim)",
    "obs_dim": "state dim (obs_dim)",
    "action_dim": "action dim (action_dim)",
}


def _as_tuple(v: Any) -> Any:
    """Lists and tuples compare equal (YAML gives lists, the config keeps tuples)."""
    return tuple(v) if isinstance(v, (list, tuple)) else v


def check_skill_model_config(config: SkillModelConfig, expect: Mapping[str, Any], source: str = "skill model") -> None:
    """Raise unless every field named in ``expect`` has that value in ``config``.

    Args:
        config: the config stored with a skill model (``model.config``).
        expect: field name -> required value, e.g. ``{"horizon": 10, "latent_dim": 10}``
            (H in env steps, |Z| latent dims); any :class:`SkillModelConfig` field.
        source: what ``config`` came from, used in the message (e.g. the file path).
    Raises:
        SkillModelMismatchError: one or more fields differ; the message lists
            each as ``H (horizon): file has 5, config expects 10``.
        ValueError: ``expect`` names a field that :class:`SkillModelConfig` does not have.
    """
    unknown = sorted(set(expect) - set(SkillModelConfig.model_fields))
    if unknown:
        raise ValueError(f"expect names unknown skill-model fields {unknown}; valid: {sorted(SkillModelConfig.model_fields)}")
    mismatches = {}
    for key, want in expect.items():
        have = getattr(config, key)
        if _as_tuple(have) != _as_tuple(want):
            mismatches[key] = (have, want)
    if mismatches:
        parts = "; ".join(f"{_FIELD_NAMES.get(k, k)}: file has {h!r}, config expects {w!r}" for k, (h, w) in mismatches.items())
        raise SkillModelMismatchError(
            f"{source} was trained for another setting: {parts}. Train a prior for this config "
            "(or point skill_model_path at one that matches)",
            mismatches,
        )


def save_skill_model(path: str | os.PathLike, model: SkillModel, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` atomically (temp file + rename), then its ``.sha256`` sidecar.

    Args:
        path: destination ``.pt`` file.
        model: the trained model; saved on CPU.
        extra: JSON-like metadata (training metrics, dataset hash, ...).
    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "config": model.config.model_dump(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    sha_path = path.with_name(path.name + ".sha256")
    with atomic_path(sha_path) as tmp:
        tmp.write_text(file_sha256(path) + "\n")
    return path


def verify_skill_model(path: str | os.PathLike) -> bool:
    """True iff ``path`` and its ``.sha256`` sidecar exist and agree."""
    path = Path(path)
    sha_path = path.with_name(path.name + ".sha256")
    if not (path.is_file() and sha_path.is_file()):
        return False
    return sha_path.read_text().strip() == file_sha256(path)


def load_skill_model(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    check_sha: bool = True,
    expect: Mapping[str, Any] | None = None,
) -> SkillModel:
    """Load a model written by :func:`save_skill_model`, in eval mode with gradients off.

    Args:
        path: the ``.pt`` file.
        map_location: device to load onto.
        check_sha: compare with the ``.sha256`` sidecar when it exists.
        expect: optional field -> value the stored config must have, e.g.
            ``{"horizon": 10, "latent_dim": 10, "obs_dim": 30}``; checked
            before any weights are built (see :func:`check_skill_model_config`).
    Raises:
        SkillModelError: file missing; checksum sidecar disagreeing (truncated or
            altered file); not a torch file; another format; config or weights
            not matching the architecture.
        SkillModelMismatchError: the file's config differs from ``expect``
            (the message names each field, e.g. H or |Z|, with both values).
    """
    path = Path(path)
    if not path.is_file():
        raise SkillModelError(f"skill model file {str(path)!r} does not exist")
    sha_path = path.with_name(path.name + ".sha256")
    if check_sha and sha_path.is_file() and sha_path.read_text().strip() != file_sha256(path):
        raise SkillModelError(
            f"skill model file {str(path)!r} does not match its checksum {sha_path.name!r}: "
            "the file is truncated or was modified; delete it to retrain"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise SkillModelError(f"skill model file {str(path)!r} is unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise SkillModelError(f"skill model file {str(path)!r}: expected format {FORMAT!r}, found {got!r}")
    try:
        config = SkillModelConfig(**payload["config"])
    except (ValidationError, TypeError, KeyError) as e:
        raise SkillModelError(f"skill model file {str(path)!r}: invalid key 'config': {e}") from None
    if expect:
        check_skill_model_config(config, expect, source=f"skill model file {str(path)!r}")
    model = SkillModel(config)
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as e:
        raise SkillModelError(f"skill model file {str(path)!r}: weights do not fit its config: {e}") from None
    model.extra = payload.get("extra", {})
    model.eval().requires_grad_(False)
    return model.to(map_location)
