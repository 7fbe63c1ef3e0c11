"""The phase diagram of local denoising as a run directory (``phasediff diagram``).

    recovery.png              recovery MSE over (T_f, r) of the local networks (and the global one), 0.03 contour
    gap-network-forward.png   Delta(t, r) of the local networks against the global one, forward process
    gap-network-trajectory.png  the same along the global sampler's trajectories
    gap-analytic.png          patch posterior of radius r against the empirical posterior of a training subset,
                              on the forward process of that subset
    gap-cmi.png               the network gap beside a CMI heatmap on the same axes (with --cmi)
    results.json, summary.txt
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from phasediff.denoisers.checkpoint import load, read_info
from phasediff.diagnostics.gap import forward_gap, trajectory_gap
from phasediff.diagnostics.recovery import DEFAULT_LEVEL, DEFAULT_T_FINAL, recovery_diagram
from phasediff.diagnostics.window import DEFAULT_TOLERANCE
from phasediff.errors import PhasediffError
from phasediff.precision import autocast
from phasediff.rundir import run_directory, save_json


def _cmi_result(path: Path):
    from phasediff.info.result import CMIResult

    try:
        data = json.loads(Path(path).read_text())
        return CMIResult(**{k: data[k] for k in ("t", "r", "cmi", "stderr", "estimator", "dataset", "site",
                                                 "patch", "region_sizes", "seconds")})
    except (OSError, ValueError, KeyError, TypeError):
        raise PhasediffError(f"{path} is not the results.json of a phasediff cmi run") from None


def _local_models(checkpoints: Sequence[Path], device: str) -> dict:
    models = {}
    for path in checkpoints:
        model = load(path, device)
        radius = getattr(model, "radius", None)
        if radius is None:
            raise PhasediffError(f"{path} is not a local model (it has no radius)")
        if radius in models:
            raise PhasediffError(f"two local checkpoints have radius {radius}")
        models[radius] = model
    return dict(sorted(models.items()))


def run_diagram(data: str, local: Sequence[Path], out: Path, global_checkpoint: Path | None = None,
                n_images: int = 256, t_final: Sequence[float] = DEFAULT_T_FINAL, steps: int = 32,
                analytic_train: int = 2000, analytic_radii: Sequence[int] | None = None, cmi: Path | None = None,
                tolerance: float = DEFAULT_TOLERANCE, seed: int = 0, precision: str = "fp32",
                device: str = "cpu", force: bool = False) -> dict:
    """Recovery diagram and locality gaps of local denoisers on the test split of ``data``; ``precision`` bf16
    runs the networks under bf16 autocast on ``device`` (the analytic family always runs in full precision on
    the CPU)."""
    from phasediff.data.registry import load_dataset
    from phasediff.report.phase_figures import gap_cmi_figure, gap_heatmap, recovery_figure

    network_precision = autocast(precision, torch.device(device).type)
    models = _local_models(local, device)
    cmi_result = _cmi_result(cmi) if cmi is not None else None
    test = load_dataset(data, split="test", n=n_images, seed=seed).images
    shape = tuple(test.shape[1:])
    for path in local:
        if tuple(read_info(path).get("image_shape") or shape) != shape:
            raise PhasediffError(f"{path} was trained on images of another shape than {data} {shape}")
    global_ = load(global_checkpoint, device) if global_checkpoint is not None else None
    with run_directory(out, force=force) as work:
        summary = {"data": data, "n_images": len(test), "steps": steps, "seed": seed, "tolerance": tolerance,
                   "precision": precision,
                   "local": [str(p) for p in local], "global": None if global_ is None else str(global_checkpoint)}
        family = dict(models) if global_ is None else {**models, None: global_}
        with network_precision:
            diagram = recovery_diagram(family, test, t_final=t_final, steps_per_unit=steps, seed=seed, device=device)
        recovery_figure(diagram, work / "recovery.png")
        summary["recovery"] = diagram.to_dict()
        lines = [f"recovery: first T_f with MSE >= {DEFAULT_LEVEL:g} per radius"]
        lines += [f"  r = {c.radius}: {c.t}" for c in diagram.threshold_contour()]
        if global_ is not None:
            for mode, measure in (("forward", lambda: forward_gap(models, global_, test, steps=steps, seed=seed,
                                                                  device=device)),
                                  ("trajectory", lambda: trajectory_gap(models, global_, len(test), shape,
                                                                        steps=steps, seed=seed, device=device))):
                with network_precision:
                    gap = measure()
                summary[f"gap_network_{mode}"] = gap.to_dict()
                gap_heatmap(gap, work / f"gap-network-{mode}.png", tolerance)
                windows = {r: gap.window(r, tolerance) for r in gap.radii}
                summary[f"windows_network_{mode}"] = {str(r): w for r, w in windows.items()}
                lines.append(f"network gap ({mode}): window where gap > {tolerance:g}: "
                             + ", ".join(f"r={r}: {_fmt(w)}" for r, w in windows.items()))
                if mode == "forward" and cmi_result is not None:
                    gap_cmi_figure(gap, cmi_result, work / "gap-cmi.png", tolerance)
        if analytic_train > 0:
            gap = _analytic_gap(data, analytic_train, analytic_radii or list(models), len(test), steps, seed)
            summary["gap_analytic_forward"] = gap.to_dict()
            gap_heatmap(gap, work / "gap-analytic.png", tolerance)
            lines.append(f"analytic gap (patch posterior vs empirical, {analytic_train} training images): window "
                         + ", ".join(f"r={r}: {_fmt(gap.window(r, tolerance))}" for r in gap.radii))
        summary["summary"] = lines
        save_json(work / "results.json", summary)
        (work / "summary.txt").write_text("\n".join(lines) + "\n")
    return summary


def _fmt(window) -> str:
    return "none" if window is None else f"[{window[0]:.3f}, {window[1]:.3f}]"


def _analytic_gap(data: str, n_train: int, radii: Sequence[int], n_images: int, steps: int, seed: int):
    """Patch posterior (patches at the same location) of each radius against the empirical posterior mean,
    on the forward process of the training images themselves: the empirical posterior is the exact denoiser
    of that set, whereas held-out images would measure its memorisation, not locality."""
    from phasediff.data.registry import load_dataset
    from phasediff.denoisers.analytic import EmpiricalDenoiser, PatchPosteriorDenoiser

    train = load_dataset(data, split="train", n=n_train, seed=seed).images
    family = {r: PatchPosteriorDenoiser(train, r) for r in radii}
    return forward_gap(family, EmpiricalDenoiser(train), train[:n_images], steps=steps, seed=seed)
