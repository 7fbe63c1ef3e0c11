"""The report's view of the phases stage."""

from __future__ import annotations

from phasediff.reproduce.paper import references
from phasediff.reproduce.stages import Context, Stage
from phasediff.reproduce.tables import comparison, figure, interval, number, table

TITLE = "Phases: which radius generates each temperature"
QUESTION = ("For each member of a family of lattice distributions, can a local denoiser of radius r alone "
            "generate it (judged by energy and magnetisation), and what is the smallest such radius r*?")


def command(stage: Stage) -> str:
    s = stage.settings
    if "values" not in s:  # not a family
        return "-"
    values = ";".join(format(v, ".6g") for v in s["values"])
    fixed_part = s["members"][0].split(":", 1)[1].rsplit(",", 1)[0] if s["members"] else "..."
    return (f"phasediff phases \"{s['family']}:{fixed_part},{s['parameter']}={values}\" --models {s['models']} "
            f"--radii {','.join(map(str, s['radii']))} --n {s['n']} --steps {s['steps']} --gap-images "
            f"{s['gap_images']} --method {s['method']}{' --cmi none' if s['cmi'] == 'none' else ''} --out phases")


def _length(xi: dict) -> str:
    """A correlation length with its interval (none when it is exact) and how it was found."""
    text = number(xi["value"], 3) if xi["low"] == xi["high"] == xi["value"] or xi["low"] is None else \
        interval(xi["value"], xi["low"], xi["high"], digits=3)
    return text + (f" ({xi['kind']})" if xi.get("kind") else "")


def _verdict(member: dict, radius: int) -> str:
    if radius in member["missing"]:
        return "no checkpoint"
    return "match" if member["matches"].get(str(radius)) else "fails"


def present(stage: Stage, record: dict, ctx: Context) -> dict:
    s = stage.settings
    members = record["result"]["phases"]["members"]
    radii = s["radii"]
    rows = []
    for m in members:
        xi = m["data_correlation_length"]
        rows.append([f"{m['value']:g}", _length(xi),
                     "match" if m["global_matches"] else "FAILS"] + [_verdict(m, r) for r in radii]
                    + [m["r_star"] if m["r_star"] is not None else f"> {max(radii)} (or no checkpoint)"])
    tables = [table(f"All-local generation per radius ({s['n']} samples each, {s['steps']} {s['method']} steps)",
                    [s["parameter"], "correlation length of the data (sites)", "global model"] + [f"r = {r}" for r in radii]
                    + ["r*"], rows, "Match: the verdict of `diagnostics.phases.judge` (energy per spin, the |m| "
                                    "distribution and C(d), within the tolerances of `phasediff.observables`). A local "
                                    "failure means something only where the global model matches.")]
    obs_rows = []
    for m in members:
        for name, report in m["observables"].items():
            obs_rows.append([f"{m['value']:g}", "global" if name == "global" else f"r = {name}",
                             interval(report["energy"]["value"], report["energy"]["low"], report["energy"]["high"],
                                      places=3),
                             interval(report["energy_reference"]["value"], report["energy_reference"]["low"],
                                      report["energy_reference"]["high"], places=3),
                             interval(report["energy_difference"]["value"], report["energy_difference"]["low"],
                                      report["energy_difference"]["high"], places=3),
                             interval(report["w1_abs_magnetisation"]["value"], report["w1_abs_magnetisation"]["low"],
                                      report["w1_abs_magnetisation"]["high"], places=3),
                             interval(report["correlation_difference"]["value"],
                                      report["correlation_difference"]["low"],
                                      report["correlation_difference"]["high"], places=3)])
    tables.append(table("Observables of the generated samples against fresh samples of the model, 95% bootstrap "
                        "intervals", [s["parameter"], "model", "energy per spin", "reference", "difference",
                                      "W1(|m|)", "max |C(d) - reference|, d <= L/4"], obs_rows))
    if s["lacking"]:
        tables.append(table("Temperatures not run", [s["parameter"], "member", "reason"],
                            [[f"{item['value']:g}", item["spec"], item["reason"]] for item in s["lacking"]]))
    by_value = {round(m["value"], 6): m for m in members}
    rows = []
    for ref in references(ctx.dataset.name, "phases"):
        m = by_value.get(round(ref.at["T"], 6))
        xi = None if m is None else m["data_correlation_length"]
        rows.append({"quantity": ref.quantity, "paper": ref.text, "source": ref.source,
                     "ours": "not run: no checkpoints" if xi is None else _length(xi)})
    figures = [figure(ctx.relative("phases", "phases", "phase_diagram.png"), "Parameter against t, coloured by the "
                      "locality gap (log scale), r* marked"),
               figure(ctx.relative("phases", "phases", "r_star.png"), "r* against the correlation length of the data")]
    return {"figures": figures, "tables": tables,
            "comparison": comparison(rows, "Beside the exact correlation length (physics, not the paper)",
                                     "reference")}
