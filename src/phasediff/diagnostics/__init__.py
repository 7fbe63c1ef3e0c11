"""Diagnostics of where a diffusion model needs global context.

- `recovery`: the paper's local recovery diagram, MSE over (T_f, r) with intervals and its threshold contour;
- `gap`: the locality gap Delta(t, r) between local and global denoisers, on the forward process and along
  sampled trajectories, and the time window in which it exceeds a tolerance.
"""

from __future__ import annotations

from phasediff.diagnostics.gap import LocalityGap, forward_gap, trajectory_gap
from phasediff.diagnostics.recovery import Crossing, RecoveryDiagram, recovery_diagram

__all__ = ["Crossing", "LocalityGap", "RecoveryDiagram", "forward_gap", "recovery_diagram", "trajectory_gap"]
