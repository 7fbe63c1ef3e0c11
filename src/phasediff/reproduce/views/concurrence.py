"""The report's view of the speciation and concurrence stage."""

from __future__ import annotations

from phasediff.reproduce.stages import Context, Stage
from phasediff.reproduce.tables import committed_data, figure, fixed, interval, table

TITLE = "Symmetry breaking and nonlocality (speciation and concurrence)"
QUESTION = ("From which noise level on does forward-backward sampling lose the class (t_SB, speciation), when "
            "does local denoising fail (t_NL), and do the two coincide?")


def _command(settings: dict, checkpoints: dict) -> str:
    judge = f", judge {checkpoints['judge']}" if "judge" in checkpoints else ", classes: sign of the magnetisation"
    return ("phasediff.diagnostics.concurrence.concurrence (library; `phasediff concurrence DATA --model GLOBAL "
            f"--local-model R=LOCAL` on the command line): global {checkpoints.get('global')}, local radii "
            f"{settings['radii']}{judge}, "
            f"{settings['n']} test images, t = {settings['t']}, {settings['steps_per_unit']:g} sampler steps per unit "
            f"time, {settings['recovery_steps_per_unit']:g} recovery steps per unit time, {settings['resamples']} "
            "bootstrap resamples; single-model curves: phasediff speciation "
            f"{settings['spec']} --model {checkpoints.get('global')} --t {','.join(f'{t:g}' for t in settings['t'])} "
            f"--n {settings['n']} --steps-per-unit {settings['steps_per_unit']:g}")


def _times(measures: list[dict]) -> list[list]:
    return [[m["kind"].upper(), m["name"], "none on this grid" if m["t"] is None else
             interval(m["t"], m["low"], m["high"], places=3) + (" (grid end)" if m["at_edge"] else "")]
            for m in measures]


def command(stage: Stage) -> str:
    return _command(stage.settings, stage.checkpoints)


def present(stage: Stage, record: dict, ctx: Context) -> dict:
    data = record["result"]["concurrence"]
    sp = data["speciation"]
    rows = [[f"{t:g}", interval(sp["kept"][i], sp["kept_low"][i], sp["kept_high"][i], places=3),
             interval(sp["kept_sde"][i], sp["kept_sde_low"][i], sp["kept_sde_high"][i], places=3), sp["steps"][i]]
            for i, t in enumerate(sp["t"])]
    tables = [table(f"Forward-backward: P(class kept | t), Wilson 95% intervals, {sp['n']} test images",
                    ["t", "ODE (Euler)", "SDE (ancestral)", "steps back to 0"], rows,
                    f"Chance is 1/{sp['classes']}; t_SB is where P(kept) falls to {sp['level']:.3f}, halfway to "
                    "chance.")]
    tables.append(table("Transition times, 95% bootstrap intervals", ["kind", "measure", "t"], _times(data["measures"]),
                        "SB: symmetry breaking; NL: nonlocality; REF: the global model's own recovery threshold."))
    study = committed_data(f"concurrence-{ctx.dataset.folder}.json")
    if study is not None:
        other, path = study
        settings = other["settings"]
        tables.append(table(f"The project's study run ({path}, {settings['n']} test images, {settings['samples']} "
                            "samples per window; its command is in docs/concurrence-study.md), with the window tests",
                            ["kind", "measure", "t"], _times(other["measures"]),
                            "The conditioning window (label only inside [a, a + w]) and the sliding global window "
                            "generate samples, which this stage does not."))
    diff_rows = [[d["reference"], d["measure"], "-" if d["difference"] is None else
                  interval(d["difference"], d["low"], d["high"], places=3),
                  {True: "yes", False: "no", None: "-"}[d["zero_inside"]]] for d in data["differences"]]
    if diff_rows:
        tables.append(table("t_SB - t_NL, 95% bootstrap interval (paired over images)",
                            ["t_SB from", "t_NL from", "difference", "interval holds 0"], diff_rows))
    notes = [f"Not measured: {what}: {why}." for what, why in data["skipped"].items()]
    if data.get("cmi"):
        notes.append("CMI peaks: from the curves of the cmi stage above (its estimator and caveat are named there); "
                     "their intervals redraw each point from its standard error.")
    notes.append(f"Spectral t_S from the test images' covariance: {fixed(sp['spectral_t_empirical'], 4)}.")
    notes.append("No paper number: arXiv 2508.06614 does not measure speciation; the concurrence paper's numbers "
                 "are for DiT-XL/2 and SD3 (SCIENCE.md section 7), not comparable.")
    if stage.settings["missing"]:
        notes.append("No checkpoint for radius " + ", ".join(map(str, stage.settings["missing"])) + ": left out.")
    figures = [figure(ctx.relative("concurrence", "concurrence", "concurrence.png"),
                      "Every symmetry-breaking and nonlocality curve on one t axis (normalised), 95% bands, and the "
                      "transition times with their intervals")]
    if "figure_error" in record["result"]:
        figures = []
        notes.insert(0, f"No figure: {record['result']['figure_error']}; the numbers are in the tables.")
    return {"figures": figures, "tables": tables, "notes": notes}
