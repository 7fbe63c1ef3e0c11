"""The report's view of the CMI stage: tables with intervals, the estimator's label and caveat, the paper's numbers and the
project's validated run beside ours."""

from __future__ import annotations

from phasediff.reproduce.paper import references
from phasediff.reproduce.stages import Context, Stage
from phasediff.reproduce.tables import (
    committed_data,
    comparison,
    figure,
    fixed,
    interval,
    number,
    table,
)

TITLE = "Conditional mutual information along the path"
QUESTION = ("How much does the far image C tell the centre pixel A beyond its buffer B_r, I_t(A:C|B_r), at "
            "each noise level t and radius r; how fast does it decay with r (the Markov length), and in which "
            "window of t is it resolved?")
SHOWN_R = (1, 2, 3, 4, 6, 9, 12)
AMORTISED_CAVEAT = ("README: the amortised network alone is fast, but low by up to 2x on the MNIST-fitted mixture at "
                    "r <= 2, t <= 0.5; read its values as lower bounds.")
VALIDATED_CAVEAT = ("README: validated on grf and on the MNIST-fitted mixture (480,000 samples); with MNIST's "
                    "60,000 images it reads 49-66% of the exact values at t = 0.1-0.2, r <= 2, and the estimator "
                    "marks those noise levels as lower bounds itself. SCIENCE.md section 6: the cross-entropy "
                    "estimator is biased low; elsewhere its intervals hold sampling error only.")


def _command(settings: dict) -> str:
    p = settings["profile"]
    parts = [f"phasediff cmi {settings['spec']}", f"--estimator {p['estimator']}",
             f"--t {','.join(f'{t:g}' for t in settings['t'])}", f"--r {','.join(map(str, settings['r']))}",
             f"--delta {settings['delta']:g}"]
    if settings.get("n"):
        parts.append(f"--n {settings['n']}")
    if p["estimator"] == "neural":
        parts.append(f"--epochs {p['epochs']:g}")
        if p["specialise"]:
            parts.append(f"--specialise {p['specialise']}" + (" --specialise-chain" if p["chain"] else ""))
        parts.append(f"--train-precision {p['precision']}")
        if p["test"] != 10000 or p["val"] != 2000:
            parts.append(f"(library settings: test {p['test']}, validation {p['val']} images)")
    elif p["estimator"] == "gaussian":
        parts.append(f"--ridge {p['ridge']:g}")
    return " ".join(parts) + " --out cmi"


PROFILE_TEXT = {  # label and caveat of each profile of steps.cmi.PROFILES
    "neural-amortised-quick": (
        "neural estimator, amortised network (one network for every t and r), reduced for --quick: 2 training "
        "epochs, 3,000 test images",
        AMORTISED_CAVEAT + " With half the epochs of docs/cmi-study.md's amortised run it is lower still, and its "
                           "intervals are wider."),
    "neural-amortised": ("neural estimator, amortised network, 4 epochs, 10,000 test images (docs/cmi-study.md)",
                         AMORTISED_CAVEAT),
    "neural-validated": (
        "neural estimator, validated mode: the amortised network, then a copy specialised 5,000 steps at each t "
        "where that can change the report (not at the lower-bound t, nor where the amortised network reads far "
        "below the resolution), chained from the largest such t down (--specialise 5000 --specialise-chain)",
        VALIDATED_CAVEAT),
    "gaussian": (
        "Gaussian estimator: log-det formula on the covariance of the noised images + ridge 1e-4, Wishart-bias "
        "corrected, jackknife standard errors",
        "README: the Gaussian estimator measures the CMI of the Gaussian with the data's covariance, not of the "
        "data; it is exact for Gaussian fields only."),
}


def _intervals(cmi: dict):
    """(low, high, unresolved, lower bound) grids: the estimator's 95% intervals (neural: bootstrap, widened below
    the resolution, open above a lower bound; gaussian / exact Monte Carlo: +-1.96 s.e.; exact: the value)."""
    import numpy as np

    values = np.asarray(cmi["cmi"], float)
    details = cmi.get("details") or {}
    none = np.zeros(values.shape, bool)
    if "interval_low" in details:
        bound = np.asarray(details["lower_bound"], bool) if "lower_bound" in details else none
        return (np.asarray(details["interval_low"], float), np.asarray(details["interval_high"], float),
                np.asarray(details["below_resolution"], bool), bound)
    if cmi.get("stderr") is not None:
        err = np.asarray(cmi["stderr"], float)
        return values - 1.96 * err, values + 1.96 * err, none, none
    return values, values, none, none


def _cell(value, low, high, unresolved, bound=False) -> str:
    if bound:
        return f">= {number(value, 2)} (lower bound; 95% from {number(low, 2)})"
    if unresolved:
        return f"< {number(high, 2)} (estimate {number(value, 2)})"
    return interval(value, low, high, digits=2)


def _grid_value(cmi: dict, t: float, r: int):
    """(value, low, high, unresolved, lower bound) at (t, r) of the measured grid, None if not measured."""
    low, high, unresolved, bound = _intervals(cmi)
    ts, rs = [round(float(x), 6) for x in cmi["t"]], list(cmi["r"])
    if round(t, 6) not in ts or r not in rs:
        return None
    i, j = ts.index(round(t, 6)), rs.index(r)
    return cmi["cmi"][i][j], low[i, j], high[i, j], bool(unresolved[i, j]), bool(bound[i, j])


