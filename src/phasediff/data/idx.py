"""The IDX format of MNIST and Fashion-MNIST: a big-endian header (magic ``0x0000 08 D``: unsigned bytes,
D dimensions; then D int32 sizes) followed by the raw uint8 values. Files may be gzip-compressed."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from phasediff.errors import PhasediffError
from phasediff.rundir import write_atomic

UBYTE = 0x08
GZIP_MAGIC = b"\x1f\x8b"


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array (1 to 255 dimensions)."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or not 1 <= array.ndim <= 255:
        raise PhasediffError(f"IDX needs a uint8 array of 1 to 255 dimensions, got {array.dtype} {array.shape}")
    header = bytes([0, 0, UBYTE, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    return header + np.ascontiguousarray(array).tobytes()


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an IDX file atomically (temporary name, then rename); gzip-compressed if the name ends in .gz."""
    path = Path(path)
    data = idx_bytes(array)
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: tmp.write_bytes(data))


def read_idx_bytes(path: Path) -> bytes:
    """The decompressed IDX content of a file (gzip detected by its magic bytes)."""
    try:
        data = Path(path).read_bytes()
        return gzip.decompress(data) if data[:2] == GZIP_MAGIC else data
    except FileNotFoundError:
        raise PhasediffError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as e:
        raise PhasediffError(f"{path}: unreadable or truncated gzip file ({e})") from None


def parse_idx(data: bytes, source: str) -> np.ndarray:
    """Decode IDX bytes into a read-only uint8 array, checking the magic number and the size."""
    if len(data) < 4 or data[:3] != bytes([0, 0, UBYTE]) or data[3] == 0:
        raise PhasediffError(f"{source}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    start = 4 + 4 * ndim
    if len(data) < start:
        raise PhasediffError(f"{source}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    expected = start + int(np.prod(shape, dtype=np.int64))
    if min(shape) < 0 or len(data) != expected:
        raise PhasediffError(f"{source}: IDX size mismatch: header {shape} needs {expected} bytes, got {len(data)}")
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(shape)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a read-only uint8 array."""
    return parse_idx(read_idx_bytes(path), str(path))
