"""Stage "concurrence": symmetry breaking (speciation) and nonlocality on one t axis.

`diagnostics.concurrence.concurrence` with the committed checkpoints: the forward-backward test of
`diagnostics.speciation` (noise test images to t, sample back with the global U-Net by the probability-flow ODE
and the ancestral sampler, classify by the committed judge, or by the sign of the magnetisation for Ising), the
spectral t_S, per local radius the locality gap and the recovery excess on the same noised images, and the CMI
peaks of the cmi stage's curves; each transition time with an interval and t_SB - t_NL with its interval. The
sliding window needs a judge of single samples; the report lists what was not measured, with the reason.
"""

from __future__ import annotations

from pathlib import Path

from phasediff.reproduce.stages import (
    Context,
    DatasetPlan,
    Options,
    Stage,
    find_checkpoint,
    local_and_global,
)
from phasediff.reproduce.views.concurrence import QUESTION, TITLE

# the grids start at t = 0.3: MNIST's local recovery thresholds lie at 0.4-0.5 (docs/hybrid-study.md)
QUICK = {"n": 32, "t": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95], "radii": [1, 3], "steps_per_unit": 16.0,
         "recovery_steps_per_unit": 16.0, "resamples": 500}
# full: 256 images and 32 steps per unit time (the paper's sampler): the library's defaults (1,000 images, 128
# steps) are sized for gmm2's exact denoisers and would cost hours of U-Net passes
FULL = {"n": 256, "t": [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99],
        "radii": [1, 3, 6], "steps_per_unit": 32.0, "recovery_steps_per_unit": 32.0, "resamples": 1000}


def plan(dataset: DatasetPlan, options: Options, folder: Path) -> Stage:
    from phasediff.precision import resolve_precision

    settings = dataset.settings_for("concurrence", {**(QUICK if options.quick else FULL), "spec": dataset.spec,
                                                    "precision": "auto", "batch_size": 500}, options.quick)
    settings["precision"] = resolve_precision(settings["precision"], options.device.split(":")[0])
    checkpoints = local_and_global(dataset, folder, settings)
    judge = None if dataset.lattice else find_checkpoint(folder, "classifier")
    if judge is not None:
        checkpoints["judge"] = judge
    stage = Stage("concurrence", TITLE, QUESTION, settings, checkpoints, depends=("cmi",),
                  code=("phasediff.diagnostics.concurrence", "phasediff.diagnostics.speciation",
                        "phasediff.report.concurrence_figures"))
    if "global" not in checkpoints:
        return stage.skipped(f"no global checkpoint ({dataset.prefix}global) in {folder}: forward-backward needs one")
    if not settings["radii"]:
        return stage.skipped(f"no local checkpoints ({dataset.prefix}local-rR) in {folder}")
    if not dataset.lattice and judge is None:
        return stage.skipped(f"no classifier judge (classifier) in {folder}: the class of a sample is unknown")
    return stage


def run(stage: Stage, ctx: Context, work: Path) -> dict:
    import torch

    from phasediff.data.registry import load_dataset
    from phasediff.denoisers.checkpoint import load
    from phasediff.diagnostics.concurrence import concurrence, load_cmi_run
    from phasediff.diagnostics.speciation import class_rule
    from phasediff.precision import autocast
    from phasediff.report.concurrence_figures import concurrence_figure
    from phasediff.rundir import save_json

    s = stage.settings
    data = load_dataset(s["spec"], split="test", n=s["n"], seed=s["seed"])
    classify, classes, labels = class_rule(s["spec"], data, stage.checkpoints.get("judge"))
    global_ = load(stage.checkpoints["global"], s["device"])
    local = {r: load(stage.checkpoints[f"local-r{r}"], s["device"]) for r in s["radii"]}
    cmi = ctx.folder("cmi")  # the CMI stage's curves give the CMI peaks (t_NL by the CMI)
    cmi_run = None if cmi is None else load_cmi_run(cmi / "cmi")
    with torch.no_grad(), autocast(s["precision"], torch.device(s["device"]).type):
        result = concurrence(global_, local, data.images, labels, classify, s["t"], classes=classes, model=None,
                             steps_per_unit=s["steps_per_unit"], recovery_steps_per_unit=s["recovery_steps_per_unit"],
                             seed=s["seed"], batch_size=s["batch_size"], device=s["device"],
                             resamples=s["resamples"], cmi_run=cmi_run)
    payload = result.to_dict()
    (work / "concurrence").mkdir()
    save_json(work / "concurrence" / "results.json", payload)
    try:
        concurrence_figure(payload, work / "concurrence" / "concurrence.png", title=s["spec"])
    except ValueError as error:  # matplotlib refuses an interval that does not hold its point: keep the numbers
        return {"concurrence": payload, "files": ["concurrence/results.json"],
                "figure_error": f"the concurrence figure could not be drawn ({error})"}
    return {"concurrence": payload, "files": ["concurrence/results.json", "concurrence/concurrence.png"]}


def workload(stage: Stage) -> dict:
    """Image-evaluations: forward-backward (ODE and SDE) with the global model, the gap at each t and the recovery
    of every model; the judge classifies every returned image."""
    from phasediff.diagnostics.recovery import recovery_steps

    s = stage.settings
    back = sum(recovery_steps(t, s["steps_per_unit"], None) for t in s["t"])
    recovery = sum(recovery_steps(t, s["recovery_steps_per_unit"], None) for t in s["t"])
    counts = {role: s["n"] * (len(s["t"]) + recovery) for role in stage.checkpoints if role.startswith("local")}
    counts["global"] = s["n"] * (2 * back + len(s["t"]) + recovery)
    if "judge" in stage.checkpoints:
        counts["judge"] = 2 * s["n"] * len(s["t"])
    return {"evaluations": counts}
