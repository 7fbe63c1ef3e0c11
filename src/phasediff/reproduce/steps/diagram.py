"""Stage "diagram": the recovery diagram (the paper's protocol) and the locality gaps of the committed local
denoisers against the global one, over (t, r): `report.diagram.run_diagram`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from phasediff.reproduce.stages import (
    Context,
    DatasetPlan,
    Options,
    Stage,
    local_and_global,
)
from phasediff.reproduce.views.diagram import QUESTION, TITLE

QUICK = {"radii": [1, 3, 6], "images": 32, "t_final": [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95], "steps": 32,
         "analytic": 0}
FULL = {"radii": [1, 2, 3, 4, 6, 8, 12], "images": 256, "t_final": [float(t) for t in np.round(np.linspace(
    0.01, 0.99, 11), 6)], "steps": 32, "analytic": 500}


def plan(dataset: DatasetPlan, options: Options, folder: Path) -> Stage:
    from phasediff.diagnostics.window import DEFAULT_TOLERANCE
    from phasediff.precision import resolve_precision

    settings = dataset.settings_for("diagram", {"spec": dataset.spec, **(QUICK if options.quick else FULL),
                                                "tolerance": DEFAULT_TOLERANCE, "precision": "auto"}, options.quick)
    settings["precision"] = resolve_precision(settings["precision"], options.device.split(":")[0])
    checkpoints = local_and_global(dataset, folder, settings)
    stage = Stage("diagram", TITLE, QUESTION, settings, checkpoints, depends=("cmi",),
                  code=("phasediff.report.diagram", "phasediff.diagnostics.recovery", "phasediff.diagnostics.gap"))
    if not settings["radii"]:
        return stage.skipped(f"no local checkpoints ({dataset.prefix}local-rR) in {folder}")
    return stage


def run(stage: Stage, ctx: Context, work: Path) -> dict:
    from phasediff.report.diagram import run_diagram

    s = stage.settings
    cmi = ctx.folder("cmi")
    summary = run_diagram(s["spec"], [stage.checkpoints[f"local-r{r}"] for r in s["radii"]], work / "diagram",
                          global_checkpoint=stage.checkpoints.get("global"), n_images=s["images"],
                          t_final=s["t_final"], steps=s["steps"], analytic_train=s["analytic"],
                          cmi=None if cmi is None else cmi / "cmi" / "results.json", tolerance=s["tolerance"],
                          seed=s["seed"], precision=s["precision"], device=s["device"])
    files = sorted(p.name for p in (work / "diagram").iterdir())
    return {"diagram": summary, "files": [f"diagram/{name}" for name in files]}


def workload(stage: Stage) -> dict:
    """Image-evaluations of each network: recovery from every T_f, the forward gap and the trajectory gap (the
    analytic family is not counted)."""
    from phasediff.diagnostics.gap import grid_times
    from phasediff.diagnostics.recovery import recovery_steps

    s = stage.settings
    recovery = sum(recovery_steps(t, s["steps"], None) for t in s["t_final"])
    gaps = 2 * len(grid_times(s["steps"])) if "global" in stage.checkpoints else 0
    return {"evaluations": {role: s["images"] * (recovery + gaps) for role in stage.checkpoints}}
