"""Atomic, locked outputs.

A single file is written under a hidden temporary name beside it (``.NAME.tmp-XXXXXXXX.SUFFIX``) and renamed
into place. A run directory is built as a hidden sibling (``.NAME.partial-XXXXXXXX``) and renamed into place
only when everything in it is finished; with ``force`` an existing one is first renamed aside
(``.NAME.old-XXXXXXXX``), the new one renamed in, then the old one deleted, so that a kill at any moment
leaves the old or the new run whole, never neither.

Every output has a lock, ``.NAME.lock`` beside it (an ``fcntl.flock`` that the kernel releases when its
process dies; the file holds the writer's pid). While holding it, a writer removes the leftovers of killed
writers of the same output (and restores a run that was renamed aside but not replaced). A second writer
of the same output fails at once with one line.

Files and folders get the modes the umask gives (``mkstemp`` / ``mkdtemp`` alone would give 0600 / 0700).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import yaml

from phasediff.errors import PhasediffError


def _read_umask() -> int:
    """The process umask (read once, at import: setting it back at once is the only way to read it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _read_umask()
WRITE_WAIT_S = 10.0  # how long `write_atomic` waits for another process writing the same file (a short write)
LOCK_POLL_S = 0.05  # how often a waiting writer tries the lock again
_held: dict[str, int] = {}  # absolute output path -> how many nested `output_lock` calls of this process hold it


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
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


def _check_parent(path: Path) -> None:
    """The folder that will hold ``path`` must exist and be writable (a rename needs write and search)."""
    parent = path.parent
    if not parent.is_dir():
        raise PhasediffError(f"folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PhasediffError(f"folder {parent} is not writable")


def check_output_file(path: Path, suffixes: tuple[str, ...]) -> Path:
    """Refuse an output file with the wrong suffix, in a missing or unwritable folder, or whose name is taken
    by something other than a regular file (a folder, a device, a pipe)."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise PhasediffError(f"output {path} must end with {' or '.join(suffixes)}")
    _check_parent(path)
    if path.is_dir():
        raise PhasediffError(f"output {path} is a folder")
    if path.exists() and not path.is_file():
        raise PhasediffError(f"output {path} exists and is not a regular file")
    return path


def check_run_dir(path: Path, force: bool = False) -> Path:
    """A run directory may be new or empty; an existing finished one is kept unless ``force``."""
    path = Path(path)
    _check_parent(path)
    if path.exists() and not path.is_dir():
        raise PhasediffError(f"{path} exists and is not a folder")
    try:
        holds_results = path.is_dir() and any(path.iterdir())
    except OSError as err:
        raise PhasediffError(f"cannot read the folder {path} ({err.strerror})") from None
    if holds_results and not force:
        raise PhasediffError(f"{path} already holds results; choose another --out or pass --force")
    return path


def lock_path(path: Path) -> Path:
    """The lock file of an output: ``.NAME.lock`` beside it."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


def _lock_holder(fd: int) -> str:
    """The pid written in a lock file, as text ("unknown" when it cannot be read)."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else "unknown"


def _acquire(path: Path, wait: float) -> int:
    """An open descriptor of the locked ``.NAME.lock`` of ``path``, or one line naming the other writer once
    ``wait`` seconds have passed.

    The lock file is deleted on release, so after locking we check that the name still leads to the file
    we locked (a file deleted between our open and our lock would lock nothing), and retry if not."""
    lock = lock_path(path)
    deadline = time.monotonic() + wait
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise PhasediffError(f"cannot create the lock file {lock} ({err.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            if time.monotonic() >= deadline:
                raise PhasediffError(f"{path} is being written by another phasediff process (pid {holder}); "
                                     "wait or choose another output") from None
            time.sleep(LOCK_POLL_S)
            continue
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)


@contextmanager
def output_lock(path: Path, wait: float = 0.0) -> Iterator[Path]:
    """Hold the lock of the output ``path`` (a file or a run directory; its folder must exist) for the body.

    If another process holds it for more than ``wait`` seconds, a `PhasediffError` names that process. The
    lock is re-entrant within a process; the kernel drops it if the process dies, so a lock file left by a
    killed process is no obstacle. Yields ``path``."""
    path = Path(path)
    key = os.path.abspath(path)
    if key in _held:
        _held[key] += 1
        try:
            yield path
        finally:
            _held[key] -= 1
        return
    fd = _acquire(path, wait)
    _held[key] = 1
    try:
        yield path
    finally:
        del _held[key]
        lock_path(path).unlink(missing_ok=True)  # still ours: deleted before the lock is dropped
        os.close(fd)


def _leftover_pattern(path: Path) -> re.Pattern:
    """Names of the temporary files and folders that writers of ``path`` create beside it."""
    name = re.escape(path.name)
    return re.compile(rf"\.{name}\.(?:(partial|old)-[a-z0-9_]+|tmp-[a-z0-9_]+{re.escape(path.suffix)})")


def _remove(path: Path) -> None:
    """Delete a file or a folder tree, whichever it is."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def clean_leftovers(path: Path) -> None:
    """Remove what killed writers of ``path`` left beside it; call it holding ``output_lock(path)``.

    A run directory renamed aside (``.NAME.old-*``) whose replacement never arrived is renamed back first:
    the old run is restored rather than lost."""
    path = Path(path)
    pattern = _leftover_pattern(path)
    found = {p: m.group(1) for p in path.parent.iterdir() if (m := pattern.fullmatch(p.name))}
    aside = sorted((p for p, kind in found.items() if kind == "old"), key=lambda p: p.lstat().st_mtime)
    if aside and not os.path.lexists(path):
        os.replace(aside[-1], path)
        del found[aside[-1]]
    for leftover in found:
        _remove(leftover)


def _set_mode(path: Path, directory: bool = False) -> None:
    """Give ``path`` the mode a plain open / mkdir would give under the umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~UMASK)


def write_atomic(path: Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp)`` on a temporary file beside ``path`` (same suffix), then rename it to ``path``.

    Holds ``output_lock(path)`` meanwhile (waiting up to WRITE_WAIT_S for another process's write of the same
    file: the last writer wins) and first removes the temporary files of killed writers. On any failure the
    temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    with output_lock(path, wait=WRITE_WAIT_S):
        clean_leftovers(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        try:
            writer(Path(tmp))
            _set_mode(Path(tmp))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def _swap_in(work: Path, path: Path) -> None:
    """Rename ``work`` to ``path``; an existing ``path`` is renamed aside first and deleted last, so a kill in
    between leaves it as ``.NAME.old-*``, which `clean_leftovers` restores."""
    if not os.path.lexists(path):
        os.replace(work, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    os.replace(path, old)  # onto the empty folder that reserved the name
    os.replace(work, path)
    shutil.rmtree(old)


@contextmanager
def run_directory(path: Path, force: bool = False) -> Iterator[Path]:
    """Yield a hidden work folder; on success it replaces ``path``, on failure it is removed.

    The output's lock is held throughout: a second writer of ``path`` fails at once with one line."""
    path = Path(path)
    _check_parent(path)
    with output_lock(path):
        clean_leftovers(path)
        check_run_dir(path, force)
        work = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
        _set_mode(work, directory=True)
        try:
            yield work
            _swap_in(work, path)
        finally:
            if work.exists():
                shutil.rmtree(work)


def save_json(path: Path, obj) -> None:
    """``obj`` as standard JSON (see `to_json`), written atomically."""
    write_atomic(Path(path), lambda tmp: tmp.write_text(to_json(obj) + "\n"))


def save_yaml(path: Path, obj) -> None:
    """``obj`` as YAML (through `to_json`, so NumPy values and paths are converted), written atomically."""
    text = yaml.safe_dump(json.loads(to_json(obj)), sort_keys=False)
    write_atomic(Path(path), lambda tmp: tmp.write_text(text))


def _savez(tmp: Path, arrays: dict) -> None:
    with open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def save_arrays(path: Path, **arrays) -> None:
    """The arrays that are not None as a compressed ``.npz``, written atomically."""
    write_atomic(Path(path), lambda tmp: _savez(tmp, {k: np.asarray(v) for k, v in arrays.items() if v is not None}))
