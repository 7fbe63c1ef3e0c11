"""The result of a CMI run: plain data that serialises to JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class CMIResult:
    """I_t(A:C|B_r) in nats on a (t, r) grid, with standard errors (None where the value is exact)."""

    t: list[float]
    r: list[int]
    cmi: np.ndarray
    stderr: np.ndarray | None
    estimator: str
    dataset: str
    site: tuple[int, int]
    patch: int
    region_sizes: list[dict[str, int]]
    seconds: float
    details: dict = field(default_factory=dict)
    analysis: dict = field(default_factory=dict)

    @property
    def lower_bound(self) -> np.ndarray:
        """(T, R) whether each estimate is a lower bound (the neural estimator's ``lower_bound``; False elsewhere)."""
        flags = self.details.get("lower_bound")
        return np.zeros(np.shape(self.cmi), bool) if flags is None else np.asarray(flags, bool)

    def analyse(self, delta: float = 0.005, seed: int = 0) -> dict:
        """Fill ``analysis`` with the Markov lengths, peak time and window (see `phasediff.info.markov`)."""
        from phasediff.info.markov import summarise

        self.analysis = summarise(self.t, self.r, self.cmi, self.stderr, delta=delta, seed=seed)
        return self.analysis

    def to_dict(self) -> dict:
        out = asdict(self)
        out["cmi"] = np.asarray(self.cmi).tolist()
        out["stderr"] = None if self.stderr is None else np.asarray(self.stderr).tolist()
        out["site"] = list(self.site)
        return out
