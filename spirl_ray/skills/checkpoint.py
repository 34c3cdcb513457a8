"""Saving and loading trained skill models (decoder + prior) as one ``.pt`` file.

The file holds ``{"format", "config", "state_dict", "extra"}``; a SHA-256 of it
is kept beside it (``<file>.sha256``) so a truncated or altered file is
rejected with a clear error instead of a deep torch traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from spirl_ray.skills.models import SkillModel, SkillModelConfig
from spirl_ray.utils import atomic_path, file_sha256

FORMAT = "spirl_ray.skill_model/v1"


class SkillModelError(ValueError):
    """A skill-model file is missing, truncated, corrupt or of another format; the message names it."""


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


def load_skill_model(path: str | os.PathLike, map_location: str | torch.device = "cpu", check_sha: bool = True) -> SkillModel:
    """Load a model written by :func:`save_skill_model`, in eval mode with gradients off.

    Raises:
        SkillModelError: file missing; checksum sidecar disagreeing (truncated or
            altered file); not a torch file; another format; config or weights
            not matching the architecture.
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
    model = SkillModel(config)
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as e:
        raise SkillModelError(f"skill model file {str(path)!r}: weights do not fit its config: {e}") from None
    model.extra = payload.get("extra", {})
    model.eval().requires_grad_(False)
    return model.to(map_location)
