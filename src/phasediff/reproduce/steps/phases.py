"""Stage "phases" (lattice data): which local radius generates each member of a family of distributions?

`diagnostics.phases.run_phases` over the temperatures of the dataset's family that have checkpoints (matched by
their sidecar's ``data``, as ``phasediff phases --models`` does); a temperature without a global checkpoint is
listed on the page with the reason and not run. Named image datasets are one distribution, not a family: the
stage is skipped for them.
"""

from __future__ import annotations

from pathlib import Path

from phasediff.reproduce.stages import Context, DatasetPlan, Options, Stage
from phasediff.reproduce.views.phases import QUESTION, TITLE

# the CMI along the path is the cmi stage's; "auto" also has run_phases measure it per member (Ising: the neural
# estimator, minutes per member), which only the full mode affords
QUICK = {"radii": [1, 2, 4], "n": 100, "steps": 32, "gap_images": 32, "method": "ancestral", "cmi": "none"}
FULL = {"radii": [1, 2, 3, 4, 6, 8], "n": 1000, "steps": 32, "gap_images": 256, "method": "ancestral", "cmi": "auto"}


def plan(dataset: DatasetPlan, options: Options, folder: Path) -> Stage:
    from phasediff.diagnostics.phases import _ising_models
    from phasediff.specs import spec_key

    if dataset.family is None:
        return Stage("phases", TITLE, QUESTION, {}, skip=(
            f"phases classify the members of a family of lattice distributions with one parameter varied "
            f"(`phasediff phases ising:L=32,T=2.4:3.5:0.3`); {dataset.title} is one dataset, not such a family"))
    family = dataset.family
    settings = dataset.settings_for("phases", {**(QUICK if options.quick else FULL), "family": family["name"],
                                               "parameter": family["parameter"]}, options.quick)
    found = _ising_models(folder) if folder.is_dir() else {}
    members, values, lacking, checkpoints = [], [], [], {}
    for value in family.get("quick_values", family["values"]) if options.quick else family["values"]:
        spec = f"{family['name']}:{family['fixed']},{family['parameter']}={format(value, '.6g')}"
        key = spec_key(spec)
        if (key, None) not in found:
            lacking.append({"value": value, "spec": spec, "reason": f"no global checkpoint whose sidecar data is "
                                                                     f"{spec} in {folder}"})
            continue
        members.append(spec)
        values.append(value)
        checkpoints[f"{spec} global"] = found[(key, None)]
        checkpoints.update({f"{spec} local-r{r}": found[(key, r)] for r in settings["radii"] if (key, r) in found})
    settings.update(members=members, values=values, lacking=lacking, models=str(folder))
    stage = Stage("phases", TITLE, QUESTION, settings, checkpoints,
                  code=("phasediff.diagnostics.phases", "phasediff.observables", "phasediff.report.phase_figures"))
    if not members:
        return stage.skipped("no temperature of the family has checkpoints: "
                             + "; ".join(f"{item['spec']}: {item['reason']}" for item in lacking))
    return stage


def run(stage: Stage, ctx: Context, work: Path) -> dict:
    from phasediff.diagnostics.phases import Family, PhasesOptions, run_phases

    s = stage.settings
    family = Family(s["family"], s["parameter"], tuple(s["values"]), tuple(s["members"]))
    options = PhasesOptions(radii=tuple(s["radii"]), n=s["n"], steps=s["steps"], seed=s["seed"], models=s["models"],
                            gap_images=s["gap_images"], method=s["method"], cmi=s["cmi"])
    summary = run_phases(family, options, work / "phases")
    files = sorted(p.name for p in (work / "phases").iterdir() if p.is_file())
    return {"phases": summary, "files": [f"phases/{name}" for name in files]}


def workload(stage: Stage) -> dict:
    """Image-evaluations per member: n samples of steps Euler steps by each model, and the forward gap."""
    from phasediff.diagnostics.gap import grid_times

    s = stage.settings
    per_model = s["n"] * s["steps"] + s["gap_images"] * len(grid_times(s["steps"]))  # (not the per-member CMI)
    return {"evaluations": {role: per_model for role in stage.checkpoints}}
