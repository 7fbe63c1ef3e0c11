"""Parsing of the small strings users type: dataset specs ``name:key=value,...`` and number lists, and the
check of seeds.

Number lists accept ``a,b,c`` and inclusive ranges ``start:stop:step`` (also mixed: ``0:0.5:0.1,0.9``).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

from phasediff.errors import PhasediffError

SEED_LIMIT = 2**32  # seeds are 0 <= seed < 2**32: what every generator used here (NumPy's legacy one too) takes


def check_seed(seed: Any) -> int:
    """``seed`` as an int in [0, 2**32), or one line saying why not (NumPy would refuse it with a traceback)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < SEED_LIMIT:
        raise PhasediffError(f"seed must be an integer in 0..{SEED_LIMIT - 1}, got {seed!r}")
    return int(seed)


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``name:key=value,key=value`` into the name and a dict of raw string values."""
    if not isinstance(spec, str) or not spec.strip():
        raise PhasediffError("empty dataset spec")
    name, _, rest = spec.strip().partition(":")
    if not name:
        raise PhasediffError(f"bad spec {spec!r}: it must start with a name, e.g. grf:L=27,ell=3")
    return name.strip().lower(), parse_params(spec, rest)


def spec_key(spec: str) -> tuple[str, frozenset]:
    """A spec's identity: its name and its values, numbers compared as numbers ('T=3.0' equals 'T=3')."""
    def value(text: str):
        try:
            return float(text)
        except ValueError:
            return text

    name, params = parse_spec(spec)
    return name, frozenset((key, value(v)) for key, v in params.items())


def parse_params(spec: str, text: str) -> dict[str, str]:
    """The raw values of ``key=value,key=value`` (``text``, the part of ``spec`` after the name)."""
    params: dict[str, str] = {}
    if text:
        for item in text.split(","):
            key, eq, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not eq or not key or not value:
                raise PhasediffError(f"bad spec {spec!r}: expected key=value, got {item!r}")
            if key in params:
                raise PhasediffError(f"bad spec {spec!r}: {key!r} given twice")
            params[key] = value
    return params


def take_params(spec: str, params: dict[str, str], schema: dict[str, tuple[Callable[[str], Any], Any]]) -> dict[str, Any]:
    """Convert raw spec values with ``schema = {key: (type, default)}``; ``default=...`` marks a required key."""
    unknown = sorted(set(params) - set(schema))
    if unknown:
        known = ", ".join(schema) or "none"
        raise PhasediffError(f"bad spec {spec!r}: unknown parameter {unknown[0]!r} (known: {known})")
    out: dict[str, Any] = {}
    for key, (kind, default) in schema.items():
        if key not in params:
            if default is ...:
                raise PhasediffError(f"bad spec {spec!r}: parameter {key!r} is required")
            out[key] = default
            continue
        try:
            value = kind(params[key])
        except ValueError:
            raise PhasediffError(f"bad spec {spec!r}: {key}={params[key]!r} is not a valid {kind.__name__}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise PhasediffError(f"bad spec {spec!r}: {key} must be finite")
        out[key] = value
    return out


def parse_list(text: str, kind: Callable[[str], Any] = float, what: str = "list") -> list:
    """Parse ``a,b,c`` and inclusive ``start:stop:step`` items into a list of numbers."""
    if text is None or not str(text).strip():
        raise PhasediffError(f"empty {what}")
    values: list = []
    for item in str(text).split(","):
        item = item.strip()
        try:
            if ":" in item:
                parts = item.split(":")
                if len(parts) not in (2, 3):
                    raise ValueError
                start, stop = kind(parts[0]), kind(parts[1])
                step = kind(parts[2]) if len(parts) == 3 else kind("1")
                if step <= 0 or stop < start:
                    raise PhasediffError(f"bad {what} {text!r}: range {item!r} needs start <= stop and step > 0")
                count = int(math.floor((stop - start) / step + 1e-9)) + 1
                values.extend(kind(_round(start + i * step)) if kind is float else start + i * step for i in range(count))
            else:
                values.append(kind(item))
        except ValueError:
            raise PhasediffError(f"bad {what} {text!r}: cannot read {item!r}") from None
    if kind is float and not all(math.isfinite(v) for v in values):
        raise PhasediffError(f"bad {what} {text!r}: values must be finite")
    return values


def _round(x: float) -> float:
    """Undo floating-point drift in ranges such as 0:1:0.1 (0.30000000000000004 -> 0.3)."""
    return float(f"{x:.12g}")
