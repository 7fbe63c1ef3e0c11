"""From a spec string to a `Dataset`.

Specs: ``mnist``, ``fashion-mnist``, ``digits``, ``patches:size=S``, ``grf:L=..,ell=..``,
``gmrf:L=..,kappa=..``, ``gmm2:L=..,mu=..,sigma=..``, ``gmm:data=NAME,k=..,rank=..,by=..``,
``ising:L=..,T=..``, a path to an ``.npz`` file, or a folder of PNG files. Every spec also takes
``crop=S`` (centre crop to S x S) and ``n=N`` (number of images), files too: ``data/x.npz:crop=16,n=100``.

A spec names a file or folder when it holds a slash or ends in ``.npz`` (``./mnist`` is the folder, ``mnist``
the dataset, whatever lies in the working directory). A file is one set of images: it has no test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from phasediff.data.dataset import Dataset
from phasediff.errors import PhasediffError
from phasediff.specs import check_seed, parse_params, parse_spec, take_params

SPLITS = ("train", "test")
DEFAULT_SYNTHETIC_N = 10_000


def _pos_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError
    return value


def _pos_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError
    return value


_pos_int.__name__ = "positive integer"
_pos_float.__name__ = "positive number"
GENERIC_KEYS = {"crop": (_pos_int, None), "n": (_pos_int, None)}


def _grf(p):
    from phasediff.data.fields import ExponentialGRF

    return ExponentialGRF(p["L"], p["ell"])


def _gmrf(p):
    from phasediff.data.fields import NearestNeighbourGMRF

    return NearestNeighbourGMRF(p["L"], p["kappa"])


def _gmm2(p):
    from phasediff.data.gmm2 import TwoComponentMixture

    return TwoComponentMixture(p["L"], p["mu"], p["sigma"])


def _ising(p):
    from phasediff.data.ising import IsingModel

    return IsingModel(p["L"], p["T"])


def _gmm(p):
    from phasediff.data.mixture import fit_mixture

    if p["by"] not in ("class", "kmeans"):
        raise PhasediffError(f"gmm: by must be 'class' or 'kmeans', got {p['by']!r}")
    if p["data"] not in ("mnist", "fashion-mnist", "digits"):
        raise PhasediffError(f"gmm: data must be mnist, fashion-mnist or digits, got {p['data']!r}")
    data = load_dataset(p["data"] if p["crop"] is None else f"{p['data']}:crop={p['crop']}", split="train")
    return fit_mixture(data, k=p["k"], rank=p["rank"], by=p["by"], seed=0)


# name -> (parameter schema, constructor of the exact model)
MODELS: dict[str, tuple[dict[str, tuple[Callable, Any]], Callable]] = {
    "grf": ({"L": (_pos_int, ...), "ell": (_pos_float, ...)}, _grf),
    "gmrf": ({"L": (_pos_int, ...), "kappa": (_pos_float, ...)}, _gmrf),
    "gmm2": ({"L": (_pos_int, ...), "mu": (float, 1.0), "sigma": (_pos_float, 1.0)}, _gmm2),
    "ising": ({"L": (_pos_int, ...), "T": (_pos_float, ...)}, _ising),
    "gmm": (
        {"data": (str, "mnist"), "k": (_pos_int, 10), "rank": (_pos_int, 8), "by": (str, "kmeans"), "crop": (_pos_int, None)},
        _gmm,
    ),
}
NAMED = ("mnist", "fashion-mnist", "digits", "patches")


def known_specs() -> str:
    return ", ".join([*NAMED, *MODELS, "FILE.npz", "PNG folder"])


def _file_spec(spec: str) -> tuple[Path, dict[str, str]] | None:
    """(path, raw parameters) when ``spec`` names a file or folder (it holds a slash or ends in .npz), with
    optional ``:key=value,...`` after the path; None for a dataset or model name."""
    path, colon, rest = spec.rpartition(":")
    if not (colon and "=" in rest and "/" not in rest):
        path, rest = spec, ""
    if "/" not in path and not path.lower().endswith(".npz"):
        return None
    return Path(path), parse_params(spec, rest)


def is_file_spec(spec: str) -> bool:
    """Whether ``spec`` names a user's file or folder (see `_file_spec`) rather than a dataset or model."""
    return isinstance(spec, str) and _file_spec(spec.strip()) is not None


