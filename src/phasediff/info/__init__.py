"""Information along the diffusion path: the CMI I_t(A:C|B_r) and its estimators."""

from phasediff.info.cmi import ESTIMATORS, measure_cmi
from phasediff.info.result import CMIResult

__all__ = ["ESTIMATORS", "CMIResult", "measure_cmi"]
