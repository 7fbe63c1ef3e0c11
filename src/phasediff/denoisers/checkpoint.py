"""Checkpoints of the project's networks: weights ``X.safetensors`` plus a JSON sidecar ``X.json``.

Sidecar (version 1)::

    {"format": "phasediff-checkpoint", "version": 1,
     "model": <model.config()>,             # rebuilds the architecture through `build`
     "weights": "ema" | "raw",              # which copy the safetensors file holds
     "weights_sha256": <hex digest of X.safetensors>,
     "weights_dtype": "float32" | "bfloat16",  # floating tensors as stored; `load` casts to float32
     ...extra}                              # data, step, metrics: whatever the caller adds

Key convention: the safetensors file holds exactly one state dict, under the model's own keys, the weights
to use for inference: the EMA copy when training keeps one ("weights": "ema"), else the raw weights.
Raw weights next to an EMA, optimiser state and the like belong to the training loop's resume state.
Both files are written atomically, weights first; the digest ties the pair together, so an interrupted
overwrite or a damaged weights file is refused rather than loaded.

The digest covers only the weights: the architecture in the sidecar is checked against `MAX_FIELD` and
`MAX_ELEMENTS` before any network is built, so a damaged or hostile sidecar cannot make `load` allocate
an absurd network.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from phasediff.denoisers.base import build
from phasediff.errors import PhasediffError
from phasediff.rundir import to_json, write_atomic

FORMAT = "phasediff-checkpoint"
VERSION = 1
WEIGHT_KINDS = ("ema", "raw")
_RESERVED = {"format", "version", "model", "weights", "weights_sha256", "weights_dtype"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# Largest value a sidecar's architecture may give each size field (every integer of a list, for image_size
# and mults): generous for images up to 4096 x 4096 pixels and 100,000 classes.
MAX_FIELD = {"channels": 64, "width": 4096, "base": 4096, "num_classes": 100_000, "radius": 256,
             "image_size": 4096, "mults": 64, "res_blocks": 16, "attention_heads": 64, "depth_1x1": 64}
MAX_LIST = 8  # at most this many entries in a list field (image_size has 2, mults one per U-Net level)
MAX_ELEMENTS = 10**8  # parameters plus buffers of the network (400 MB in float32), counted without allocating


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(X.safetensors, X.json) for a path given as X, X.safetensors or X.json."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save(path: str | Path, model: nn.Module, extra: dict[str, Any] | None = None,
         weights: str = "raw", dtype: str = "float32") -> Path:
    """Write the state dict of ``model`` (which has a ``config()``, see `build`) and its sidecar, ``extra``
    merged in; ``weights`` says which copy this is, ``dtype`` how floating tensors are stored (bfloat16
    halves the file; inference under bf16 autocast rounds the weights to bf16 anyway). Returns the weights
    path."""
    extra = dict(extra or {})
    if weights not in WEIGHT_KINDS:
        raise PhasediffError(f"weights must be one of {', '.join(WEIGHT_KINDS)}, got {weights!r}")
    if dtype not in DTYPES:
        raise PhasediffError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if clash := sorted(_RESERVED & extra.keys()):
        raise PhasediffError(f"extra checkpoint fields may not override {', '.join(clash)}")
    weights_path, sidecar_path = checkpoint_paths(path)
    if not weights_path.parent.is_dir():
        raise PhasediffError(f"folder {weights_path.parent} does not exist")
    tensors = {k: (v.to(DTYPES[dtype]) if v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in model.state_dict().items()}
    write_atomic(weights_path, lambda tmp: save_file(tensors, str(tmp)))
    sidecar = {"format": FORMAT, "version": VERSION, "model": model.config(), "weights": weights,
               "weights_sha256": _sha256(weights_path), "weights_dtype": dtype, **extra}
    write_atomic(sidecar_path, lambda tmp: tmp.write_text(to_json(sidecar) + "\n"))
    return weights_path


def read_info(path: str | Path) -> dict[str, Any]:
    """The validated sidecar of a checkpoint (both files must exist)."""
    weights_path, sidecar_path = checkpoint_paths(path)
    for file in (sidecar_path, weights_path):
        if not file.is_file():
            raise PhasediffError(f"checkpoint file {file} not found")
    try:
        info = json.loads(sidecar_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PhasediffError(f"{sidecar_path} is not a phasediff checkpoint (not JSON)") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise PhasediffError(f"{sidecar_path} is not a phasediff checkpoint")
    if info.get("version") != VERSION:
        raise PhasediffError(f"{sidecar_path}: unsupported checkpoint version {info.get('version')!r}")
    if not isinstance(info.get("model"), dict) or not isinstance(info.get("weights_sha256"), str):
        raise PhasediffError(f"{sidecar_path} lacks the model configuration or the weights digest")
    check_model_config(info["model"], sidecar_path)
    return info


def check_model_config(config: dict[str, Any], where: str | Path) -> None:
    """Refuse an architecture beyond the stated limits: a size field above `MAX_FIELD` (or not an integer), or
    a network of more than `MAX_ELEMENTS` parameters and buffers (counted on the meta device: no memory)."""
    for key, limit in MAX_FIELD.items():
        value = config.get(key)
        values = value if isinstance(value, list) and len(value) <= MAX_LIST else [value]
        for v in values:
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= limit):
                raise PhasediffError(f"{where}: model {key}={value!r} is out of bounds (integers 0..{limit})")
    try:
        with torch.device("meta"):
            network = build(config)
    except (ValueError, RuntimeError) as err:  # torch's own refusals, e.g. of a negative size
        raise PhasediffError(f"{where}: bad model configuration ({str(err).splitlines()[0]})") from None
    elements = sum(t.numel() for t in (*network.parameters(), *network.buffers()))
    if elements > MAX_ELEMENTS:
        raise PhasediffError(f"{where}: the model would hold {elements:,} numbers, more than the limit of "
                             f"{MAX_ELEMENTS:,}")


def _check_state(model: nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected.keys() - state.keys()]
    problems += [f"unexpected {k}" for k in state.keys() - expected.keys()]
    problems += [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                 if k in state and state[k].shape != v.shape]
    if problems:
        raise PhasediffError(f"{where} does not fit its architecture ({len(problems)} problems: "
                             f"{'; '.join(sorted(problems)[:3])})")


def load(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The network stored at ``path`` (X, X.safetensors or X.json), weights loaded, in eval mode."""
    weights_path, _ = checkpoint_paths(path)
    info = read_info(path)
    if _sha256(weights_path) != info["weights_sha256"]:
        raise PhasediffError(f"{weights_path} does not match its sidecar (damaged or partly overwritten)")
    model = build(info["model"])
    try:
        state = load_file(str(weights_path))
    except Exception as err:  # safetensors raises its own error types for every kind of damage
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise PhasediffError(f"{weights_path} is not a readable safetensors file: {reason}") from None
    _check_state(model, state, weights_path)
    model.load_state_dict(state)
    return model.to(device).eval()


def update_info(path: str | Path, **fields: Any) -> dict[str, Any]:
    """Add measured fields (e.g. a test accuracy) to a checkpoint's sidecar, atomically; weights untouched."""
    if clash := sorted(_RESERVED & fields.keys()):
        raise PhasediffError(f"checkpoint fields {', '.join(clash)} cannot be updated")
    info = {**read_info(path), **fields}
    _, sidecar_path = checkpoint_paths(path)
    write_atomic(sidecar_path, lambda tmp: tmp.write_text(to_json(info) + "\n"))
    return info


def convert(source: str | Path, destination: str | Path, dtype: str = "bfloat16") -> dict[str, Any]:
    """Copy a checkpoint with its floating weights stored as ``dtype``; the sidecar keeps every other field
    and records the digest of the source weights."""
    info = read_info(source)
    model = load(source)
    extra = {k: v for k, v in info.items() if k not in _RESERVED}
    extra["converted_from_sha256"] = info["weights_sha256"]
    save(destination, model, extra, weights=info.get("weights", "raw"), dtype=dtype)
    return read_info(destination)
