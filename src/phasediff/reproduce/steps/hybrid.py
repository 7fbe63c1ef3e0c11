"""Stage "hybrid": the paper's hybrid sampler against ours.

Image data with a classifier judge: `report.hybrid.hybrid_comparison` samples all-global, all-local, the paper's
local-global-local [0.2, 0.5], global-local-global and the automatic schedule (the planner's cheapest schedule
of the two models within the FD budget, `report.hybrid.auto_schedule`, through the plan cache) from the same noise,
and judges them (Frechet distance in the judge's features, paired ratio to all-global). Lattice data has no
classifier judge, so the stage gives a plan only: the window where the locality gap along the global sampler's
trajectories exceeds a tolerance (`diagnostics.window.auto_window`).
"""

from __future__ import annotations

from pathlib import Path

from phasediff.reproduce.stages import (
    Context,
    DatasetPlan,
    Options,
    Stage,
    find_checkpoint,
)
from phasediff.reproduce.views.hybrid import QUESTION, TITLE

QUICK = {"n": 100, "steps": 32, "window_n": 64, "plan_n": 64}
FULL = {"n": 5000, "steps": 32, "window_n": 256, "plan_n": 250}
PLANNED_SCHEDULES = 56 // 3  # workload: the planner's image cap for two models, a third of the 56-schedule sweep


def plan(dataset: DatasetPlan, options: Options, folder: Path) -> Stage:
    from phasediff.diagnostics.planner import DEFAULT_BETA
    from phasediff.diagnostics.window import DEFAULT_TOLERANCE
    from phasediff.precision import resolve_precision

    local_name = "local-r2" if dataset.lattice else "local-pos-r3"
    settings = dataset.settings_for("hybrid", {**(QUICK if options.quick else FULL), "spec": dataset.spec,
                                               "local": local_name, "tolerance": DEFAULT_TOLERANCE,
                                               "budget": DEFAULT_BETA, "precision": "auto", "batch_size": 500},
                                    options.quick)
    settings["precision"] = resolve_precision(settings["precision"], options.device.split(":")[0])
    settings["mode"] = "plan" if dataset.lattice else "comparison"
    unused = ("n", "plan_n", "budget") if settings["mode"] == "plan" else ("window_n", "tolerance")
    for key in unused:  # the lattice plan samples nothing but the gap's trajectories; the comparison plans by FD
        settings.pop(key)
    found = {"global": find_checkpoint(folder, f"{dataset.prefix}global"),
             "local": find_checkpoint(folder, f"{dataset.prefix}{settings['local']}")}
    if not dataset.lattice:
        found["judge"] = find_checkpoint(folder, "classifier")
    stage = Stage("hybrid", TITLE, QUESTION, settings, {k: v for k, v in found.items() if v is not None},
                  code=("phasediff.report.hybrid", "phasediff.diagnostics.schedules", "phasediff.diagnostics.window"))
    missing = [f"{dataset.prefix}{settings['local'] if k == 'local' else 'classifier' if k == 'judge' else k}"
               for k, v in found.items() if v is None]
    if missing:
        return stage.skipped(f"no checkpoint {', '.join(missing)} in {folder}")
    return stage


def run(stage: Stage, ctx: Context, work: Path) -> dict:
    s = stage.settings
    if s["mode"] == "comparison":
        from phasediff.diagnostics.planner import default_cache
        from phasediff.report.hybrid import hybrid_comparison

        summary = hybrid_comparison(stage.checkpoints["global"], stage.checkpoints["local"], work / "hybrid",
                                    data=s["spec"], judge=stage.checkpoints["judge"], n=s["n"], steps=s["steps"],
                                    seed=s["seed"], budget=s["budget"], plan_n=s["plan_n"], cache=default_cache(),
                                    batch_size=s["batch_size"], precision=s["precision"], device=s["device"])
        files = sorted(p.name for p in (work / "hybrid").iterdir())
        return {"hybrid": summary, "files": [f"hybrid/{name}" for name in files]}
    import torch

    from phasediff.diagnostics.window import auto_window
    from phasediff.precision import autocast
    from phasediff.report.hybrid import gap_figure, load_pair

    models, shape = load_pair(stage.checkpoints["global"], stage.checkpoints["local"], s["device"])
    with torch.no_grad(), autocast(s["precision"], torch.device(s["device"]).type):
        windows, gap = auto_window(models["local"], models["global"], shape, steps=s["steps"],
                                   tolerance=s["tolerance"], n=s["window_n"], seed=s["seed"])
    (work / "hybrid").mkdir()
    gap_figure(gap, work / "hybrid" / "gap.png", s["tolerance"], windows)
    return {"plan": {"auto_window": windows, "gap": gap.to_dict()}, "files": ["hybrid/gap.png"]}


def workload(stage: Stage) -> dict:
    """Image-evaluations. Plan: the gap's trajectories. Comparison: the planner's samples (at most
    PLANNED_SCHEDULES schedules of plan_n images, each counted as all-global and all-local: an upper bound; none
    when the plan is cached), then the five schedules, counted as all-global, all-local, the paper's window (10 of
    32 global steps), its complement and the automatic schedule taken as all-global; the judge's features."""
    s = stage.settings
    if s["mode"] == "plan":
        return {"evaluations": {"global": s["window_n"] * s["steps"], "local": s["window_n"] * s["steps"]}}
    planning = PLANNED_SCHEDULES * s["plan_n"] * s["steps"]
    return {"evaluations": {"global": planning + s["n"] * s["steps"] * 3, "local": planning + s["n"] * s["steps"] * 2,
                            "judge": 5 * s["n"] + PLANNED_SCHEDULES * s["plan_n"] + 10000}}
