"""The default study: CMI heatmaps on MNIST and on the exact models, one run directory each, and an
index.html that shows them side by side."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from phasediff.data.registry import load_dataset, load_model
from phasediff.info.cmi import measure_cmi
from phasediff.progress import progress
from phasediff.report.runs import write_cmi_run
from phasediff.rundir import run_directory, save_json

T_GRID = [round(0.1 * i, 1) for i in range(11)]
R_GRID = list(range(1, 13))

# (run name, dataset spec, estimator, what it shows)
STUDY_RUNS = [
    ("mnist-gaussian", "mnist:crop=27", "gaussian",
     "MNIST (27 x 27 crop, 60,000 images), Gaussian log-det estimator with jackknife errors"),
    ("mnist-gmm-exact", "gmm:data=mnist,crop=27,k=10,rank=8", "exact",
     "Gaussian mixture fitted to MNIST (10 k-means components, rank 8): exact densities, Monte Carlo errors"),
    ("grf-exact", "grf:L=27,ell=3", "exact", "Gaussian random field, covariance exp(-d/3): exact"),
    ("gmrf-exact", "gmrf:L=27,kappa=0.5", "exact", "Nearest-neighbour GMRF: exact; zero at t = 0 (Markov)"),
    ("gmm2-exact", "gmm2:L=27,mu=1,sigma=1", "exact", "Two-component mixture: exact closed form, a true transition"),
]


def run_study(out: Path, seed: int = 0, force: bool = False) -> dict:
    """Run every study entry on the paper's grid (t = 0..1 step 0.1, r = 1..12, centre pixel)."""
    summary = {"t": T_GRID, "r": R_GRID, "runs": []}
    with run_directory(out, force=force) as work:
        for name, spec, estimator, caption in progress(STUDY_RUNS, desc="study", unit="run"):
            source = load_model(spec) if estimator == "exact" else load_dataset(spec, seed=seed)
            result = measure_cmi(source, T_GRID, R_GRID, estimator, seed=seed)
            write_cmi_run(work / name, result, {"spec": spec, "estimator": estimator, "t": T_GRID, "r": R_GRID,
                                                "seed": seed})
            peak_t, peak_r = np.unravel_index(np.argmax(result.cmi), result.cmi.shape)
            summary["runs"].append({
                "name": name, "spec": spec, "estimator": estimator, "caption": caption,
                "peak_cmi": float(result.cmi[peak_t, peak_r]),
                "peak_stderr": None if result.stderr is None else float(result.stderr[peak_t, peak_r]),
                "peak_t": T_GRID[peak_t], "peak_r": R_GRID[peak_r], "seconds": result.seconds,
            })
        save_json(work / "summary.json", summary)
        (work / "index.html").write_text(_index_html(summary))
    return summary


def _index_html(summary: dict) -> str:
    rows, sections = [], []
    for run in summary["runs"]:
        err = "exact" if run["peak_stderr"] is None else f"&plusmn; {run['peak_stderr']:.4f}"
        rows.append(f"<tr><td>{html.escape(run['name'])}</td><td><code>{html.escape(run['spec'])}</code></td>"
                    f"<td>{run['estimator']}</td><td>{run['peak_cmi']:.4f} {err}</td><td>{run['peak_t']:g}</td>"
                    f"<td>{run['peak_r']}</td><td>{run['seconds']:.1f}</td></tr>")
        sections.append(f"<h2>{html.escape(run['name'])}</h2><p>{html.escape(run['caption'])}</p>"
                        f"<img src='{run['name']}/heatmap.png'><img src='{run['name']}/cmi_vs_r.png'>")
    return (
        "<!doctype html><meta charset='utf-8'><title>phasediff study</title>"
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}img{max-width:49%}"
        "td,th{padding:2px 8px;text-align:left}</style>"
        "<h1>I<sub>t</sub>(A:C|B<sub>r</sub>) along x<sub>t</sub> = (1-t) x<sub>0</sub> + t z</h1>"
        "<p>A = centre pixel, B<sub>r</sub> = Chebyshev ring 1..r, C = the rest; values in nats with one "
        "standard error where the estimator has one.</p>"
        "<table><tr><th>run</th><th>spec</th><th>estimator</th><th>peak CMI</th><th>at t</th><th>at r</th>"
        "<th>seconds</th></tr>" + "".join(rows) + "</table>" + "".join(sections)
    )