def _first(*counts: int | None) -> int | None:
    """The first count that is given (not None)."""
    return next((c for c in counts if c is not None), None)


def load_model(spec: str):
    """The exact model of a synthetic spec (grf, gmrf, gmm2, gmm, ising); an error for other specs."""
    name, params = parse_spec(spec)
    if name not in MODELS:
        raise PhasediffError(f"{spec!r} has no exact model (models: {', '.join(MODELS)})")
    schema, make = MODELS[name]
    generic = {k: v for k, v in GENERIC_KEYS.items() if k not in schema}
    values = take_params(spec, {k: v for k, v in params.items() if k not in generic}, schema)
    return make(values)


def load_dataset(spec: str, split: str = "train", n: int | None = None, seed: int = 0) -> Dataset:
    """Load the dataset named by ``spec``; ``n`` caps the number of images (synthetic default 10,000), an
    ``n=`` in the spec wins over it."""
    if split not in SPLITS:
        raise PhasediffError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise PhasediffError(f"the number of images must be an integer >= 1, got {n!r}")
    seed = check_seed(seed)
    if not isinstance(spec, str) or not spec.strip():
        raise PhasediffError("empty dataset spec")
    spec = spec.strip()
    file = _file_spec(spec)
    if file is not None:
        return _load_file(spec, *file, split, n)
    name, params = parse_spec(spec)
    if name in MODELS:
        return _load_synthetic(spec, name, params, split, n, seed)
    if name not in NAMED:
        hint = f"; for the file or folder {name!r} here, write ./{name}" if Path(name).exists() else ""
        raise PhasediffError(f"unknown dataset {name!r} (known: {known_specs()}; a file or folder needs a "
                             f"path with a slash or a .npz name){hint}")
    if name == "patches":
        schema = {"size": (_pos_int, 16), **GENERIC_KEYS}
        values = take_params(spec, params, schema)
        from phasediff.data.images import load_patches

        count = _first(values["n"], n, DEFAULT_SYNTHETIC_N)
        rng = np.random.default_rng([seed, SPLITS.index(split)])
        return _finish(Dataset(*load_patches(values["size"], count, rng)), values["crop"], None)
    values = take_params(spec, params, GENERIC_KEYS)
    if name == "digits":
        from phasediff.data.images import load_digits

        data = Dataset(*load_digits(split))
    else:
        from phasediff.data.mnist import load_idx_dataset

        data = Dataset(*load_idx_dataset(name, split))
    return _finish(data, values["crop"], _first(values["n"], n))


def _load_file(spec: str, path: Path, params: dict[str, str], split: str, n: int | None) -> Dataset:
    """A user's .npz file or PNG folder, which is one set of images (no test split)."""
    values = take_params(spec, params, GENERIC_KEYS)
    if split != "train":
        raise PhasediffError(f"{path} is one set of images with no {split} split; give the held-out images "
                             "as a file of their own")
    from phasediff.data.images import load_file

    return _finish(Dataset(*load_file(path)), values["crop"], _first(values["n"], n))


def _load_synthetic(spec: str, name: str, params: dict[str, str], split: str, n: int | None,
                    seed: int) -> Dataset:
    """Draw from the exact model of a synthetic spec; train and test use independent streams of ``seed``."""
    schema = MODELS[name][0]
    generic = take_params(spec, {k: v for k, v in params.items() if k in GENERIC_KEYS and k not in schema},
                          {k: v for k, v in GENERIC_KEYS.items() if k not in schema})
    model = load_model(spec)
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    images, labels = model.sample(_first(generic["n"], n, DEFAULT_SYNTHETIC_N), rng)
    # a model whose own parameters include crop (gmm) has already produced images of that size
    return _finish(Dataset(images, labels, f"{spec} ({model.describe()}; {split} draw, seed {seed})", model),
                   generic.get("crop"), None)


def _finish(data: Dataset, crop: int | None, n: int | None) -> Dataset:
    """The first ``n`` images (all if None), centre-cropped to ``crop`` (none if None)."""
    data = data.subset(n)
    return data if crop is None else data.center_crop(crop)
