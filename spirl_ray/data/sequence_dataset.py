"""Fixed-length crops for skill-prior training (H+1 states, H actions; notes §1).

All episodes are concatenated once into two contiguous arrays and the valid
crop starts of each split are precomputed, so a batch is one ``rng.integers`` call
plus one fancy-indexing gather: no per-sample Python. (The reference implementation
spends ~90% of each training step choosing episodes in Python; notes §6.4.)

Image states (``obs_key="images"``; maze / block stacking, appendix B.1): the
crops' ``states`` are the episodes' uint8 image states (C, H, W) instead of
their state vectors, kept uint8 here and in :func:`to_torch` (the model's conv
encoder divides by 255). Each stored image already stacks the previous and the
current frame, so a crop needs H + 1 images, like H + 1 states (the
reference's H + 2 comes from stacking frames itself).
"""

from __future__ import annotations

import logging
from typing import Iterator

import numpy as np

from spirl_ray.data.readers import DatasetError, EpisodeData, read_dataset

__all__ = ["SequenceDataset", "make_sequence_dataset", "to_torch"]

logger = logging.getLogger(__name__)


class SequenceDataset:
    """Random (H+1)-step crops from a list of episodes, vectorised over one preloaded array.

    A crop starting at step ``s`` of an episode holds ``states = obs[s : s+H+1]`` and
    ``actions = act[s : s+H]``, so ``states[:, t]`` is the state in which
    ``actions[:, t]`` was taken. Valid starts of an episode of length T: 0..T-H-1.
    Train/val are split by episode (seeded); val gets at least one episode when
    there are at least two usable episodes and ``val_fraction > 0``.

    Args:
        episodes: the trajectories.
        horizon: H, actions per crop.
        val_fraction, seed: episode split.
        source: name used in error messages (the dataset file).
        obs_key: ``"observations"`` (state vectors, float32 crops (B, H+1, S))
            or ``"images"`` (``EpisodeData.images``, uint8 crops (B, H+1, C, H, W)).

    Raises:
        DatasetError: no usable episode, episodes disagreeing on shapes, or
            ``obs_key="images"`` with an episode without images.
        ValueError: ``horizon < 1``, ``val_fraction`` outside [0, 1), unknown ``obs_key``.
    """

    def __init__(self, episodes: list[EpisodeData], horizon: int, val_fraction: float = 0.1,
                 seed: int = 0, source: str = "<dataset>", obs_key: str = "observations"):
        if int(horizon) < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if obs_key not in ("observations", "images"):
            raise ValueError(f"obs_key must be 'observations' or 'images', got {obs_key!r}")
        self.obs_key = obs_key
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.horizon = h = int(horizon)
        self.source = source
        self.seed = seed
        if not episodes:
            raise DatasetError(f"{source}: no episodes; expected at least one episode of >= {h + 1} steps")

        lengths = np.array([len(e) for e in episodes], dtype=np.int64)
        keep = np.flatnonzero(lengths >= h + 1)
        n_drop = len(episodes) - keep.size
        if keep.size == 0:
            raise DatasetError(
                f"{source}: all {len(episodes)} episodes are shorter than H+1={h + 1} steps "
                f"(H={h}; longest episode has {int(lengths.max())} steps); expected at least one "
                f"episode of >= {h + 1} steps"
            )
        if n_drop:
            logger.warning("%s: dropped %d of %d episodes shorter than H+1=%d steps",
                           source, n_drop, len(episodes), h + 1)
        eps = [episodes[i] for i in keep]
        self.num_dropped_episodes = int(n_drop)

        if obs_key == "images":
            missing = [int(keep[i]) for i, e in enumerate(eps) if e.images is None]
            if missing:
                raise DatasetError(f"{source}: {len(missing)} episodes (first: {missing[0]}) have no 'images'; "
                                   "image states need a dataset with an 'images' key")
            states = [e.images for e in eps]
        else:
            states = [e.observations for e in eps]
        obs_dims = {tuple(x.shape[1:]) for x in states}
        act_dims = {e.actions.shape[1] for e in eps}
        if len(obs_dims) != 1 or len(act_dims) != 1:
            raise DatasetError(f"{source}: episodes disagree on dims ({obs_key} {sorted(obs_dims)}, "
                               f"actions {sorted(act_dims)}); expected one shape each")

        # one contiguous array for everything (images: a view of the reader's array when possible)
        dtype = np.uint8 if obs_key == "images" else np.float32
        if obs_key == "images":
            joined = _consecutive_view(states)
            self._obs = joined if joined is not None else np.ascontiguousarray(np.concatenate(states), dtype=dtype)
        else:
            self._obs = np.ascontiguousarray(np.concatenate(states), dtype=dtype)
        self._act = np.ascontiguousarray(np.concatenate([e.actions for e in eps]), dtype=np.float32)
        lens = lengths[keep]
        offsets = np.concatenate([[0], np.cumsum(lens)[:-1]])
        self.episode_offsets = offsets
        self.episode_lengths = lens

        # split by episode
        n = len(eps)
        perm = np.random.default_rng(seed).permutation(n)
        n_val = 0
        if n >= 2 and val_fraction > 0:
            n_val = min(n - 1, max(1, int(round(val_fraction * n))))
        self.val_episodes = np.sort(perm[:n_val])
        self.train_episodes = np.sort(perm[n_val:])

        self._starts = {
            "train": self._window_starts(self.train_episodes),
            "val": self._window_starts(self.val_episodes),
        }
        self._arange = np.arange(h + 1, dtype=np.int64)
        self._rng = np.random.default_rng(seed + 1)

    # ------------------------------------------------------------------ internals
    def _window_starts(self, ep_idx: np.ndarray) -> np.ndarray:
        """Global row indices of every valid crop start in the given episodes (vectorised)."""
        if ep_idx.size == 0:
            return np.zeros(0, dtype=np.int64)
        counts = self.episode_lengths[ep_idx] - self.horizon  # starts 0..T-H-1
        offs = self.episode_offsets[ep_idx]
        total = int(counts.sum())
        # offset of the episode repeated per window + position within the episode
        first = np.repeat(offs - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        return first + np.arange(total, dtype=np.int64)

    def _gather(self, starts: np.ndarray) -> dict[str, np.ndarray]:
        idx = starts[:, None] + self._arange  # (B, H+1)
        return {"states": self._obs[idx], "actions": self._act[idx[:, :-1]]}

    def _split_starts(self, split: str) -> np.ndarray:
        if split not in self._starts:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        starts = self._starts[split]
        if starts.size == 0:
            raise DatasetError(
                f"{self.source}: split '{split}' has no episodes (H={self.horizon}, "
                f"{len(self.episode_lengths)} usable episodes, longest "
                f"{int(self.episode_lengths.max())} steps); use more episodes or val_fraction > 0"
            )
        return starts

    # ------------------------------------------------------------------ public API
    def sample(self, batch_size: int, split: str = "train",
               rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """``{"states": (B, H+1, *obs_shape), "actions": (B, H, act_dim)}`` crops.

        ``states`` are float32 state vectors, or uint8 images with ``obs_key="images"``;
        ``actions`` float32.
        """
        starts = self._split_starts(split)
        rng = self._rng if rng is None else rng
        return self._gather(starts[rng.integers(0, starts.size, size=int(batch_size))])

    def iterate_val(self, batch_size: int, max_windows: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Deterministic pass over the val crops (all of them, or ``max_windows`` evenly spaced)."""
        starts = self._split_starts("val")
        if max_windows is not None and starts.size > max_windows:
            starts = starts[np.linspace(0, starts.size - 1, int(max_windows)).round().astype(np.int64)]
        for i in range(0, starts.size, int(batch_size)):
            yield self._gather(starts[i:i + int(batch_size)])

    @property
    def num_train_windows(self) -> int:
        return int(self._starts["train"].size)

    @property
    def num_val_windows(self) -> int:
        return int(self._starts["val"].size)

    @property
    def obs_dim(self) -> int:
        """State dim S; for image states the flattened size C * H * W."""
        return int(np.prod(self._obs.shape[1:]))

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """(S,) for state vectors, (C, H, W) for image states."""
        return tuple(int(d) for d in self._obs.shape[1:])

    @property
    def act_dim(self) -> int:
        return int(self._act.shape[1])

    @property
    def num_steps(self) -> int:
        return int(self._obs.shape[0])

    def __repr__(self) -> str:
        return (f"SequenceDataset(source={self.source!r}, H={self.horizon}, episodes="
                f"{len(self.train_episodes)}+{len(self.val_episodes)}, steps={self.num_steps}, "
                f"windows={self.num_train_windows}+{self.num_val_windows}, "
                f"obs_shape={self.obs_shape}, act_dim={self.act_dim})")


def _consecutive_view(parts: list[np.ndarray]) -> np.ndarray | None:
    """``np.concatenate(parts)`` without a copy when the parts are back-to-back slices of one buffer.

    The D4RL reader splits one (N, C, H, W) image array into episode views; gluing them
    back by copying would double the memory of an image dataset (2 KB per step). Returns
    None when the parts are not such slices (then the caller copies).
    """
    first = parts[0]
    base = first.base
    if not isinstance(base, np.ndarray) or not base.flags.c_contiguous:
        return None
    ptr = first.__array_interface__["data"][0]
    offset = ptr - base.__array_interface__["data"][0]
    for p in parts:
        if p.shape[0] == 0:
            continue
        if p.base is not base or not p.flags.c_contiguous or p.__array_interface__["data"][0] != ptr:
            return None
        ptr += p.nbytes
    rows = sum(p.shape[0] for p in parts)
    return np.ndarray((rows, *first.shape[1:]), dtype=first.dtype, buffer=base, offset=offset)


def to_torch(batch: dict[str, np.ndarray], device="cpu") -> dict:
    """Numpy batch -> torch tensors on ``device``: float32, except uint8 (images) stays uint8."""
    import torch

    out = {}
    for k, v in batch.items():
        dtype = np.uint8 if v.dtype == np.uint8 else np.float32
        t = torch.from_numpy(np.ascontiguousarray(v, dtype=dtype))  # zero-copy on CPU
        out[k] = t if str(device) == "cpu" else t.to(device, non_blocking=True)
    return out


def make_sequence_dataset(path, horizon: int, fmt: str = "auto", state_layout: str | None = None,
                          obs_dim: int | None = None, act_dim: int | None = None,
                          val_fraction: float = 0.1, seed: int = 0, obs_key: str = "observations") -> SequenceDataset:
    """Read a D4RL/Minari dataset and wrap it in a :class:`SequenceDataset` (``obs_key``: see the class)."""
    kw = {"read_images": obs_key == "images"}
    episodes = read_dataset(path, fmt=fmt, obs_dim=obs_dim, act_dim=act_dim, state_layout=state_layout, **kw)
    return SequenceDataset(episodes, horizon, val_fraction=val_fraction, seed=seed, source=str(path), obs_key=obs_key)