def command(stage: Stage) -> str:
    return _command(stage.settings)


def present(stage: Stage, record: dict, ctx: Context) -> dict:
    cmi = record["result"]["cmi"]
    label, caveat = PROFILE_TEXT.get(stage.settings["estimator"], (stage.settings["estimator"], "none recorded"))
    analysis = cmi["analysis"]
    low, high, unresolved, bound = _intervals(cmi)
    shown = [r for r in SHOWN_R if r in cmi["r"]] or list(cmi["r"])
    rows = [[f"{t:g}"] + [_cell(cmi["cmi"][i][cmi["r"].index(r)], low[i][cmi["r"].index(r)],
                                high[i][cmi["r"].index(r)], unresolved[i][cmi["r"].index(r)],
                                bound[i][cmi["r"].index(r)]) for r in shown]
            for i, t in enumerate(cmi["t"])]
    rule = (cmi.get("details") or {}).get("lower_bound_rule")
    tables = [table("I_t(A:C|B_r) in nats, 95% interval", ["t"] + [f"r = {r}" for r in shown], rows,
                    "'< x (estimate y)': below the resolution max(0.005, 2 s.e.), an upper limit. "
                    + (f"'>= x': a lower bound, open above ({rule}). " if bound.any() else "")
                    + "All radii: the data file.")]
    fit = analysis["markov_length"]
    details = cmi.get("details") or {}
    mi = details.get("mutual_information_A_BC")
    mi_err = details.get("mutual_information_A_BC_stderr")
    xi_rows = []
    for k, t in enumerate(fit["t"]):
        i = [round(x, 6) for x in cmi["t"]].index(round(t, 6))
        xi = "-" if fit["xi"][k] is None else interval(fit["xi"][k], fit["xi_low"][k], fit["xi_high"][k], digits=3)
        xi_rows.append([f"{t:g}", xi, "-" if mi is None else f"{number(mi[i], 3)} +- {number(mi_err[i], 2)}"])
    tables.append(table("Markov length xi(t) (pixels, 95% interval) and I_t(A:BC) (nats, +- 1 s.e.)",
                        ["t", "xi", "I(A:BC)"], xi_rows, "xi: fitted to the resolved radii; '-': fewer than two."))
    peak, window = analysis["peak"], analysis["window"]
    window_text = ("none" if window["t_start"] is None else
                   f"[{fixed(window['t_start'])}, {fixed(window['t_end'])}] (end: "
                   f"{interval(window['t_end'], window['t_end_low'], window['t_end_high'], places=3)})")
    peak_text = interval(peak["t_peak"], peak["low"], peak["high"], digits=2)
    tables.append(table(f"Peak and window at r = {analysis['radius']}", ["quantity", "value"],
                        [["peak time t", peak_text], [f"window where I > {window['delta']:g} nats", window_text],
                         ["estimator seconds", number(cmi["seconds"], 3)]]))
    rows = []
    for ref in references(ctx.dataset.name, "cmi"):
        if ref.at.get("peak"):
            ours = f"t = {peak_text} (r = {analysis['radius']})"
        elif "r" in ref.at:
            found = _grid_value(cmi, ref.at["t"], ref.at["r"])
            ours = "not on this run's grid" if found is None else _cell(*found)
        else:
            ts = [round(x, 6) for x in cmi["t"]]
            i = ts.index(round(ref.at["t"], 6)) if round(ref.at["t"], 6) in ts else None
            ours = ("not measured by this estimator" if mi is None else "not on this run's grid" if i is None
                    else f"{number(mi[i], 3)} +- {number(mi_err[i], 2)}")
        rows.append({"quantity": ref.quantity, "paper": ref.text, "ours": ours, "source": ref.source})
    validated = committed_data(f"cmi-{ctx.dataset.name}-validated.json")
    if validated is not None and stage.settings["estimator"] != "neural-validated":
        other, path = validated
        extra = []
        for r in (1, 2, 3, 6):
            mine, theirs = _grid_value(cmi, 0.3, r), _grid_value(other, 0.3, r)
            if mine is not None and theirs is not None:
                extra.append([f"t = 0.3, r = {r}", _cell(*mine), _cell(*theirs)])
        if extra:
            tables.append(table(f"Beside the project's validated run ({path}; its command is in docs/cmi-study.md)",
                                ["point", "this run", "validated run"], extra))
    return {
        "figures": [figure(ctx.relative("cmi", "cmi", "heatmap.png"), "I_t(A:C|B_r) over (r, t); a dot marks a "
                           "cell within 2 s.e. of 0, a triangle a lower bound"),
                    figure(ctx.relative("cmi", "cmi", "cmi_vs_r.png"), "CMI against r (log scale), one curve per t, "
                           "+-1 s.e.; open triangles: lower bounds"),
                    figure(ctx.relative("cmi", "cmi", "markov_length.png"), "Markov length xi(t), 95% intervals")],
        "tables": tables,
        "comparison": comparison(rows),
        "notes": [f"Estimator: {label}.", f"Caveat: {caveat}",
                  f"Data: {cmi['dataset']}; A = the pixel at {tuple(cmi['site'])}."],
    }
