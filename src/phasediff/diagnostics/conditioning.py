"""The conditioning window: when does the class label decide the class of a sample?

A class-conditional network generates from pure noise with the label y only inside [a, a + w] (classifier-free
guidance of scale S there, the null label elsewhere: the schedule "a:a+w=cond*S,cond", `denoisers.schedule`),
for window starts a on a grid; each sample is correct when the judge classifies it as y. A label given after the
class is decided (a near 0) cannot change it, one given before it (a + w near 1) is forgotten by the time the
class is decided; the windows that work bracket the symmetry-breaking time. Its estimate t_cond is the midpoint of
the span of window centres whose accuracy exceeds halfway between the worst and the best window
(`concurrence.window_span`, the rule of the sliding global window), with a bootstrap interval over the samples;
every window starts from the same noise and the same labels (y_i = i mod classes), so the windows are paired.
The ceiling is the label at every t ("cond*S"), the floor the label nowhere ("cond": chance, 1 / classes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from phasediff.diagnostics.concurrence import (
    ARCHITECTURES,
    MIN_ACCURACY,
    Measure,
    at_edge,
    checkpoint_info,
    image_weights,
    percentile_interval,
    window_starts,
    window_summary,
)
from phasediff.errors import PhasediffError
from phasediff.progress import progress
from phasediff.sampling import sample
from phasediff.stats import wilson_interval

DEFAULT_GUIDANCE = 3.0
DEFAULT_CONDITIONING_WIDTH = 0.2


def conditioning_schedule(start: float | None, width: float, guidance: float) -> str:
    """"a:a+w=cond*S,cond" (the window cut at t = 1); start None: the label at every t ("cond*S")."""
    if start is None:
        return f"cond*{guidance:g}"
    hi = min(1.0, round(start + width, 10))
    return f"{start:.10g}:{hi:.10g}=cond*{guidance:g},cond"


def _correct(model, classify: Callable, labels: torch.Tensor, schedule: str, shape, steps: int, seed: int,
             batch_size: int, device: str) -> np.ndarray:
    """Whether each sample of ``schedule`` (one per label, from seeded noise) is judged to be of its label."""
    from phasediff.denoisers.schedule import Schedule

    denoiser = Schedule.parse(schedule).build({"cond": model})
    images = sample(denoiser, len(labels), tuple(shape), steps=steps, seed=seed, label=labels,
                    batch_size=batch_size, device=device).cpu()
    return np.asarray(classify(images)) == labels.numpy()


def _rate(correct: np.ndarray) -> dict:
    """Accuracy with its Wilson 95% interval."""
    k, n = int(correct.sum()), len(correct)
    low, high = wilson_interval(np.array([k]), n)
    return {"accuracy": k / n, "low": float(low[0]), "high": float(high[0])}


@dataclass
class ConditioningWindow:
    """Accuracy per window for each width (``entries``, keyed "w=W"), the t_cond of each width (``measures``,
    kind "sb") and the settings."""

    entries: dict
    measures: list[Measure]
    settings: dict


def conditioning_window(model, classify: Callable, classes: int, shape: Sequence[int],
                        widths: Sequence[float] = (DEFAULT_CONDITIONING_WIDTH,), window_step: float = 0.1,
                        guidance: float = DEFAULT_GUIDANCE, samples: int = 1000, steps: int = 64, seed: int = 0,
                        batch_size: int = 500, device: str = "cpu", resamples: int = 1000) -> ConditioningWindow:
    """The conditioning-window test (see the module's docstring) of the class-conditional ``model``: Euler,
    ``steps`` from t = 1; ``classify(images) -> classes`` is the judge. The model must live on ``device``."""
    if getattr(model, "num_classes", None) is None:
        raise PhasediffError("the conditioning window needs a class-conditional network")
    if model.num_classes != classes:
        raise PhasediffError(f"the conditional network has {model.num_classes} classes, the judge {classes}")
    if samples < classes:
        raise PhasediffError(f"need at least one sample per class: samples >= {classes}, got {samples}")
    labels = torch.arange(samples) % classes
    judged = lambda schedule: _correct(model, classify, labels, schedule, shape, steps, seed, batch_size, device)
    ceiling, floor = _rate(judged(conditioning_schedule(None, 1.0, guidance))), _rate(judged("cond"))
    weights = image_weights(samples, seed, resamples, stream=13)
    entries, measures = {}, []
    for w in widths:
        starts = window_starts(w, window_step)
        correct = np.stack([judged(conditioning_schedule(a, w, guidance))
                            for a in progress(starts, desc=f"conditioning window (w = {w:g})")])
        summary, centre_draws = window_summary(starts, w, correct, weights)
        value = summary.pop("midpoint")
        entries[f"w={w:g}"] = {**summary, "t_cond": value, "label_everywhere": ceiling, "label_nowhere": floor}
        lo, hi = percentile_interval(centre_draws)
        measures.append(Measure("sb", f"conditioning window centre, w = {w:g}", value, lo, hi,
                                "midpoint of the span of label-window centres with class accuracy above halfway "
                                f"between the worst and the best window (best >= {MIN_ACCURACY:g}), bootstrap over "
                                "samples", None, None, at_edge(summary["span"], np.asarray(summary["centres"])),
                                centre_draws))
    settings = {"guidance": guidance, "samples": samples, "steps": steps, "widths": list(widths),
                "window_step": window_step, "labels": "sample i has label i mod classes"}
    return ConditioningWindow(entries, measures, settings)


def load_conditional(path, spec: str, shape: Sequence[int], classes: int, device: str = "cpu"):
    """The class-conditional U-Net at ``path``, checked before its weights load: trained on ``spec`` (images of
    ``shape``) with ``classes`` classes."""
    from phasediff.denoisers.checkpoint import load

    info = checkpoint_info(path, spec, shape, periodic=False)
    arch = info["model"].get("arch")
    if arch != "unet":
        raise PhasediffError(f"--conditional-model {path} is {ARCHITECTURES.get(arch, repr(arch))}, not a U-Net")
    if info["model"].get("num_classes") != classes:
        raise PhasediffError(f"--conditional-model {path} is not class-conditional with {classes} classes "
                             f"(it has num_classes = {info['model'].get('num_classes')}; train one with "
                             "`phasediff train DATA --model global --conditional`)")
    return load(path, device)
