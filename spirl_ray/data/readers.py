"""Readers for offline trajectory datasets: D4RL flat hdf5 and Minari episode hdf5.

Both return a list of :class:`EpisodeData` with aligned ``observations`` (T, obs_dim)
and ``actions`` (T, act_dim), float32, where ``observations[t]`` is the state in which
``actions[t]`` was taken.

State layouts (see notes §3): FrankaKitchen-v1 observations are 59-d
``[robot qpos 9 | robot qvel 9 | object qpos 21 | object qvel 20]``; D4RL kitchen
observations are 60-d ``[robot qpos 9 | object qpos 21 | goal 30]``.

* ``"d4rl30"``: the 30-d qpos-only layout shared by both: D4RL ``obs[:, :30]``,
  v1 ``obs[:, 0:9] ++ obs[:, 18:39]``, a 30-d file unchanged.
* ``"full59"``: the 59-d FrankaKitchen-v1 layout (only obtainable from 59-d data).
* ``None``: observations as stored.

Image states (maze, block stacking; paper appendix C, Fig. 7): a D4RL file may
hold ``images`` (N, C, H, W) uint8 beside ``observations``, row ``t`` the
image observation in which ``actions[t]`` was taken (the maze collector stores
C = 2 stacked frames ``[previous, current]``, 32 x 32 px, 255 = wall). It is
split at the same episode bounds into :attr:`EpisodeData.images` and kept
uint8 (4x smaller than float32; encoders divide by 255).

Minari datasets are read with the ``minari`` library (the optional extra
``pip install -e ".[minari]"``) when it is installed and the dataset has the
``data/metadata.json`` the library writes; otherwise, and for hand-made files
without it, ``main_data.hdf5`` is read with h5py. :func:`minari_reader` says
which one a path gets, and why. Dict observations are flattened by
concatenating ``dict_keys`` (default ``("observation",)``, FrankaKitchen-v1's
state; None = every key, sorted, as the ``gymnasium`` env family does).

Every problem with the data raises a single :class:`DatasetError` whose message names
the file, the key, and what was expected versus found; h5py/numpy errors never escape
for the validated cases. Arrays are read whole and split with numpy (no per-step
Python), so the 156k-step kitchen sets load in well under a second.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from spirl_ray.envs.gymnasium_adapter import flatten_dict_batch

__all__ = [
    "DatasetError",
    "DatasetSpec",
    "EpisodeData",
    "STATE_LAYOUTS",
    "map_state_layout",
    "minari_reader",
    "read_d4rl_hdf5",
    "read_minari",
    "read_dataset",
    "read_dataset_spec",
    "describe_reader",
    "resolve_minari_file",
]

STATE_LAYOUTS = ("d4rl30", "full59")
_EPISODE_RE = re.compile(r"^episode_(\d+)$")
#: dict observations: the entries read by default (FrankaKitchen-v1's ``observation`` state)
DEFAULT_DICT_KEYS: tuple[str, ...] = ("observation",)


class DatasetError(ValueError):
    """Bad offline dataset; message names the file, the key and what was expected."""


@dataclass
class EpisodeData:
    """One trajectory; ``observations[t]`` (and ``images[t]``) pair with ``actions[t]``."""

    observations: np.ndarray  # (T, obs_dim) float32
    actions: np.ndarray  # (T, act_dim) float32
    images: np.ndarray | None = None  # (T, C, H, W) uint8 image states, when the dataset has them

    def __len__(self) -> int:
        return int(self.actions.shape[0])


# --------------------------------------------------------------------------- helpers


def _open_hdf5(path: Path) -> h5py.File:
    if not path.exists():
        raise DatasetError(f"{path}: dataset file does not exist (expected an hdf5 file)")
    if path.is_dir():
        raise DatasetError(f"{path}: is a directory, expected an hdf5 file")
    try:
        if not h5py.is_hdf5(str(path)):
            size = path.stat().st_size
            raise DatasetError(
                f"{path}: not an hdf5 file ({size} bytes without an hdf5 signature); "
                "expected a D4RL or Minari .hdf5 dataset"
            )
        return h5py.File(str(path), "r")
    except DatasetError:
        raise
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: cannot read as hdf5 ({type(e).__name__}: {e})") from e


def _read_array(group: h5py.Group, key: str, path: Path, prefix: str = "") -> np.ndarray:
    """Read ``group[key]`` whole; DatasetError if missing, not a dataset or unreadable."""
    full = f"{prefix}{key}"
    if key not in group:
        present = sorted(group.keys())
        raise DatasetError(
            f"{path}: missing key '{full}' (expected a dataset; keys present: {present[:20]}"
            f"{' ...' if len(present) > 20 else ''})"
        )
    node = group[key]
    if not isinstance(node, h5py.Dataset):
        raise DatasetError(f"{path}: key '{full}' is a {type(node).__name__}, expected a dataset")
    try:
        return node[()]
    except (OSError, ValueError, TypeError) as e:
        raise DatasetError(f"{path}: key '{full}' could not be read ({type(e).__name__}: {e})") from e


def _check_2d_numeric(dtype: np.dtype, shape: tuple, path: Path, key: str) -> None:
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer) or dtype == np.bool_):
        raise DatasetError(f"{path}: key '{key}' has dtype {dtype}, expected numeric")
    if len(shape) != 2:
        raise DatasetError(f"{path}: key '{key}' has shape {shape}, expected 2-d (steps, dim)")


def _as_2d_float(arr: np.ndarray, path: Path, key: str) -> np.ndarray:
    _check_2d_numeric(arr.dtype, arr.shape, path, key)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_finite(arr: np.ndarray, path: Path, key: str) -> None:
    finite = np.isfinite(arr)
    if not finite.all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        rows = np.flatnonzero(~finite.all(axis=tuple(range(1, arr.ndim))))
        raise DatasetError(
            f"{path}: key '{key}' contains non-finite values ({n_nan} NaN, {n_inf} inf, "
            f"in {rows.size} rows, first at row {int(rows[0])}); expected all finite"
        )


def map_state_layout(obs: np.ndarray, layout: str | None, path: Any = "<array>",
                     key: str = "observations") -> np.ndarray:
    """Map (N, D) observations to ``layout`` (see module docstring)."""
    if layout is None:
        return obs
    d = obs.shape[-1]
    if layout == "d4rl30":
        if d == 60:  # D4RL kitchen: [qpos robot 9 | qpos obj 21 | goal 30]
            return np.ascontiguousarray(obs[:, :30])
        if d == 59:  # FrankaKitchen-v1: [qpos 9 | qvel 9 | obj qpos 21 | obj qvel 20]
            return np.ascontiguousarray(np.concatenate([obs[:, 0:9], obs[:, 18:39]], axis=1))
        if d == 30:
            return obs
        raise DatasetError(
            f"{path}: key '{key}' has dim {d}; state_layout 'd4rl30' expects 60-d (D4RL kitchen), "
            "59-d (FrankaKitchen-v1) or 30-d observations"
        )
    if layout == "full59":
        if d == 59:
            return obs
        if d == 60:
            raise DatasetError(
                f"{path}: key '{key}' is 60-d (D4RL kitchen: qpos + goal, no velocities); "
                "state_layout 'full59' needs 59-d FrankaKitchen-v1 observations with velocities. "
                "Use state_layout='d4rl30' for this file"
            )
        raise DatasetError(
            f"{path}: key '{key}' has dim {d}; state_layout 'full59' expects 59-d observations"
        )
    raise DatasetError(f"{path}: unknown state_layout {layout!r}; expected one of {STATE_LAYOUTS} or None")


def _check_images(images, n: int, path: Path, key: str = "images"):
    """(N, C, H, W) uint8 image states with one row per observation; DatasetError otherwise.

    ``images``: an array or an h5py dataset (only its dtype and shape are looked at).
    """
    if images.dtype != np.uint8:
        raise DatasetError(f"{path}: key '{key}' has dtype {images.dtype}, expected uint8 image states (0-255)")
    if len(images.shape) != 4:
        raise DatasetError(f"{path}: key '{key}' has shape {images.shape}, expected 4-d (steps, channels, height, width)")
    if images.shape[0] != n:
        raise DatasetError(
            f"{path}: length mismatch: key '{key}' has {images.shape[0]} rows, key 'observations' has {n}; "
            "expected one image per observation"
        )
    return images


def _check_dims(obs: np.ndarray, act: np.ndarray, path: Path, obs_key: str, act_key: str,
                obs_dim: int | None, act_dim: int | None, layout: str | None) -> None:
    if obs_dim is not None and obs.shape[1] != obs_dim:
        how = f" after state_layout {layout!r}" if layout else ""
        raise DatasetError(
            f"{path}: key '{obs_key}' has dim {obs.shape[1]}{how}, expected obs_dim={obs_dim}"
        )
    if act_dim is not None and act.shape[1] != act_dim:
        raise DatasetError(f"{path}: key '{act_key}' has dim {act.shape[1]}, expected act_dim={act_dim}")


# --------------------------------------------------------------------------- D4RL


def read_d4rl_hdf5(path, obs_dim: int | None = None, act_dim: int | None = None,
                   state_layout: str | None = None, read_images: bool | None = None,
                   dict_keys: Sequence[str] | None = DEFAULT_DICT_KEYS) -> list[EpisodeData]:
    """Read a flat D4RL hdf5 file and split it into episodes.

    An episode ends after every index where ``terminals | timeouts`` is true; a
    trailing unterminated segment is an episode too.

    Args:
        path: the hdf5 file.
        obs_dim, act_dim: expected dims (after ``state_layout``); None = any.
        state_layout: see the module docstring (kitchen only; None = as stored).
        read_images: the ``images`` key (N, C, H, W) uint8, split like the
            observations into ``EpisodeData.images``: ``True`` = required,
            ``False`` = not read (``images`` stays None; saves memory when
            only states are used), ``None`` = read when present.
        dict_keys: ignored (D4RL observations are flat already); accepted so
            :func:`read_dataset` takes the same arguments for both formats.

    Raises:
        DatasetError: missing/unreadable keys, length or dim mismatches,
            non-finite values, ``images`` not uint8 (N, C, H, W) or missing
            with ``read_images=True`` (the message names file and key).
    """
    path = Path(path)
    if state_layout is not None and state_layout not in STATE_LAYOUTS:
        raise DatasetError(f"{path}: unknown state_layout {state_layout!r}; expected one of {STATE_LAYOUTS} or None")
    with _open_hdf5(path) as f:
        obs = _read_array(f, "observations", path)
        act = _read_array(f, "actions", path)
        has_term, has_to = "terminals" in f, "timeouts" in f
        if not (has_term or has_to):
            _read_array(f, "terminals", path)  # raises: names the missing key
        term = _read_array(f, "terminals", path) if has_term else None
        tout = _read_array(f, "timeouts", path) if has_to else None
        images = None
        if read_images or (read_images is None and "images" in f):
            images = _read_array(f, "images", path)  # raises naming 'images' when missing

    obs = _as_2d_float(obs, path, "observations")
    act = _as_2d_float(act, path, "actions")
    n = obs.shape[0]
    if n == 0 or act.shape[0] == 0:
        raise DatasetError(
            f"{path}: key 'observations' has {n} rows and 'actions' {act.shape[0]} rows; "
            "expected a non-empty dataset"
        )
    if act.shape[0] != n:
        raise DatasetError(
            f"{path}: length mismatch: key 'observations' has {n} rows, key 'actions' has "
            f"{act.shape[0]}; expected equal lengths"
        )
    done = np.zeros(n, dtype=bool)
    for key, arr in (("terminals", term), ("timeouts", tout)):
        if arr is None:
            continue
        arr = np.asarray(arr)
        if arr.ndim == 2 and arr.shape[1] == 1:  # some writers store (N, 1)
            arr = arr[:, 0]
        if arr.ndim != 1 or arr.shape[0] != n:
            raise DatasetError(f"{path}: key '{key}' has shape {arr.shape}, expected ({n},) to match 'observations'")
        done |= arr.astype(bool)

    _check_finite(act, path, "actions")
    obs = map_state_layout(obs, state_layout, path, "observations")
    _check_finite(obs, path, "observations")
    _check_dims(obs, act, path, "observations", "actions", obs_dim, act_dim, state_layout)
    if images is not None:
        images = _check_images(images, n, path)

    bounds = np.flatnonzero(done) + 1
    if bounds.size == 0 or bounds[-1] != n:
        bounds = np.append(bounds, n)
    starts = np.concatenate([[0], bounds[:-1]])
    return [
        EpisodeData(obs[s:e], act[s:e], None if images is None else images[s:e])
        for s, e in zip(starts.tolist(), bounds.tolist())
    ]


# --------------------------------------------------------------------------- Minari


def resolve_minari_file(path) -> Path:
    """Map a Minari dataset directory (or the hdf5 itself) to its ``main_data.hdf5``."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: dataset path does not exist (expected a Minari dataset "
                           "directory or its data/main_data.hdf5)")
    if path.is_file():
        return path
    for cand in (path / "data" / "main_data.hdf5", path / "main_data.hdf5"):
        if cand.is_file():
            return cand
    found = sorted(path.rglob("main_data.hdf5"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DatasetError(f"{path}: directory holds no 'data/main_data.hdf5' (expected a Minari dataset directory)")
    raise DatasetError(
        f"{path}: directory holds {len(found)} Minari datasets "
        f"({', '.join(str(p.relative_to(path)) for p in found[:5])}); point at one of them"
    )


def _dict_keys_label(name: str, keys: Sequence[str]) -> str:
    return f"{name}/observations/{keys[0]}" if len(keys) == 1 else f"{name}/observations/{{{','.join(keys)}}}"


def _minari_obs(ep: h5py.Group, path: Path, name: str,
                dict_keys: Sequence[str] | None = DEFAULT_DICT_KEYS) -> tuple[np.ndarray, str]:
    if "observations" not in ep:
        _read_array(ep, "observations", path, prefix=f"{name}/")  # raises
    node = ep["observations"]
    if isinstance(node, h5py.Dataset):
        return _read_array(ep, "observations", path, prefix=f"{name}/"), f"{name}/observations"
    # dict observation space: e.g. FrankaKitchen-v1 stores observation/achieved_goal/desired_goal
    keys = list(dict_keys) if dict_keys else sorted(node.keys())
    missing = [k for k in keys if k not in node or not isinstance(node[k], h5py.Dataset)]
    if missing:
        raise DatasetError(
            f"{path}: key '{name}/observations' is a dict-space group with keys {sorted(node.keys())}; "
            f"expected a dataset or dataset entries {missing}"
        )
    arrays = {k: _read_array(node, k, path, prefix=f"{name}/observations/") for k in keys}
    return flatten_dict_batch(arrays, keys), _dict_keys_label(name, keys)


def minari_reader(path) -> tuple[str, str]:
    """Which reader a Minari dataset gets: ``("minari", "the minari library 0.5.4")`` or ``("h5py", why)``.

    The library reads a dataset whose ``data/`` folder holds its ``metadata.json``; h5py
    is used when ``minari`` is not installed or the folder has none (a hand-made file).

    Raises:
        DatasetError: ``path`` is not a Minari dataset directory or file (:func:`resolve_minari_file`).
    """
    file = resolve_minari_file(path)
    if not (file.parent / "metadata.json").is_file():
        return "h5py", f"h5py ({file.parent} has no metadata.json: not written by the minari library)"
    try:
        import minari
    except ImportError:
        return "h5py", 'h5py (minari is not installed: pip install -e ".[minari]")'
    return "minari", f"the minari library {minari.__version__}"


def _read_minari_library(file: Path, dict_keys: Sequence[str] | None) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(observations (T+1, D), actions (T, A), observation key) per episode, through ``minari.MinariDataset``."""
    import minari

    try:
        dataset = minari.MinariDataset(file.parent)
        out = []
        for ep in dataset.iterate_episodes():
            name = f"episode_{ep.id}"
            obs = ep.observations
            if isinstance(obs, dict):
                keys = list(dict_keys) if dict_keys else sorted(obs)
                try:
                    flat = flatten_dict_batch(obs, keys)
                except KeyError as e:
                    raise DatasetError(f"{file}: key '{name}/observations': {e.args[0]}") from None
                out.append((flat, np.asarray(ep.actions), _dict_keys_label(name, keys)))
            else:
                out.append((np.asarray(obs), np.asarray(ep.actions), f"{name}/observations"))
        return out
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001 - the library's errors name no file
        raise DatasetError(f"{file}: the minari library could not read it ({type(e).__name__}: {e})") from None


def _read_minari_h5py(file: Path, dict_keys: Sequence[str] | None) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(observations (T+1, D), actions (T, A), observation key) per episode, read with h5py, sorted by index."""
    out = []
    with _open_hdf5(file) as f:
        names = sorted(
            ((int(m.group(1)), k) for k in f.keys() if (m := _EPISODE_RE.match(k))),
        )
        if not names:
            raise DatasetError(
                f"{file}: no 'episode_<i>' groups (keys present: {sorted(f.keys())[:20]}); "
                "expected a Minari dataset with at least one episode"
            )
        for _, name in names:
            ep = f[name]
            if not isinstance(ep, h5py.Group):
                raise DatasetError(f"{file}: key '{name}' is a dataset, expected an episode group")
            obs, obs_key = _minari_obs(ep, file, name, dict_keys)
            out.append((obs, _read_array(ep, "actions", file, prefix=f"{name}/"), obs_key))
    return out


def read_minari(path, obs_dim: int | None = None, act_dim: int | None = None,
                state_layout: str | None = None, read_images: bool | None = None,
                dict_keys: Sequence[str] | None = DEFAULT_DICT_KEYS) -> list[EpisodeData]:
    """Read a Minari dataset (directory or ``main_data.hdf5``); episodes sorted by index.

    Read through the ``minari`` library when :func:`minari_reader` says so,
    else with h5py (the same arrays). Minari stores T+1 observations per
    episode (the final one after the last action); it is dropped so
    observations and actions align (T each). Dict observations: the
    ``dict_keys`` entries concatenated (None: all, sorted). Image states are
    not read from Minari datasets (``read_images=True`` raises DatasetError).

    Raises:
        DatasetError: as :func:`read_d4rl_hdf5`, naming the file and key.
    """
    file = resolve_minari_file(path)
    if read_images:
        raise DatasetError(f"{file}: image states are read from D4RL-layout files only (key 'images'), not Minari")
    if state_layout is not None and state_layout not in STATE_LAYOUTS:
        raise DatasetError(f"{file}: unknown state_layout {state_layout!r}; expected one of {STATE_LAYOUTS} or None")
    if minari_reader(file)[0] == "minari":
        raw = _read_minari_library(file, dict_keys)
    else:
        raw = _read_minari_h5py(file, dict_keys)
    episodes: list[EpisodeData] = []
    for obs, act, obs_key in raw:
        name = obs_key.split("/")[0]
        act_key = f"{name}/actions"
        obs = _as_2d_float(obs, file, obs_key)
        act = _as_2d_float(act, file, act_key)
        t = act.shape[0]
        if obs.shape[0] != t + 1:
            raise DatasetError(
                f"{file}: length mismatch: key '{obs_key}' has {obs.shape[0]} rows, "
                f"key '{act_key}' has {t}; expected observations = actions + 1"
            )
        obs = obs[:t]
        _check_finite(act, file, act_key)
        obs = map_state_layout(obs, state_layout, file, obs_key)
        _check_finite(obs, file, obs_key)
        _check_dims(obs, act, file, obs_key, act_key, obs_dim, act_dim, state_layout)
        episodes.append(EpisodeData(np.ascontiguousarray(obs), act))
    if sum(len(e) for e in episodes) == 0:
        raise DatasetError(f"{file}: all {len(episodes)} episodes have zero steps in 'actions'; expected data")
    return episodes


# --------------------------------------------------------------------------- shapes only


@dataclass(frozen=True)
class DatasetSpec:
    """What an offline dataset holds, read from its hdf5 headers (no arrays loaded).

    Dims are those :func:`read_dataset` would return with the same arguments.
    """

    file: Path  #: the hdf5 file read (a Minari directory resolves to its ``main_data.hdf5``)
    format: str  #: ``"d4rl"`` or ``"minari"``
    steps: int  #: state-action pairs (Minari: without the final observation of each episode)
    obs_key: str  #: the observation key (Minari: of the first episode)
    obs_dim: int  #: observation dim after ``state_layout``
    act_key: str
    act_dim: int
    image_shape: tuple[int, ...] | None = None  #: (C, H, W) of key ``images``; None when absent or not read
    image_dtype: str | None = None  #: numpy dtype name of ``images`` (the readers require ``uint8``)
    reader: str = "h5py"  #: what reads it: ``"h5py"`` or ``"the minari library <version>"`` (Minari datasets)


def _dataset_node(group: h5py.Group, key: str, path: Path, prefix: str = "") -> h5py.Dataset:
    """``group[key]`` as an h5py dataset, unread; DatasetError like :func:`_read_array` when missing."""
    full = f"{prefix}{key}"
    if key not in group:
        _read_array(group, key, path, prefix)  # raises, listing the keys present
    node = group[key]
    if not isinstance(node, h5py.Dataset):
        raise DatasetError(f"{path}: key '{full}' is a {type(node).__name__}, expected a dataset")
    return node


def _layout_dim(dim: int, state_layout: str | None, path: Path, key: str) -> int:
    """Observation dim after ``state_layout`` (same rules and errors as :func:`map_state_layout`)."""
    return int(map_state_layout(np.zeros((0, dim), np.float32), state_layout, path, key).shape[1])


def _d4rl_spec(path: Path, state_layout: str | None, read_images: bool | None) -> DatasetSpec:
    with _open_hdf5(path) as f:
        obs, act = _dataset_node(f, "observations", path), _dataset_node(f, "actions", path)
        _check_2d_numeric(obs.dtype, obs.shape, path, "observations")
        _check_2d_numeric(act.dtype, act.shape, path, "actions")
        n = obs.shape[0]
        if n == 0 or act.shape[0] == 0:
            raise DatasetError(f"{path}: key 'observations' has {n} rows and 'actions' {act.shape[0]} rows; "
                               "expected a non-empty dataset")
        if act.shape[0] != n:
            raise DatasetError(f"{path}: length mismatch: key 'observations' has {n} rows, key 'actions' has "
                               f"{act.shape[0]}; expected equal lengths")
        if "terminals" not in f and "timeouts" not in f:
            _read_array(f, "terminals", path)  # raises: names the missing key
        image_shape = image_dtype = None
        if read_images or (read_images is None and "images" in f):
            images = _check_images(_dataset_node(f, "images", path), n, path)
            image_shape, image_dtype = tuple(int(d) for d in images.shape[1:]), str(images.dtype)
        return DatasetSpec(path, "d4rl", int(n), "observations", _layout_dim(obs.shape[1], state_layout, path,
                           "observations"), "actions", int(act.shape[1]), image_shape, image_dtype)


def _minari_library_spec(file: Path, state_layout: str | None, dict_keys: Sequence[str] | None,
                         reader: str) -> DatasetSpec:
    """Dims from the dataset's metadata (its spaces), through the minari library: no arrays read."""
    import gymnasium as gym
    from minari.dataset.minari_storage import MinariStorage

    try:
        storage = MinariStorage.read(file.parent)
        obs_space, act_space, steps = storage.observation_space, storage.action_space, int(storage.total_steps)
    except Exception as e:  # noqa: BLE001 - the library's errors name no file
        raise DatasetError(f"{file}: the minari library could not read its metadata ({type(e).__name__}: {e})") from None
    obs_key = "observations"
    if isinstance(obs_space, gym.spaces.Dict):
        keys = list(dict_keys) if dict_keys else sorted(obs_space.spaces)
        missing = [k for k in keys if k not in obs_space.spaces]
        if missing:
            raise DatasetError(f"{file}: key 'observations' is a dict space with keys {sorted(obs_space.spaces)}; "
                               f"expected entries {missing}")
        dim = sum(gym.spaces.flatdim(obs_space.spaces[k]) for k in keys)
        obs_key = _dict_keys_label("episode_0", keys).partition("/")[2]
    else:
        dim = gym.spaces.flatdim(obs_space)
    if not isinstance(act_space, gym.spaces.Box) or len(act_space.shape) != 1:
        raise DatasetError(f"{file}: key 'actions' holds {act_space}, expected a 1-d Box of continuous actions")
    if steps == 0:
        raise DatasetError(f"{file}: the dataset has zero steps; expected data")
    return DatasetSpec(file, "minari", steps, obs_key, _layout_dim(dim, state_layout, file, obs_key), "actions",
                       int(act_space.shape[0]), reader=reader)


def _minari_spec(path, state_layout: str | None, read_images: bool | None,
                 dict_keys: Sequence[str] | None = DEFAULT_DICT_KEYS) -> DatasetSpec:
    file = resolve_minari_file(path)
    if read_images:
        raise DatasetError(f"{file}: image states are read from D4RL-layout files only (key 'images'), not Minari")
    kind, reader = minari_reader(file)
    if kind == "minari":
        return _minari_library_spec(file, state_layout, dict_keys, reader)
    with _open_hdf5(file) as f:
        names = sorted((int(m.group(1)), k) for k in f.keys() if (m := _EPISODE_RE.match(k)))
        if not names:
            raise DatasetError(f"{file}: no 'episode_<i>' groups (keys present: {sorted(f.keys())[:20]}); "
                               "expected a Minari dataset with at least one episode")
        first = None
        steps = 0
        for _, name in names:
            ep = f[name]
            if not isinstance(ep, h5py.Group):
                raise DatasetError(f"{file}: key '{name}' is a dataset, expected an episode group")
            obs_key = f"{name}/observations"
            if "observations" not in ep or isinstance(ep["observations"], h5py.Dataset):
                nodes = [_dataset_node(ep, "observations", file, f"{name}/")]
            else:  # dict observation space (FrankaKitchen-v1: observations/observation)
                group = ep["observations"]
                keys = list(dict_keys) if dict_keys else sorted(group.keys())
                missing = [k for k in keys if k not in group or not isinstance(group[k], h5py.Dataset)]
                if missing:
                    raise DatasetError(f"{file}: key '{obs_key}' is a dict-space group with keys "
                                       f"{sorted(group.keys())}; expected a dataset or dataset entries {missing}")
                nodes = [group[k] for k in keys]
                obs_key = _dict_keys_label(name, keys)
            act_key = f"{name}/actions"
            act = _dataset_node(ep, "actions", file, f"{name}/")
            for node in nodes:
                _check_2d_numeric(node.dtype, node.shape[:1] + (int(np.prod(node.shape[1:])),), file, obs_key)
            _check_2d_numeric(act.dtype, act.shape, file, act_key)
            rows = nodes[0].shape[0]
            if any(n.shape[0] != rows for n in nodes) or rows != act.shape[0] + 1:
                raise DatasetError(f"{file}: length mismatch: key '{obs_key}' has {[n.shape[0] for n in nodes]} rows, "
                                   f"key '{act_key}' has {act.shape[0]}; expected observations = actions + 1")
            dim = sum(int(np.prod(n.shape[1:])) for n in nodes)
            dims = (_layout_dim(dim, state_layout, file, obs_key), int(act.shape[1]))
            if first is None:
                first = (obs_key, act_key, dims)
            elif dims != first[2]:
                raise DatasetError(f"{file}: key '{obs_key}' / '{act_key}' have dims {dims}, but "
                                   f"'{first[0]}' / '{first[1]}' have {first[2]}; expected the same in every episode")
            steps += int(act.shape[0])
        if steps == 0:
            raise DatasetError(f"{file}: all {len(names)} episodes have zero steps in 'actions'; expected data")
        return DatasetSpec(file, "minari", steps, first[0], first[2][0], first[1], first[2][1],
                           reader=minari_reader(file)[1])


def read_dataset_spec(path, fmt: str = "auto", state_layout: str | None = None,
                      read_images: bool | None = None,
                      dict_keys: Sequence[str] | None = DEFAULT_DICT_KEYS) -> DatasetSpec:
    """Shapes and dtypes of a dataset from its hdf5 headers, without reading the arrays (milliseconds).

    Checks what :func:`read_dataset` checks from the headers (keys present,
    2-d numeric observations/actions of matching length, the state layout,
    ``images`` uint8 (N, C, H, W)); values (finiteness) are only checked by
    the full read.

    Args:
        path, fmt: as :func:`read_dataset`.
        state_layout: ``obs_dim`` is reported after this layout (module docstring).
        read_images: ``True`` = ``images`` required, ``None`` = reported when present, ``False`` = ignored.
        dict_keys: Minari dict observations: the entries whose dims add up (None: all).
    Raises:
        DatasetError: as :func:`read_dataset`, naming the file and key.
    """
    path = Path(os.fspath(path))
    if state_layout is not None and state_layout not in STATE_LAYOUTS:
        raise DatasetError(f"{path}: unknown state_layout {state_layout!r}; expected one of {STATE_LAYOUTS} or None")
    if fmt == "auto":
        fmt = _detect_format(path)
    if fmt == "d4rl":
        return _d4rl_spec(path, state_layout, read_images)
    if fmt == "minari":
        return _minari_spec(path, state_layout, read_images, dict_keys)
    raise DatasetError(f"{path}: unknown dataset format {fmt!r}; expected 'auto', 'd4rl' or 'minari'")


# --------------------------------------------------------------------------- dispatch


def _detect_format(path: Path) -> str:
    if not path.exists():
        raise DatasetError(f"{path}: dataset path does not exist")
    if path.is_dir():
        return "minari"
    with _open_hdf5(path) as f:
        if any(_EPISODE_RE.match(k) for k in f.keys()):
            return "minari"
    return "d4rl"


def describe_reader(path, fmt: str = "auto") -> str:
    """``"D4RL hdf5 file, read with h5py"`` or ``"Minari dataset, read with <reader and why>"`` (:func:`minari_reader`).

    Raises:
        DatasetError: the path does not exist or is not a dataset.
    """
    path = Path(os.fspath(path))
    if fmt == "auto":
        fmt = _detect_format(path)
    if fmt == "minari":
        return f"Minari dataset, read with {minari_reader(path)[1]}"
    return "D4RL hdf5 file, read with h5py"


def read_dataset(path, fmt: str = "auto", **kw) -> list[EpisodeData]:
    """Read ``path`` as ``fmt`` in {"auto", "d4rl", "minari"}.

    auto: a directory, or an hdf5 file with ``episode_*`` groups, is Minari; a flat
    hdf5 file is D4RL. ``kw``: obs_dim, act_dim, state_layout, read_images, dict_keys.
    """
    path = Path(os.fspath(path))
    if fmt == "auto":
        fmt = _detect_format(path)
    if fmt == "d4rl":
        return read_d4rl_hdf5(path, **kw)
    if fmt == "minari":
        return read_minari(path, **kw)
    raise DatasetError(f"{path}: unknown dataset format {fmt!r}; expected 'auto', 'd4rl' or 'minari'")
