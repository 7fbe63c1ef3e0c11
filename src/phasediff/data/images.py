"""Small image sources that need no download: scikit-learn's 8 x 8 digits, random crops of the natural
photographs that ship with scikit-image, and user files (an ``.npz`` or a folder of PNG files)."""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path

import numpy as np

from phasediff.errors import PhasediffError

DIGITS_TRAIN = 1500  # digits: train = the first 1,500 of the 1,797 images, test = the last 297
# Natural photographs bundled inside scikit-image (no network needed), converted to grayscale.
GRAY_MODES = ("1", "L", "LA")  # PNG modes read as one channel; other 8-bit modes become RGB
WIDE_MODES = ("I", "I;16", "I;16B", "F")
# A file's images are in [0, 1] (uint8: 0..255, divided by 255), or real-valued fields of order 1 (synthetic
# data written by `phasediff data export`): values beyond +-PIXEL_LIMIT are damage or a wrong scale, refused.
PIXEL_LIMIT = 1000.0
PHOTOS = ("astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel", "moon", "rocket")


def load_digits(split: str) -> tuple[np.ndarray, np.ndarray, str]:
    """scikit-learn's 8 x 8 digits as float32 (N, 1, 8, 8) in [0, 1] (pixel values 0..16 divided by 16).

    The split is fixed: train is the first 1,500 images in the file's order, test the remaining 297.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    if split not in ("train", "test"):
        raise PhasediffError(f"split must be train or test, got {split!r}")
    data = sklearn_digits()
    part = slice(0, DIGITS_TRAIN) if split == "train" else slice(DIGITS_TRAIN, None)
    images = (data.images[part] / 16.0).astype(np.float32)[:, None]
    labels = data.target[part].astype(np.int64)
    where = "first 1500" if split == "train" else f"last {len(images)}"
    return images, labels, f"digits {split} (scikit-learn 8x8 digits, {where} of {len(data.images)})"


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """The bundled photographs as read-only float32 grayscale arrays in [0, 1]."""
    import skimage.data
    from skimage.color import rgb2gray
    from skimage.util import img_as_float

    photos = []
    for name in PHOTOS:
        image = getattr(skimage.data, name)()
        gray = rgb2gray(image[..., :3]) if image.ndim == 3 else img_as_float(image)
        gray = np.clip(gray, 0.0, 1.0).astype(np.float32)
        gray.flags.writeable = False
        photos.append(gray)
    return tuple(photos)


def load_patches(size: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, None, str]:
    """n random size x size grayscale crops, float32 (n, 1, size, size) in [0, 1].

    Each crop picks a photograph uniformly, then a top-left corner uniformly among the positions that fit.
    """
    photos = _photos()
    smallest = min(min(p.shape) for p in photos)
    if not 1 <= size <= smallest:
        raise PhasediffError(f"patches: size must be in 1..{smallest} (the smallest bundled photograph), got {size}")
    if n < 1:
        raise PhasediffError(f"patches: n must be >= 1, got {n}")
    which = rng.integers(len(photos), size=n)
    out = np.empty((n, 1, size, size), dtype=np.float32)
    for k, photo in enumerate(photos):
        index = np.flatnonzero(which == k)
        tops = rng.integers(photo.shape[0] - size + 1, size=len(index))
        lefts = rng.integers(photo.shape[1] - size + 1, size=len(index))
        for i, top, left in zip(index, tops, lefts):
            out[i, 0] = photo[top : top + size, left : left + size]
    return out, None, f"patches {size}x{size} (random crops of scikit-image photographs: {', '.join(PHOTOS)})"


def load_file(path: Path) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Images (and labels) from an ``.npz`` file or a folder of PNG files; validation of values is the Dataset's."""
    path = Path(path)
    if not path.exists():
        raise PhasediffError(f"{path}: no such file or folder")
    if path.is_dir():
        return _load_png_folder(path)
    return _load_npz(path)


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``images`` ((N, H, W) or (N, C, H, W)) and optional ``labels`` from an npz, without unpickling."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise PhasediffError(f"{path}: not a readable .npz file ({e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise PhasediffError(f"{path}: not an .npz archive (a single .npy array?)")
    with archive:
        if "images" not in archive.files:
            raise PhasediffError(f"{path}: no 'images' array (keys: {', '.join(archive.files) or 'none'})")
        try:
            images = archive["images"]
            labels = archive["labels"] if "labels" in archive.files else None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise PhasediffError(f"{path}: unreadable array in the .npz file ({e})") from None
    for name, array, kinds in (("images", images, "biuf"), ("labels", labels, "iuf")):
        if array is not None and array.dtype.kind not in kinds:
            raise PhasediffError(f"{path}: {name} must be a numeric array, got dtype {array.dtype}")
    if images.ndim not in (3, 4):
        raise PhasediffError(f"{path}: images must have shape (N, H, W) or (N, C, H, W), got {images.shape}")
    _check_pixel_range(images, path)
    return images, labels, f"{path} ({len(images)} images from npz)"


def _check_pixel_range(images: np.ndarray, path: Path) -> None:
    """uint8 (divided by 255 later) and bool images are in range by type; other values must be finite and lie
    within +-PIXEL_LIMIT."""
    if images.dtype in (np.uint8, np.bool_) or images.size == 0:
        return
    low, high = images.min(), images.max()
    if not (np.isfinite(low) and np.isfinite(high)):
        raise PhasediffError(f"{path}: images contain NaN or infinite values")
    if max(-low, high) > PIXEL_LIMIT:
        raise PhasediffError(f"{path}: pixel values {low:g}..{high:g} are far outside [0, 1] (beyond "
                             f"+-{PIXEL_LIMIT:g}); store uint8 0..255 or floats in [0, 1]")


def _load_png_folder(folder: Path) -> tuple[np.ndarray, None, str]:
    """All ``*.png`` in a folder, sorted by name, as uint8 (N, H, W) if all grayscale, else (N, 3, H, W)."""
    from PIL import Image

    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not paths:
        raise PhasediffError(f"{folder}: no PNG files in this folder")
    images = []
    try:
        for p in paths:
            with Image.open(p) as image:
                image.load()
                images.append(image.copy())
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise PhasediffError(f"{p}: unreadable PNG ({e})") from None
    sizes = {image.size for image in images}
    if len(sizes) > 1:
        raise PhasediffError(f"{folder}: PNG files differ in size ({', '.join(f'{w}x{h}' for w, h in sorted(sizes))})")
    if any(image.mode in WIDE_MODES for image in images):
        raise PhasediffError(f"{folder}: only 8-bit PNG files are supported (found 16-bit or float images)")
    gray = all(image.mode in GRAY_MODES for image in images)
    mode = "L" if gray else "RGB"
    arrays = np.stack([np.asarray(image.convert(mode), dtype=np.uint8) for image in images])
    if not gray:
        arrays = arrays.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(arrays), None, f"{folder} ({len(paths)} PNG files, {mode})"
