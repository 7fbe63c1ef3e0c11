"""Atomic outputs: single files are written under a temporary name and renamed; a run directory is
built as a hidden sibling and renamed into place only when everything in it is finished."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import yaml

from phasediff.errors import PhasediffError


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _json_safe(value):
    """Infinite floats become the strings "inf" / "-inf" and NaN becomes null, so the JSON stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def to_json(obj, indent: int | None = 2) -> str:
    """Standard JSON (no NaN or Infinity literals); NumPy values and paths are converted."""
    return json.dumps(_json_safe(json.loads(json.dumps(obj, default=_json_default))), indent=indent,
                      allow_nan=False)


def check_output_file(path: Path, suffixes: tuple[str, ...]) -> Path:
    """Refuse an output path with the wrong suffix or in a folder that does not exist."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise PhasediffError(f"output {path} must end with {' or '.join(suffixes)}")
    if not path.parent.exists():
        raise PhasediffError(f"folder {path.parent} does not exist")
    if path.is_dir():
        raise PhasediffError(f"output {path} is a folder")
    return path


def write_atomic(path: Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        writer(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_run_dir(path: Path, force: bool = False) -> Path:
    """A run directory may be new or empty; an existing finished one is kept unless ``force``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PhasediffError(f"{path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise PhasediffError(f"{path} already holds results; choose another --out or pass --force")
    if not path.parent.exists():
        raise PhasediffError(f"folder {path.parent} does not exist")
    return path


@contextmanager
def run_directory(path: Path, force: bool = False) -> Iterator[Path]:
    """Yield a hidden work folder; on success it replaces ``path``, on failure it is removed."""
    path = check_run_dir(path, force)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield work
        if path.exists():
            shutil.rmtree(path)
        os.replace(work, path)
    finally:
        if work.exists():
            shutil.rmtree(work)


def save_json(path: Path, obj) -> None:
    Path(path).write_text(to_json(obj) + "\n")


def save_yaml(path: Path, obj) -> None:
    Path(path).write_text(yaml.safe_dump(json.loads(to_json(obj)), sort_keys=False))


def save_arrays(path: Path, **arrays) -> None:
    np.savez_compressed(path, **{k: np.asarray(v) for k, v in arrays.items() if v is not None})
