"""The report's view of the hybrid stage: the schedules' quality and cost, or the plan for lattice data."""

from __future__ import annotations

from phasediff.reproduce.paper import references
from phasediff.reproduce.stages import Context, Stage
from phasediff.reproduce.tables import (
    comparison,
    figure,
    fixed,
    interval,
    number,
    table,
)

TITLE = "Hybrid sampler: where the global model must run"
QUESTION = ("If a cheap local denoiser runs outside a window of t and the global U-Net inside it, which window "
            "keeps the sample quality, and what does it save?")


def _command(settings: dict, found: dict) -> str:
    if settings["mode"] == "plan":
        return (f"the window where the locality gap of {found.get('local')} against {found.get('global')} along "
                f"{settings['window_n']} trajectories of {settings['steps']} Euler steps exceeds {settings['tolerance']:g} "
                "(`phasediff.diagnostics.window.auto_window`)")
    return (f"phasediff hybrid --model {found.get('global')} --local {found.get('local')} --data {settings['spec']} "
            f"--judge {found.get('judge')} --n {settings['n']} --steps {settings['steps']} --budget "
            f"{settings['budget']:g} --plan-n {settings['plan_n']} --precision {settings['precision']} --out hybrid")


def _global_steps(schedule: dict) -> str:
    steps = schedule["member_steps"].get("global", 0)
    return f"{steps} of {schedule['steps']}"


def _planning_text(auto: dict) -> str:
    """How the automatic schedule was found: from the plan cache, or planned on how many images in how long."""
    made = f"planned on {auto['planned_images']} images in {number(auto['planned_seconds'], 3)} s"
    return f"read from the plan cache, {made}" if auto["cached"] else made


def command(stage: Stage) -> str:
    return _command(stage.settings, stage.checkpoints)


def present(stage: Stage, record: dict, ctx: Context) -> dict:
    result = record["result"]
    s = stage.settings
    windows_text = lambda ws: "none (local throughout)" if not ws else ", ".join(
        f"[{fixed(a)}, {fixed(b)}]" for a, b in ws)
    if s["mode"] == "plan":
        plan_ = result["plan"]
        return {
            "figures": [figure(ctx.relative("hybrid", "hybrid", "gap.png"), "Locality gap (per-pixel MSE, log scale) "
                               "of the local model against the global one along the global sampler's trajectories, "
                               "95% band, the tolerance and the window")],
            "tables": [table("The automatic window", ["quantity", "value"],
                             [["global window (gap > tolerance)", windows_text(plan_["auto_window"])],
                              ["tolerance (per-pixel MSE of the x_0 estimates)", number(s["tolerance"])],
                              ["trajectories", plan_["gap"]["n"]], ["Euler steps", s["steps"]]])],
            "notes": ["Plan only: `phasediff hybrid` judges samples with a classifier, and lattice data has none. "
                      "The phases stage judges all-local Ising samples by their physical observables."],
        }
    summary = result["hybrid"]
    rows = []
    for sch in summary["schedules"]:
        q, ratio = sch["quality"], sch["frechet_ratio"]
        rows.append([sch["name"], sch["schedule"], _global_steps(sch),
                     interval(q["frechet"], q["frechet_low"], q["frechet_high"], digits=3),
                     "-" if ratio is None else interval(ratio["ratio"], ratio["low"], ratio["high"], digits=3),
                     fixed(q["confidence"]), number(sch["flops"] / 1e9, 3), number(sch["seconds"], 3)])
    tables = [table(f"Schedules from the same noise ({summary['n']} samples each, {summary['steps']} Euler steps, "
                    f"{summary['precision']})",
                    ["name", "schedule", "global steps", "Frechet distance [95%]", "FD / all-global [95%]",
                     "judge confidence", "GFLOPs", "seconds"], rows,
                    "FD: in the features of the committed classifier, against the test split; the ratio's interval "
                    "is a paired bootstrap. At a few hundred samples FD carries a large upward bias: read the "
                    "ratios, not the values.")]
    by_name = {sch["name"]: sch for sch in summary["schedules"]}
    rows = []
    for ref in references(ctx.dataset.name, "hybrid"):
        paper_schedule = by_name.get("local-global-local [0.2, 0.5]")
        if ref.at.get("window"):
            ours = f"automatic schedule: {summary['auto']['schedule']}"
        elif ref.at.get("steps") and paper_schedule is not None:
            ours = (f"paper's window: {_global_steps(paper_schedule)}; automatic: {_global_steps(by_name['auto'])}"
                    if "auto" in by_name else _global_steps(paper_schedule))
        elif ref.at.get("quality") and paper_schedule is not None and paper_schedule["frechet_ratio"]:
            r = paper_schedule["frechet_ratio"]
            ours = f"paper's window: FD / all-global = {interval(r['ratio'], r['low'], r['high'], digits=3)}"
        else:
            ours = "-"
        rows.append({"quantity": ref.quantity, "paper": ref.text, "ours": ours, "source": ref.source})
    folder = ctx.folder("hybrid") / "hybrid"
    grids = sorted(folder.glob("grid-*.png"), key=lambda p: int(p.stem.split("-")[1]))
    figures = [figure(ctx.relative("hybrid", "hybrid", p.name), f"Samples: {sch['name']}", "samples")
                for p, sch in zip(grids, summary["schedules"])]
    return {"figures": figures, "tables": tables, "comparison": comparison(rows),
            "notes": [f"Local model: {summary['local']}; global model: {summary['global']}. The automatic schedule is "
                      f"the planner's cheapest within FD / all-global <= {summary['budget']:g} "
                      f"({_planning_text(summary['auto'])})."]}
