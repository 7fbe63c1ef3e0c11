"""User files (.npz and PNG folders), scikit-learn digits and scikit-image patches."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from phasediff.data.images import load_digits, load_file, load_patches
from phasediff.data.registry import load_dataset
from phasediff.errors import PhasediffError


def _uint8(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def test_npz_uint8_nhw_is_divided_by_255(tmp_path):
    images = _uint8((5, 6, 7))
    path = tmp_path / "data.npz"
    np.savez(path, images=images)
    data = load_dataset(str(path))
    assert data.images.shape == (5, 1, 6, 7) and data.images.dtype == np.float32
    np.testing.assert_array_equal(data.images[:, 0], images.astype(np.float32) / np.float32(255))
    assert data.labels is None and str(path) in data.source


def test_npz_float_nchw_with_labels(tmp_path):
    images = np.random.default_rng(1).random((4, 3, 5, 5))
    labels = np.array([0, 1, 1, 2])
    path = tmp_path / "data.npz"
    np.savez(path, images=images, labels=labels)
    data = load_dataset(str(path))
    assert data.images.shape == (4, 3, 5, 5)
    np.testing.assert_allclose(data.images, images.astype(np.float32))
    np.testing.assert_array_equal(data.labels, labels)


def test_npz_n_caps_count(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, images=_uint8((6, 4, 4)))
    assert len(load_dataset(str(path), n=2)) == 2


def test_png_folder_gray_round_trip(tmp_path):
    images = _uint8((3, 9, 8))
    for i, image in enumerate(images[::-1]):  # names sort in reverse write order
        Image.fromarray(image, mode="L").save(tmp_path / f"img_{2 - i:02d}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    raw, labels, _ = load_file(tmp_path)
    np.testing.assert_array_equal(raw, images)
    assert labels is None
    data = load_dataset(str(tmp_path))
    assert data.images.shape == (3, 1, 9, 8)
    np.testing.assert_array_equal(data.images[:, 0], images.astype(np.float32) / np.float32(255))


def test_png_folder_rgb_round_trip(tmp_path):
    images = _uint8((2, 5, 6, 3))
    for i, image in enumerate(images):
        Image.fromarray(image, mode="RGB").save(tmp_path / f"{i}.png")
    raw, _, _ = load_file(tmp_path)
    np.testing.assert_array_equal(raw, images.transpose(0, 3, 1, 2))
    assert load_dataset(str(tmp_path)).images.shape == (2, 3, 5, 6)


def _bad_npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.npz", "no such file"),
        (lambda d: _write(d / "junk.npz", b"this is not a zip"), "not a readable .npz"),
        (lambda d: _save_npy(d / "array.npz"), "not an .npz archive"),
        (lambda d: _bad_npz(d, pixels=np.zeros((2, 3, 3))), "no 'images'"),
        (lambda d: _bad_npz(d, images=np.zeros((2, 3))), "shape"),
        (lambda d: _bad_npz(d, images=np.zeros((1, 1, 2, 3, 3))), "shape"),
        (lambda d: _bad_npz(d, images=np.array([[[np.nan]]])), "NaN"),
        (lambda d: _bad_npz(d, images=np.array([[[np.inf]]])), "NaN or infinite"),
        (lambda d: _bad_npz(d, images=np.zeros((2, 3, 3)), labels=np.zeros(3)), "labels"),
        (lambda d: _bad_npz(d, images=np.zeros((2, 3, 3)), labels=np.array([0.5, 1.0])), "labels"),
        (lambda d: _bad_npz(d, images=np.array([[["a"]]])), "numeric"),
        (lambda d: _mkdir(d / "empty"), "no PNG"),
        (lambda d: _pngs(d, [(4, 4), (4, 5)]), "differ in size"),
        (lambda d: _write(_mkdir(d / "broken") / "a.png", b"\x89PNG garbage").parent, "unreadable PNG"),
    ],
)
def test_bad_inputs_raise_one_line(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(PhasediffError, match=message) as info:
        load_dataset(str(path))
    assert "\n" not in str(info.value)


def test_object_array_is_not_unpickled(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, images=np.array([object()], dtype=object))
    with pytest.raises(PhasediffError, match="unreadable array"):
        load_file(path)


def _write(path, data):
    path.write_bytes(data)
    return path


def _save_npy(path):
    with open(path, "wb") as f:
        np.save(f, np.zeros((2, 3, 3)))
    return path


def _mkdir(path):
    path.mkdir()
    return path


def _pngs(root, sizes):
    folder = _mkdir(root / "pngs")
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(np.zeros((h, w), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_digits_split_and_range():
    train, test = load_digits("train"), load_digits("test")
    assert train[0].shape == (1500, 1, 8, 8) and test[0].shape == (297, 1, 8, 8)
    assert train[0].dtype == np.float32 and train[0].min() == 0 and train[0].max() == 1
    assert set(np.unique(train[1])) == set(range(10))
    data = load_dataset("digits", split="test")
    assert len(data) == 297 and data.labels is not None


def test_patches_shape_range_and_seed():
    a, labels, source = load_patches(16, 50, np.random.default_rng(3))
    b, _, _ = load_patches(16, 50, np.random.default_rng(3))
    assert a.shape == (50, 1, 16, 16) and a.dtype == np.float32 and labels is None
    assert 0 <= a.min() and a.max() <= 1 and a.std() > 0.01
    np.testing.assert_array_equal(a, b)
    assert "camera" in source
    data = load_dataset("patches:size=8", n=20, seed=1)
    assert data.images.shape == (20, 1, 8, 8)


def test_patches_too_large_is_an_error():
    with pytest.raises(PhasediffError, match="size must be"):
        load_patches(10_000, 2, np.random.default_rng(0))
