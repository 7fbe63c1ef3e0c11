"""The report's view of the recovery diagram stage: thresholds with intervals, beside the paper and the committed full run."""

from __future__ import annotations

import json

import numpy as np

from phasediff.reproduce.paper import references
from phasediff.reproduce.stages import Context, Stage
from phasediff.reproduce.tables import comparison, figure, fixed, interval, table

TITLE = "Recovery diagram and locality gaps"
QUESTION = ("Up to which noise level T_f does a local denoiser of radius r bring a noised test image back "
            "(recovery MSE below 0.03 per pixel), and where along the path do local and global denoisers disagree "
            "(the locality gap)?")


FIGURES = {
    "recovery.png": "Recovery MSE per pixel over (r, T_f), log colour scale; the line marks the 0.03 contour",
    "gap-network-forward.png": "Locality gap of the local networks against the global U-Net on the forward "
                               "process, per-pixel MSE of the two x_0 estimates (log colour scale)",
    "gap-network-trajectory.png": "The same gap along the global sampler's own trajectories",
    "gap-analytic.png": "Analytic family: patch posterior of radius r against the empirical posterior",
    "gap-cmi.png": "The network gap beside the CMI heatmap of the cmi stage, on the same t axis",
}


def _command(settings: dict, checkpoints: dict) -> str:
    local = ",".join(str(checkpoints[f"local-r{r}"]) for r in settings["radii"])
    model = f" --model {checkpoints['global']}" if "global" in checkpoints else ""
    return (f"phasediff diagram --data {settings['spec']} --local {local}{model} --images {settings['images']} "
            f"--t-final {','.join(f'{t:g}' for t in settings['t_final'])} --steps {settings['steps']} "
            f"--analytic {settings['analytic']} --tolerance {settings['tolerance']:g} --precision "
            f"{settings['precision']} --cmi CMI_STAGE/cmi/results.json --out diagram")


def committed_run(dataset: str) -> tuple[dict, str] | None:
    """The project's committed full-scale diagram of this dataset (docs/data/diagram-DATA.json), if present."""
    from phasediff.report.samples import CHECKPOINTS

    path = CHECKPOINTS.parent / "docs" / "data" / f"diagram-{dataset}.json"
    try:
        return json.loads(path.read_text()), f"docs/data/{path.name}"
    except (OSError, ValueError):
        return None


def _threshold(entry: dict | None) -> str:
    if entry is None:
        return "-"
    if entry["t"] is None:
        return "not reached on the grid"
    text = interval(entry["t"], entry["t_lo"], entry["t_hi"], places=3)
    return text + (" (already at the first T_f)" if entry["below_grid"] else "")


def command(stage: Stage) -> str:
    return _command(stage.settings, stage.checkpoints)


def present(stage: Stage, record: dict, ctx: Context) -> dict:
    summary = record["result"]["diagram"]
    recovery = summary["recovery"]
    contour = {c["radius"]: c for c in recovery["contour"]["0.03"]}
    committed = committed_run(ctx.dataset.name)
    theirs = {} if committed is None else {c["radius"]: c for c in committed[0]["recovery"]["contour"]["0.03"]}
    columns = ["radius", "T_f where the recovery MSE reaches 0.03 [95%]"]
    if committed is not None:
        columns.append(f"committed full run ({committed[1]}: {committed[0]['n_images']} images)")
    rows = [[radius, _threshold(entry)] + ([_threshold(theirs.get(radius))] if committed is not None else [])
            for radius, entry in contour.items()]
    tables = [table("Recovery threshold per radius", columns, rows,
                    "'global': the global U-Net under the same protocol. Interval from the ends of the MSE's 95% "
                    "interval.")]
    mse, lo, hi = (np.asarray(recovery[k], float) for k in ("mse", "lo", "hi"))
    tables.append(table(f"Recovery MSE per pixel [95%], {recovery['n_images']} test images",
                        ["T_f"] + [f"r = {r}" if r != "global" else "global" for r in recovery["radii"]],
                        [[f"{t:g}"] + [interval(mse[i, j], lo[i, j], hi[i, j], digits=2)
                                       for j in range(len(recovery["radii"]))]
                         for i, t in enumerate(recovery["t_final"])]))
    gap_rows = []
    for mode in ("forward", "trajectory"):
        windows = summary.get(f"windows_network_{mode}")
        if windows:
            gap_rows += [[mode, f"r = {r}", "never" if w is None else f"[{fixed(w[0])}, {fixed(w[1])}]"]
                         for r, w in windows.items()]
    if gap_rows:
        tables.append(table(f"Where the locality gap exceeds {summary['tolerance']:g} per pixel (network against "
                            "the global U-Net)", ["process", "radius", "window of t"], gap_rows,
                            "The gaps with their 95% intervals per t are in the data file."))
    rows = []
    for ref in references(ctx.dataset.name, "diagram"):
        if ref.at.get("all"):
            ours = _all_fail(recovery)
        else:
            entry = contour.get(ref.at["radius"])
            ours = "radius not in this run" if entry is None else _threshold(entry)
        rows.append({"quantity": ref.quantity, "paper": ref.text, "ours": ours, "source": ref.source})
    folder = ctx.folder("diagram") / "diagram"
    figures = [figure(ctx.relative("diagram", "diagram", name), caption) for name, caption in FIGURES.items()
               if (folder / name).is_file()]
    notes = []
    if stage.settings["missing"]:
        notes.append("No checkpoint for radius " + ", ".join(map(str, stage.settings["missing"])) + " in "
                     f"checkpoints/{ctx.dataset.folder}: left out.")
    if "global" not in stage.checkpoints:
        notes.append("No global checkpoint: no locality gap.")
    if not stage.settings["analytic"]:
        notes.append("The analytic family (patch posterior against the empirical posterior) is left out in this "
                     "mode (--analytic 0).")
    return {"figures": figures, "tables": tables, "comparison": comparison(rows), "notes": notes}


def _all_fail(recovery: dict) -> str:
    """The first T_f of the grid from which every local radius has recovery MSE >= 0.03."""
    mse = np.asarray(recovery["mse"], float)
    local = [j for j, r in enumerate(recovery["radii"]) if r != "global"]
    fails = np.all(mse[:, local] >= 0.03, axis=1)
    for i in range(len(fails)):
        if fails[i:].all():
            return f"T_f >= {recovery['t_final'][i]:g} (on this run's grid)"
    return "no T_f of the grid"
