"""Offline training of the skill model + skill prior (paper §3.2, eq. 4, appendix B.1).

Usage::

    dataset = make_sequence_dataset("kitchen.hdf5", horizon=10, state_layout="d4rl30")
    result = train_skill_prior(dataset, SkillModelConfig(obs_dim=30, action_dim=9),
                               PriorTrainingConfig(num_steps=20_000), out_dir="runs/prior")

``cached_skill_prior`` wraps this with a cache keyed by a content hash of the
dataset file and both configs, so re-running a pipeline skips training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_serializer
from tqdm.auto import tqdm

from spirl_ray.data.sequence_dataset import SequenceDataset, to_torch
from spirl_ray.skills.checkpoint import load_skill_model, save_skill_model, verify_skill_model
from spirl_ray.skills.models import SkillModel, SkillModelConfig
from spirl_ray.data.content_hash import dataset_content_sha256
from spirl_ray.utils import atomic_path, default_device

log = logging.getLogger(__name__)


class PriorTrainingConfig(BaseModel):
    """Optimisation settings of the skill-model training (appendix B.1, reference configs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_steps: PositiveInt = Field(20_000, description="gradient steps")
    batch_size: PositiveInt = Field(128, description="crops per step (reference code: 128; paper text: 16)")
    lr: float = Field(1e-3, gt=0, description="RAdam learning rate")
    betas: tuple[float, float] = Field((0.9, 0.999), description="RAdam betas")
    early_clip_steps: int = Field(100, ge=0, description="steps with gradient-norm clipping (stabilises early training)")
    early_clip_norm: float = Field(1e-3, gt=0, description="gradient-norm bound during the first early_clip_steps")
    val_every: PositiveInt = Field(1000, description="validate every N steps (and at the end)")
    val_batches: PositiveInt = Field(20, description="max validation batches per evaluation")
    bn_recalibration_batches: int = Field(
        0, ge=0,
        description="after the last step, recompute every BatchNorm layer's running statistics as the exact average "
        "over this many training batches (torch.optim.swa_utils.update_bn; 'precise BN'). The prior and decoder run "
        "in eval mode during RL, i.e. on those statistics; with the default momentum running average, the image "
        "prior's eval-mode KL to the posterior was up to 1.7x its train-mode KL "
        "(results/block_stacking/diagnosis, section 6). 0 = off (the priors cached before this option)",
    )
    seed: int = Field(0, description="torch / sampling seed")
    device: str = Field("auto", description="'auto' (CUDA if present), 'cpu' or 'cuda[:i]'")
    num_threads: int = Field(
        1, ge=0,
        description="torch intra-op threads; 0 keeps torch's default. 1 by default: with 2 threads on 2 busy "
        "cores training fell from ~4,500 to 55-160 samples/s (benchmarks/)",
    )

    @model_serializer(mode="wrap")
    def _serialise(self, handler):
        """``bn_recalibration_batches`` only when set: the resolved configs written before it existed stay as they were."""
        data = handler(self)
        if data.get("bn_recalibration_batches") == 0:
            data.pop("bn_recalibration_batches", None)
        return data


@dataclass
class PriorTrainingResult:
    """Where the trained model is and what it reached."""

    path: Path
    metrics: dict[str, float]
    cached: bool = False


def _device(name: str) -> torch.device:
    return default_device() if name == "auto" else torch.device(name)


@torch.no_grad()
def evaluate(model: SkillModel, dataset: SequenceDataset, batch_size: int, max_batches: int, device: torch.device) -> dict[str, float]:
    """Mean loss terms over a fixed set of validation crops (model in eval mode, posterior mean for z)."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    for i, batch in enumerate(dataset.iterate_val(batch_size)):
        if i >= max_batches:
            break
        t = to_torch(batch, device)
        out = model.loss(t["states"], t["actions"])
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        n += 1
    model.train(was_training)
    return {k: v / max(n, 1) for k, v in sums.items()}


class _LossForward(nn.Module):
    """``model.loss`` as a forward over a batch dict, the call :func:`torch.optim.swa_utils.update_bn` makes."""

    def __init__(self, model: SkillModel):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.model.loss(batch["states"], batch["actions"])


def recalibrate_batch_norm(model: SkillModel, dataset: SequenceDataset, batch_size: int, num_batches: int,
                           rng: np.random.Generator, device: torch.device) -> None:
    """Set every BatchNorm layer's running mean/var to the exact average over ``num_batches`` fresh
    training batches of ``batch_size`` crops, passed through :meth:`SkillModel.loss` in train mode
    without gradients (``torch.optim.swa_utils.update_bn``); the weights are unchanged. The
    model's train/eval mode is restored."""
    from torch.optim.swa_utils import update_bn

    batches = (to_torch(dataset.sample(batch_size, "train", rng), device) for _ in range(int(num_batches)))
    wrapper = _LossForward(model).train(model.training)  # update_bn restores the wrapper's mode to the whole tree
    update_bn(batches, wrapper)


def train_skill_prior(
    dataset: SequenceDataset,
    model_config: SkillModelConfig,
    train_config: PriorTrainingConfig,
    out_dir: str | os.PathLike,
    show_progress: bool = True,
    extra: dict[str, Any] | None = None,
) -> PriorTrainingResult:
    """Train the skill VAE and skill prior jointly with eq. 4; write ``out_dir/skill_model.pt``.

    TensorBoard scalars go to ``out_dir/tb`` (``train/…``, ``val/…``); the final
    checkpoint is written atomically, so an interrupted run never leaves a
    half-written model behind.

    Raises:
        ValueError: ``model_config`` dims differ from the dataset's.
    """
    from torch.utils.tensorboard import SummaryWriter

    if (model_config.obs_dim, model_config.action_dim) != (dataset.obs_dim, dataset.act_dim):
        raise ValueError(
            f"skill model config obs_dim/action_dim = {model_config.obs_dim}/{model_config.action_dim} "
            f"but the dataset has {dataset.obs_dim}/{dataset.act_dim}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = _device(train_config.device)
    if train_config.num_threads:
        torch.set_num_threads(train_config.num_threads)
    torch.manual_seed(train_config.seed)
    rng = np.random.default_rng(train_config.seed)

    model = SkillModel(model_config).to(device).train()
    opt = torch.optim.RAdam(model.parameters(), lr=train_config.lr, betas=train_config.betas)
    writer = SummaryWriter(str(out_dir / "tb"))
    metrics: dict[str, float] = {}
    t0 = time.perf_counter()
    data_time = 0.0
    bar = tqdm(range(1, train_config.num_steps + 1), desc="skill prior", disable=not show_progress, mininterval=1.0)
    for step in bar:
        td = time.perf_counter()
        batch = to_torch(dataset.sample(train_config.batch_size, "train", rng), device)
        data_time += time.perf_counter() - td
        out = model.loss(batch["states"], batch["actions"])
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        if step <= train_config.early_clip_steps:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.early_clip_norm)
        opt.step()
        if step % 50 == 0 or step == train_config.num_steps:
            for k, v in out.items():
                writer.add_scalar(f"train/{k}", float(v.detach()), step)
            bar.set_postfix(mse=f"{float(out['mse']):.4f}", prior=f"{float(out['prior_loss']):.2f}")
        if step == train_config.num_steps and train_config.bn_recalibration_batches:
            recalibrate_batch_norm(model, dataset, train_config.batch_size, train_config.bn_recalibration_batches,
                                   rng, device)
        if step % train_config.val_every == 0 or step == train_config.num_steps:
            val = evaluate(model, dataset, train_config.batch_size, train_config.val_batches, device)
            for k, v in val.items():
                writer.add_scalar(f"val/{k}", v, step)
            metrics = {f"val_{k}": v for k, v in val.items()}
    wall = time.perf_counter() - t0
    metrics.update(
        train_mse=float(out["mse"]),
        train_prior_loss=float(out["prior_loss"]),
        steps=float(train_config.num_steps),
        wall_time_s=wall,
        data_time_fraction=data_time / max(wall, 1e-9),
    )
    writer.flush()
    writer.close()
    path = save_skill_model(out_dir / "skill_model.pt", model.cpu(), extra={"metrics": metrics, **(extra or {})})
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    log.info("skill prior trained in %.0f s: val mse %.4g", wall, metrics.get("val_mse", float("nan")))
    return PriorTrainingResult(path=path, metrics=metrics)


def prior_cache_key(dataset_path: str | os.PathLike, data_settings: dict[str, Any], model_config: SkillModelConfig, train_config: PriorTrainingConfig) -> str:
    """Content hash of (dataset arrays, how they are read, model config, training config).

    The dataset enters through :func:`~spirl_ray.data.content_hash.dataset_content_sha256`
    (its arrays, not how the file was written). Identical arrays give the same
    key on any machine; simulated data collected with another MuJoCo build are
    different arrays, hence a different key (see that module's note).

    Config fields at their default value are left out of the hash, so adding
    a new option (at a default that keeps the old behaviour) keeps every
    existing cache entry valid; changing a field's *default* therefore needs a
    new cache (delete ``prior_cache/``). ``device`` and ``num_threads`` do not
    change the result's meaning and are never hashed.
    """
    h = hashlib.sha256()
    h.update(dataset_content_sha256(dataset_path).encode())
    h.update(json.dumps(data_settings, sort_keys=True, default=str).encode())
    model = model_config.model_dump(exclude_defaults=True)
    model.update(obs_dim=model_config.obs_dim, action_dim=model_config.action_dim)
    h.update(json.dumps(model, sort_keys=True, default=str).encode())
    train = train_config.model_dump(exclude={"device", "num_threads"}, exclude_defaults=True)
    h.update(json.dumps(train, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def cached_skill_prior(
    dataset_path: str | os.PathLike,
    dataset: SequenceDataset | None,
    data_settings: dict[str, Any],
    model_config: SkillModelConfig,
    train_config: PriorTrainingConfig,
    cache_dir: str | os.PathLike,
    show_progress: bool = True,
    dataset_factory=None,
) -> PriorTrainingResult:
    """Return a cached model for this (dataset, settings, configs) or train and cache one.

    A cache entry is trusted only when its checksum sidecar matches the file
    (a truncated or edited ``skill_model.pt`` is retrained, not loaded).
    ``dataset`` may be None with ``dataset_factory`` given, so a cache hit
    never reads the dataset.
    """
    key = prior_cache_key(dataset_path, data_settings, model_config, train_config)
    entry = Path(cache_dir) / key
    model_path = entry / "skill_model.pt"
    if verify_skill_model(model_path):
        model = load_skill_model(model_path)
        log.info("skill prior cache hit: %s", model_path)
        return PriorTrainingResult(path=model_path, metrics=model.extra.get("metrics", {}), cached=True)
    if dataset is None:
        dataset = dataset_factory()
    extra = {"dataset": str(dataset_path), "cache_key": key, "data_settings": data_settings}
    return train_skill_prior(dataset, model_config, train_config, entry, show_progress, extra)
