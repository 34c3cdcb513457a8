"""Content hash of an offline dataset: its arrays, not its file bytes.

The skill-prior cache key should change when the *data* change and only then.
File bytes also change with how a file was written (gzip level, chunking,
attributes, a Minari ``metadata.json`` with timestamps, an HDF5 writer with
``track_times=True``). :func:`dataset_content_sha256` hashes what the data
*are*: every dataset's path, dtype, shape and raw values, in sorted order.
Attributes (where timestamps and provenance notes live) are not hashed.

Note: the project's own collectors write identical file bytes for identical
arrays (checked: two collections of the same seed hash equal both ways). A
fresh machine's kitchen prior key differing from an older README's came from
different *arrays*: the scripted episodes are simulated, and a different
MuJoCo build (``mujoco>=3.1,<3.12`` resolves to the newest allowed release on
a fresh install) gives different bits from the same seed. The collector's
``.summary.json`` records the simulator versions (``versions``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import h5py
import numpy as np

#: elements per read when hashing a large HDF5 dataset (bounded memory)
_CHUNK_ROWS = 1 << 16


def _hash_hdf5(path: Path, digest) -> None:
    names: list[str] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        for name in sorted(names):
            ds = f[name]
            digest.update(f"{name}|{ds.dtype.str}|{ds.shape}\n".encode())
            if ds.shape == ():
                digest.update(np.asarray(ds[()]).tobytes() if ds.dtype.kind != "O" else repr(ds[()]).encode())
                continue
            for start in range(0, ds.shape[0], _CHUNK_ROWS):
                block = ds[start:start + _CHUNK_ROWS]
                if block.dtype.kind == "O":  # variable-length strings
                    digest.update(repr(block.tolist()).encode())
                else:
                    digest.update(np.ascontiguousarray(block).tobytes())


def dataset_content_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a dataset's arrays (D4RL hdf5 file or Minari dataset directory).

    A directory is hashed as all its ``*.hdf5`` files in sorted relative-path
    order (Minari keeps the episodes in ``data/main_data.hdf5``; its
    ``metadata.json`` holds timestamps and is skipped). Files that are not
    HDF5 are hashed by their bytes.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"dataset not found: {p}")
    digest = hashlib.sha256()
    files = sorted(q for q in p.rglob("*.hdf5")) if p.is_dir() else [p]
    for f in files:
        digest.update(f"{f.relative_to(p) if p.is_dir() else ''}\n".encode())
        if h5py.is_hdf5(f):
            _hash_hdf5(f, digest)
        else:
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()
