"""The conditioning window: the label only inside [a, a + w] decides the class only when the window holds the
time at which the class is decided."""

import numpy as np
import pytest
import torch
from torch import nn

from phasediff.diagnostics.conditioning import conditioning_schedule, conditioning_window
from phasediff.errors import PhasediffError

PATTERNS = torch.eye(4).reshape(4, 1, 2, 2) * 4.0  # class y: pixel y set


class DecidesAt(nn.Module):
    """A conditional denoiser whose label acts only for |t - t_star| <= 0.05 (it pulls x towards the class's
    pattern); elsewhere, and without a label, x0_hat = x_t, so the Euler state does not move."""

    num_classes = 4

    def __init__(self, t_star: float):
        super().__init__()
        self.t_star = t_star

    def forward(self, x, t, label=None):
        if label is None:
            return x
        acting = ((t - self.t_star).abs() <= 0.05).to(x.dtype)[:, None, None, None]
        return acting * PATTERNS[label] * 10 + (1 - acting) * x


def classify(images):
    return (images.flatten(1) @ PATTERNS.flatten(1).T).argmax(1).numpy()


@pytest.mark.parametrize("t_star", [0.3, 0.7])
def test_only_windows_that_hold_the_decision_carry_the_label(t_star):
    result = conditioning_window(DecidesAt(t_star), classify, 4, (1, 2, 2), widths=[0.2], window_step=0.1,
                                 guidance=1.0, samples=200, steps=50, resamples=200)
    entry = result.entries["w=0.2"]
    accuracy, centres = np.asarray(entry["accuracy"]), np.asarray(entry["centres"])
    holds = np.abs(centres - t_star) < 0.1 - 1e-9  # the window [c - 0.1, c + 0.1] holds t_star's acting steps
    assert np.all(accuracy[holds] > 0.95) and np.all(accuracy[~np.isclose(np.abs(centres - t_star), 0.1) & ~holds] < 0.5)
    assert entry["label_everywhere"]["accuracy"] > 0.95 and 0.15 < entry["label_nowhere"]["accuracy"] < 0.35
    (measure,) = result.measures
    assert measure.kind == "sb" and abs(measure.t - t_star) < 0.03
    assert measure.low <= measure.t <= measure.high and measure.high - measure.low < 0.1


def test_schedules_and_refusals():
    assert conditioning_schedule(0.3, 0.2, 3.0) == "0.3:0.5=cond*3,cond"
    assert conditioning_schedule(0.9, 0.2, 3.0) == "0.9:1=cond*3,cond"
    assert conditioning_schedule(None, 0.2, 2.5) == "cond*2.5"
    with pytest.raises(PhasediffError, match="class-conditional"):
        conditioning_window(lambda x, t, label=None: x, classify, 4, (1, 2, 2))
    with pytest.raises(PhasediffError, match="10"):
        conditioning_window(DecidesAt(0.5), classify, 10, (1, 2, 2))
    with pytest.raises(PhasediffError, match="one sample per class"):
        conditioning_window(DecidesAt(0.5), classify, 4, (1, 2, 2), samples=3)
