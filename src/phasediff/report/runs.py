"""Run directories and text tables of CMI results."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from phasediff.info.result import CMIResult
from phasediff.report.figures import cmi_heatmap, cmi_versus_radius, markov_length_figure
from phasediff.rundir import run_directory, save_arrays, save_json, save_yaml


def write_cmi_run(out: Path, result: CMIResult, config: dict, force: bool = False) -> Path:
    """config.yaml, results.json, arrays.npz, heatmap.png, cmi_vs_r.png, markov_length.png and log.txt,
    written atomically (the result is analysed first if it has not been)."""
    if not result.analysis:
        result.analyse()
    with run_directory(out, force=force) as work:
        save_yaml(work / "config.yaml", {k: v for k, v in config.items() if k not in ("json", "quiet")})
        save_json(work / "results.json", result.to_dict())
        save_arrays(work / "arrays.npz", t=np.array(result.t), r=np.array(result.r), cmi=result.cmi,
                    stderr=result.stderr)
        cmi_heatmap(result, work / "heatmap.png")
        cmi_versus_radius(result, work / "cmi_vs_r.png")
        markov_length_figure(result, work / "markov_length.png")
        (work / "log.txt").write_text(cmi_table(result) + "\n")
    return Path(out)


def cmi_table(result: CMIResult) -> str:
    """A text table: one row per t, one column per r; value (s.e.) when a standard error exists, >= before a
    lower bound."""
    cmi = np.asarray(result.cmi)
    err = None if result.stderr is None else np.asarray(result.stderr)
    bound = result.lower_bound
    width = 18 if err is not None else 10
    lines = [f"I_t(A:C|B_r) in nats, {result.estimator} estimator, {result.dataset}",
             f"site {result.site[0]},{result.site[1]}, patch {result.patch}, {result.seconds:.2f} s",
             "   t \\ r " + "".join(f"{r:>{width}d}" for r in result.r)]
    for i, t in enumerate(result.t):
        cells = [(">=" if bound[i, j] else "") + f"{cmi[i, j]:.4f}" + (f" ({err[i, j]:.4f})" if err is not None else "")
                 for j in range(len(result.r))]
        lines.append(f"{t:8.3g} " + "".join(f"{c:>{width}}" for c in cells))
    if bound.any():
        lines.append(f">=: a lower bound ({result.details.get('lower_bound_rule', 'the estimator reads low there')})")
    if result.analysis:
        fit, peak, window = (result.analysis[k] for k in ("markov_length", "peak", "window"))
        xi = ", ".join(f"{t:g}: {x:.2f}" if x is not None else f"{t:g}: -" for t, x in zip(fit["t"], fit["xi"]))
        lines.append(f"Markov length xi(t): {xi}")
        lines.append(f"r={result.analysis['radius']}: peak at t={peak['t_peak']:g}"
                     + (f" [{peak['low']:g}, {peak['high']:g}]" if peak["low"] is not None else ""))
        if window["t_start"] is not None:
            lines.append(f"window I > {window['delta']:g}: [{window['t_start']:.3f}, {window['t_end']:.3f}]")
        else:
            lines.append(f"window I > {window['delta']:g}: none")
    lines += specialised_links_table(result.details.get("specialised", []))
    return "\n".join(lines)


def specialised_links_table(links: list[dict]) -> list[str]:
    """One line per t of a specialised run, in increasing t: a link's steps, best step, validation cross-entropy,
    generalisation gap (validation minus training loss at the best step) and why a chain link was retrained, or
    why the amortised network serves at that t."""
    if not any("best_step" in link for link in links):
        return []
    lines = ["specialised links: t, steps, best step, validation cross-entropy, gap, retrained"]
    for link in sorted(links, key=lambda link: link["t"]):
        if "best_step" not in link:
            lines.append(f"{link['t']:8.3g} none: the amortised network serves, {link.get('reason', 'no link')}")
            continue
        gap = "-" if link["generalisation_gap"] is None else f"{link['generalisation_gap']:+.4f}"
        restart = link.get("restart") or {}
        retrained = ("no" if not restart.get("reason") else
                     f"{restart['reason']}: {'kept the retrained copy' if restart['restarted'] else 'kept the chain'}")
        lines.append(f"{link['t']:8.3g} {link['steps']:6d} {link['best_step']:6d} {link['best_val']:10.4f} "
                     f"{gap:>8} {retrained}")
    return lines
