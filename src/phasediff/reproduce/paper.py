"""The numbers the report puts beside ours: the paper's, each with where it is written.

The paper is "Local Diffusion Models and Phases of Data Distributions", arXiv 2508.06614. Only numbers quoted in
this repository are listed (SCIENCE.md section 4 and docs/cmi-study.md, which restate the paper); "about"
marks a value the quote gives approximately. Physics references that are not the paper's (the Ising
correlation length) say so in their source.
"""

from __future__ import annotations

from dataclasses import dataclass

from phasediff.data.ising import exact_correlation_length

PAPER = "arXiv 2508.06614"
SCIENCE_4 = f"{PAPER}, as quoted in SCIENCE.md section 4"
CMI_STUDY = f"{PAPER}, as quoted in docs/cmi-study.md (MNIST, t = 0.3 table)"
ISING_XI = ("exact 2D Ising result xi(T) = 1 / (2 (K* - K)), as quoted in SCIENCE.md section 8 (physics, not the "
            "paper); the phases stage reports what `diagnostics.phases` computes, with how it was found")


@dataclass(frozen=True)
class Reference:
    """One number: the dataset it belongs to, the stage, what it is (``quantity``), where it sits on our grid
    (``at``: e.g. {"t": 0.3, "r": 1}), its value (None when only a text is quoted), how it is written, its
    source."""

    data: str
    stage: str
    quantity: str
    at: dict
    value: float | None
    text: str
    source: str


def _cmi(r: int, value: float, text: str) -> Reference:
    return Reference("mnist", "cmi", f"I_t(A:C|B_r), t = 0.3, r = {r} (nats)", {"t": 0.3, "r": r}, value, text,
                     CMI_STUDY)


def _mi(t: float, value: float, text: str | None = None) -> Reference:
    return Reference("mnist", "cmi", f"I_t(A:BC), t = {t:g} (nats)", {"t": t}, value, text or f"{value:g}",
                     SCIENCE_4)


REFERENCES: tuple[Reference, ...] = (
    # MNIST CMI at the paper's peak t = 0.3: "about 0.17 for r <= 3, 0.14 at r = 6, 0.10 at r = 9, 0.056 at r = 12"
    _cmi(1, 0.17, "about 0.17"), _cmi(2, 0.17, "about 0.17"), _cmi(3, 0.17, "about 0.17"), _cmi(6, 0.14, "0.14"),
    _cmi(9, 0.10, "0.10"), _cmi(12, 0.056, "0.056"),
    # MNIST I(A:BC) = 1.05, 0.85, 0.64, 0.42, 0.25, 0.11, 0.04, ~0 for t = 0 ... 0.7
    _mi(0.0, 1.05), _mi(0.1, 0.85), _mi(0.2, 0.64), _mi(0.3, 0.42), _mi(0.4, 0.25), _mi(0.5, 0.11), _mi(0.6, 0.04),
    _mi(0.7, 0.0, "about 0"),
    Reference("mnist", "cmi", "peak time of the CMI", {"peak": True}, 0.3, "t = 0.3", SCIENCE_4),
    Reference("fashion-mnist", "cmi", "peak of the CMI (nats), at t = 0.3", {"t": 0.3, "r": 1}, 0.20, "about 0.20",
              SCIENCE_4 + " (radius not stated; compared at r = 1)"),
    Reference("fashion-mnist", "cmi", "peak time of the CMI", {"peak": True}, 0.3, "t = 0.3", SCIENCE_4),
    # local recovery: "the 0.03 contour moves from T_f ~ 0.38 (r = 1) to ~0.43 (r >= 6); every radius fails
    # above T_f ~ 0.7" (256 test images, T_f in linspace(0.01, 0.99, 11))
    Reference("mnist", "diagram", "recovery MSE 0.03 threshold T_f, r = 1", {"radius": "1"}, 0.38, "about 0.38",
              SCIENCE_4 + " (dataset not named in the quote)"),
    Reference("mnist", "diagram", "recovery MSE 0.03 threshold T_f, r = 6", {"radius": "6"}, 0.43, "about 0.43",
              SCIENCE_4 + " (r >= 6; dataset not named in the quote)"),
    Reference("mnist", "diagram", "every radius fails above T_f", {"all": True}, 0.7, "about 0.7",
              SCIENCE_4 + " (dataset not named in the quote)"),
    # the hybrid: local r = 3 on [1, 0.5], global on [0.5, 0.2], local on [0.2, 0]; global runs 10 of 33 steps
    Reference("mnist", "hybrid", "global window of the hybrid sampler", {"window": True}, None, "[0.2, 0.5]",
              SCIENCE_4),
    Reference("mnist", "hybrid", "global steps of the hybrid", {"steps": True}, None, "10 of 33",
              SCIENCE_4),
    Reference("mnist", "hybrid", "sample quality of the hybrid", {"quality": True}, None,
              "not measured (image grids only)", SCIENCE_4),
    Reference("fashion-mnist", "hybrid", "global window of the hybrid sampler", {"window": True}, None,
              "[0.2, 0.5]", SCIENCE_4),
    # Ising above T_c: exact correlation length (physics, not the paper)
    *(Reference("ising", "phases", f"correlation length xi at T = {T:g} (sites)", {"T": T}, xi, f"{xi:.2f}",
                ISING_XI) for T, xi in ((T, exact_correlation_length(T)) for T in (2.75, 3.0, 3.5, 4.0, 5.0))),
)


def references(data: str, stage: str) -> list[Reference]:
    """The references of one dataset and stage, in the order above."""
    return [ref for ref in REFERENCES if ref.data == data and ref.stage == stage]
