"""The concurrence figure: every symmetry-breaking and nonlocality curve on one t axis, normalised, with 95% bands,
and every transition time with its 95% interval below them. Matplotlib (Agg), PNG written atomically.

It reads the dictionary of `Concurrence.to_dict` (also as loaded back from results.json), so a stored run can be
drawn again without recomputing it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from phasediff.report.phase_figures import T_LABEL, _save
from phasediff.stats import Z95

SB_COLOURS = {"ODE": "C0", "SDE": "C3"}


def _normalised(values, low=None, high=None):
    """values / max(values) (and the band's ends by the same factor); a curve that is 0 everywhere stays 0."""
    values = np.asarray(values, float)
    top = np.nanmax(values) if np.any(values > 0) else 1.0
    scale = lambda a: None if a is None else np.asarray(a, float) / top
    return values / top, scale(low), scale(high)


def _sb_bands(axes, measures) -> None:
    """The forward-backward t_SB of each sampler, its 95% interval shaded, on every panel."""
    for m in measures:
        if m["kind"] != "sb" or not m["name"].startswith("forward-backward") or m["t"] is None:
            continue
        colour = SB_COLOURS.get(m["name"].split()[-1], "k")
        for ax in axes:
            ax.axvline(m["t"], color=colour, lw=0.8, ls=":")
            if m["low"] is not None and m["high"] is not None:
                ax.axvspan(m["low"], m["high"], color=colour, alpha=0.12, lw=0)


def _panel_speciation(ax, data) -> None:
    sp = data["speciation"]
    t = np.asarray(sp["t"])
    chance = 1 / sp["classes"]
    lost = lambda p: (1 - np.asarray(p, float)) / (1 - chance)
    for name, key in (("ODE", "kept"), ("SDE", "kept_sde")):
        colour = SB_COLOURS[name]
        ax.plot(t, lost(sp[key]), "o-", ms=3, color=colour, label=f"forward-backward {name}")
        ax.fill_between(t, lost(sp[f"{key}_high"]), lost(sp[f"{key}_low"]), color=colour, alpha=0.2, lw=0)
        if f"exact_{key}" in sp:
            ax.plot(t, lost(sp[f"exact_{key}"]), "--", color=colour, lw=1, label=f"exact {name}")
    ax.axvline(sp["spectral_t"], color="k", lw=1, ls="-.", label=f"spectral t_S = {sp['spectral_t']:.4f}")
    ax.set_ylabel("class lost\n(1 - P(kept)) / (1 - chance)")
    ax.set_title("symmetry breaking: forward-backward, Wilson 95% bands", fontsize=9)


def _panel_gap(ax, data) -> None:
    t = np.asarray(data["t"])
    for i, r in enumerate(data["radii"]):
        entry = data["gap"][str(r)]
        for units, style in (("x0", "-"), ("score", "--")):
            mean, err = np.asarray(entry[units]), np.asarray(entry[f"{units}_stderr"])
            y, lo, hi = _normalised(mean, mean - Z95 * err, mean + Z95 * err)
            ax.plot(t, y, style, color=f"C{i}", lw=1.2, label=f"r = {r}, {units} units")
            ax.fill_between(t, lo, hi, color=f"C{i}", alpha=0.15, lw=0)
    ax.set_ylabel("locality gap / max")
    ax.set_title("locality gap, x0 units (solid) and score units (dashed), 95% bands", fontsize=9)


def _panel_recovery(ax, data) -> None:
    t = np.asarray(data["t"])
    for i, r in enumerate(data["radii"]):
        entry = data["recovery"][str(r)]
        mean, err = np.asarray(entry["excess"]), np.asarray(entry["excess_stderr"])
        y, lo, hi = _normalised(mean, mean - Z95 * err, mean + Z95 * err)
        ax.plot(t, y, "s-", ms=3, color=f"C{i}", label=f"r = {r}")
        ax.fill_between(t, lo, hi, color=f"C{i}", alpha=0.15, lw=0)
    ax.set_ylabel("recovery excess / max")
    ax.set_title("recovery MSE of local r minus global (paired), 95% bands", fontsize=9)


def _panel_cmi(ax, data) -> None:
    t = np.asarray(data["t"])
    styles = ["-", "--", ":", "-."]
    patches = sorted({entry["patch"] for entry in data["cmi"].values()})
    measured = any("source" in entry for entry in data["cmi"].values())
    for entry in data["cmi"].values():
        x, y = ((np.asarray(entry["dense_t"]), entry["dense_cmi"]) if "dense_t" in entry else
                (np.asarray(entry.get("t", t)), entry["cmi"]))
        err = entry.get("stderr")
        y, lo, hi = _normalised(y, *((None, None) if err is None else
                                     (np.asarray(entry["cmi"]) - Z95 * np.asarray(err),
                                      np.asarray(entry["cmi"]) + Z95 * np.asarray(err))))
        inside = (x > 0) & (x < 1)  # a run's grid may hold t = 0 and 1, which the logit axis cannot show
        x, y = x[inside], y[inside]
        lo, hi = (None, None) if lo is None else (lo[inside], hi[inside])
        k, r = entry["patch"], entry["radius"]
        colour = f"C{patches.index(k) if not measured else data['radii'].index(r)}"
        ax.plot(x, y, styles[data["radii"].index(r) % len(styles)] if not measured else "o-", ms=3, color=colour,
                lw=1.2, label=f"A = {k}x{k}, r = {r}")
        if lo is not None:
            ax.fill_between(x, lo, hi, color=colour, alpha=0.15, lw=0)
        ax.plot([entry["peak"]], [1.0], "v", color=colour, ms=4)
    ax.set_ylabel("CMI / max")
    if measured:
        source = next(iter(data["cmi"].values()))["source"].split(":")[0]
        ax.set_title(f"I_t(A:C|B_r) of a `phasediff cmi` run ({source} estimator), 95% bands from its standard "
                     "errors; triangles: peaks", fontsize=9)
    else:
        ax.set_title("exact I_t(A:C|B_r), centre k x k patch (no sampling error; triangles: exact peaks)", fontsize=9)


def _panel_sliding(ax, data) -> None:
    for i, entry in enumerate(data["sliding"].values()):
        c = np.asarray(entry["centres"])
        ax.plot(c, entry["accuracy"], "o-", ms=3, color=f"C{i}", label=f"r = {entry['radius']}, w = {entry['width']:g}")
        ax.fill_between(c, entry["low"], entry["high"], color=f"C{i}", alpha=0.2, lw=0)
    ax.set_ylabel("class accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("sliding window: global in [a, a + w], local outside; x = window centre; Wilson 95% bands",
                 fontsize=9)


def _panel_conditioning(ax, data) -> None:
    for i, entry in enumerate(data["conditioning"].values()):
        c = np.asarray(entry["centres"])
        ax.plot(c, entry["accuracy"], "D-", ms=3, color=f"C{i + 4}", label=f"label in [a, a + {entry['width']:g}]")
        ax.fill_between(c, entry["low"], entry["high"], color=f"C{i + 4}", alpha=0.2, lw=0)
    first = next(iter(data["conditioning"].values()))
    ax.axhline(first["label_everywhere"]["accuracy"], color="k", lw=0.8, ls="--", label="label at every t")
    ax.axhline(first["label_nowhere"]["accuracy"], color="0.5", lw=0.8, ls=":", label="no label (chance)")
    ax.set_ylabel("class accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("conditioning window: the label (guided) only in [a, a + w]; x = window centre; Wilson 95% bands",
                 fontsize=9)


def _panel_sliding_fd(ax, data) -> None:
    for i, entry in enumerate(data["sliding"].values()):
        if "fd" not in entry:
            continue
        c = np.asarray(entry["centres"])
        ax.plot(c, entry["fd"], "o-", ms=3, color=f"C{i}", label=f"r = {entry['radius']}, w = {entry['width']:g}")
        ax.fill_between(c, entry["fd_low"], entry["fd_high"], color=f"C{i}", alpha=0.2, lw=0)
        ax.axhline(entry["all_local"]["fd"], color=f"C{i}", lw=0.8, ls="--")
    first = next(entry for entry in data["sliding"].values() if "fd" in entry)
    ax.axhline(first["all_global"]["fd"], color="k", lw=0.8, ls="--", label="all-global (dashed: all-local)")
    values = [v for entry in data["sliding"].values() if "fd" in entry for v in entry["fd"] if v > 0]
    ax.set_yscale("symlog", linthresh=0.5 * min(values, default=0.2))
    ax.set_ylim(bottom=0)
    ax.set_ylabel("judge FD")
    ax.set_title("sliding window: Frechet distance in the judge's features (bias-corrected, 95% bootstrap bands)",
                 fontsize=9)


def _panel_times(ax, data) -> None:
    measures = [m for m in data["measures"] if m["t"] is not None]
    colours = {"sb": "C3", "nl": "C0", "ref": "0.5"}
    for y, m in enumerate(measures):
        low = m["t"] if m["low"] is None else m["low"]
        high = m["t"] if m["high"] is None else m["high"]
        # a percentile interval need not hold its point estimate: draw the bar to the estimate, not past it
        ax.errorbar(m["t"], y, xerr=[[max(m["t"] - low, 0.0)], [max(high - m["t"], 0.0)]], fmt="o", ms=3,
                    color=colours[m["kind"]], capsize=2, lw=1)
        if m["low"] is None or m["high"] is None:  # an open end: an arrow towards it
            ax.annotate("", xy=(m["t"] + (0.02 if m["high"] is None else -0.02), y), xytext=(m["t"], y),
                        arrowprops={"arrowstyle": "->", "color": colours[m["kind"]], "lw": 0.8})
        if m["exact"] is not None:
            ax.plot(m["exact"], y, "x", color="k", ms=4)
    ax.set_yticks(range(len(measures)), [m["name"] for m in measures], fontsize=6)
    ax.invert_yaxis()
    ax.set_title("transition times with 95% intervals (red: t_SB, blue: t_NL, grey: reference; x: exact)",
                 fontsize=9)


def concurrence_figure(data: dict, path: Path, title: str | None = None) -> Path:
    """Stacked panels on one t axis, logit-scaled (symmetry breaking, conditioning window, locality gap, recovery
    excess, CMI, sliding window, transition times), each curve divided by its maximum (the sliding window's accuracy as it is), with its
    95% band; the forward-backward t_SB and its interval are drawn on every panel."""
    panels = [_panel_speciation] + ([_panel_conditioning] if data.get("conditioning") else [])
    panels += [_panel_gap, _panel_recovery]
    if data["cmi"]:
        panels.append(_panel_cmi)
    if data["sliding"]:
        panels.append(_panel_sliding)
        if any("fd" in entry for entry in data["sliding"].values()):
            panels.append(_panel_sliding_fd)
    count = sum(1 for m in data["measures"] if m["t"] is not None)
    heights = [2.2] * len(panels) + [max(2.5, 0.16 * count)]
    fig, axes = plt.subplots(len(heights), 1, figsize=(9.5, sum(heights) + 0.8), sharex=True,
                             gridspec_kw={"height_ratios": heights})
    for ax, draw in zip(axes, panels):
        draw(ax, data)
        ax.legend(fontsize=6, loc="upper left", ncol=2, framealpha=0.6)
        ax.grid(alpha=0.3)
    _panel_times(axes[-1], data)
    axes[-1].grid(alpha=0.3)
    _sb_bands(axes, data["measures"])
    starts = [min(data["t"])] + [min(entry["centres"]) for key in ("sliding", "conditioning")
                                 for entry in data.get(key, {}).values()]
    axes[-1].set_xscale("logit")  # both ends stretched: the transitions of gmm2 sit within a few hundredths of 1
    axes[-1].set_xlim(0.8 * min(starts), 1 - 0.5 * (1 - max(data["t"])))
    ticks = [t for t in (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995)
             if 0.8 * min(starts) <= t <= 1 - 0.5 * (1 - max(data["t"]))]
    axes[-1].set_xticks(ticks, [f"{t:g}" for t in ticks])
    axes[-1].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[-1].set_xlabel(T_LABEL + ", logit scale")
    if title:
        axes[0].set_title(f"{title}: {axes[0].get_title()}", fontsize=9)
    return _save(fig, Path(path))
