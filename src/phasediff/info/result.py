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

    def to_dict(self) -> dict:
        out = asdict(self)
        out["cmi"] = np.asarray(self.cmi).tolist()
        out["stderr"] = None if self.stderr is None else np.asarray(self.stderr).tolist()
        out["site"] = list(self.site)
        return out
