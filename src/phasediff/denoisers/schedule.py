"""Schedules: which named model runs at which t, written as text and built into a `Piecewise` denoiser.

    SCHEDULE = PIECE,PIECE,...[,MEMBER]     e.g. "0:0.1=local,0.1:0.8=global,0.8:1=cheap"
    PIECE    = A:B=MEMBER                   MEMBER runs for A <= t <= B (the first piece listed wins at a shared end)
    MEMBER   = NAME                         the model NAME, without the class label
             | NAME*S                       NAME guided by the sample's label with scale S (*1: plainly conditional)

A bare MEMBER at the end runs wherever no piece does; without one the pieces must cover [0, 1]. The hybrid
sampler with global window [0.2, 0.5] is "0.2:0.5=global,local"; the label only inside [0.4, 0.5] with
guidance 3 is "0.4:0.5=g*3,g".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from phasediff.denoisers.compose import Guided, Piecewise, Unconditional, Window, check_windows
from phasediff.errors import PhasediffError

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
SYNTAX = "a schedule looks like 0:0.1=local,0.1:0.8=global,0.8:1=cheap (NAME*S: guided with scale S)"


def _number(value: float) -> str:
    return format(float(value), ".12g")


def parse_member(text: str) -> tuple[str, float | None]:
    """'NAME' -> (NAME, None); 'NAME*S' -> (NAME, S)."""
    name, star, scale = text.strip().partition("*")
    if not NAME.fullmatch(name):
        raise PhasediffError(f"bad model name {name!r} in the schedule ({SYNTAX})")
    if not star:
        return name, None
    try:
        value = float(scale)
    except ValueError:
        raise PhasediffError(f"bad guidance scale {scale!r} in the schedule ({SYNTAX})") from None
    if not math.isfinite(value):
        raise PhasediffError(f"the guidance scale must be a finite number, got {scale!r}")
    return name, value


@dataclass(frozen=True)
class Schedule:
    """Pieces (t_lo, t_hi, member) and the member that runs elsewhere (None: the pieces cover [0, 1])."""

    pieces: tuple[tuple[float, float, str], ...]
    default: str | None = None

    def __post_init__(self):
        windows = check_windows([(lo, hi) for lo, hi, _ in self.pieces], disjoint=False)
        for _, _, member in self.pieces:
            parse_member(member)
        if self.default is None:
            gap = _uncovered(windows)
            if gap is not None:
                raise PhasediffError(f"no model runs at t in [{_number(gap[0])}, {_number(gap[1])}]: cover [0, 1] "
                                     "or end the schedule with the model that runs elsewhere (e.g. ',local')")
        else:
            parse_member(self.default)

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """The schedule written as text (see the module's docstring)."""
        parts = [part.strip() for part in str(text).split(",")]
        if not parts or any(not part for part in parts):
            raise PhasediffError(f"empty piece in the schedule {text!r} ({SYNTAX})")
        pieces, default = [], None
        for i, part in enumerate(parts):
            window, equals, member = part.partition("=")
            if not equals:
                if i != len(parts) - 1:
                    raise PhasediffError(f"only the last entry may be a bare model name, got {part!r} ({SYNTAX})")
                default = part
                continue
            try:
                lo, hi = (float(b) for b in window.split(":"))
            except ValueError:  # not two numbers
                raise PhasediffError(f"bad piece {part!r} ({SYNTAX})") from None
            pieces.append((lo, hi, member.strip()))
        return cls(tuple(pieces), default)

    @classmethod
    def hybrid(cls, windows: Sequence[Sequence[float]], inside: str = "global", outside: str = "local") -> Schedule:
        """``inside`` for t in the windows, ``outside`` elsewhere."""
        return cls(tuple((lo, hi, inside) for lo, hi in check_windows(windows)), outside)

    def text(self) -> str:
        """The schedule in its written form (`Schedule.parse` reads it back)."""
        parts = [f"{_number(lo)}:{_number(hi)}={member}" for lo, hi, member in self.pieces]
        return ",".join(parts + ([self.default] if self.default else []))

    def members(self) -> list[str]:
        """Every member, once, in order of appearance (the default last)."""
        listed = [member for _, _, member in self.pieces] + ([self.default] if self.default else [])
        return list(dict.fromkeys(listed))

    def models(self) -> list[str]:
        """The model names the schedule uses."""
        return list(dict.fromkeys(parse_member(member)[0] for member in self.members()))

    def member_at(self, t: float) -> str:
        """The member that runs at time t."""
        for lo, hi, member in self.pieces:
            if lo <= t <= hi:
                return member
        return self.default

    def steps(self, times: Sequence[float]) -> dict[str, int]:
        """How many of the evaluation times each member runs at."""
        counts = dict.fromkeys(self.members(), 0)
        for t in times:
            counts[self.member_at(t)] += 1
        return counts

    def windows(self, member: str) -> list[Window]:
        """The pieces of one member."""
        return [(lo, hi) for lo, hi, m in self.pieces if m == member]

    def build(self, models: Mapping[str, object]) -> Piecewise:
        """The `Piecewise` denoiser of the named models; its ``evaluations`` are counted per member."""
        missing = [name for name in self.models() if name not in models]
        if missing:
            raise PhasediffError(f"the schedule uses {', '.join(missing)}, but the models are "
                                 f"{', '.join(models) or 'none'} (name them with --model NAME=PATH)")
        members = {member: build_member(member, models) for member in self.members()}
        pieces = [(lo, hi, members[member]) for lo, hi, member in self.pieces]
        default = members[self.default] if self.default else pieces[-1][2]
        return Piecewise(pieces, default, names=members)


def build_member(member: str, models: Mapping[str, object]):
    """NAME -> Unconditional(model); NAME*1 -> the model (it takes the label); NAME*S -> Guided(model, S)."""
    name, scale = parse_member(member)
    model = models[name]
    if scale is None:
        return Unconditional(model)
    if getattr(model, "num_classes", None) is None:
        raise PhasediffError(f"{member}: guidance needs a class-conditional model, and {name} is not one")
    return model if scale == 1.0 else Guided(model, scale)


def _uncovered(windows: Sequence[Window]) -> Window | None:
    """The first stretch of [0, 1] that no window covers, None if they cover it all."""
    reach = 0.0
    for lo, hi in sorted(windows):
        if lo > reach:
            return reach, lo
        reach = max(reach, hi)
    return None if reach >= 1.0 else (reach, 1.0)


def parse_windows(text: str) -> list[Window]:
    """'A:B' or 'A:B,C:D' -> [(A, B), (C, D)]; 'none' -> [] (all local); 'all' -> [(0, 1)] (all global)."""
    text = text.strip().lower()
    if text == "none":
        return []
    if text == "all":
        return [(0.0, 1.0)]
    try:
        windows = [tuple(float(v) for v in part.split(":")) for part in text.split(",")]
    except ValueError:
        raise PhasediffError(f"--window must look like 0.2:0.5 (or auto, all, none), got {text!r}") from None
    if any(len(w) != 2 for w in windows):
        raise PhasediffError(f"--window must look like 0.2:0.5 (or auto, all, none), got {text!r}")
    return check_windows(windows)
