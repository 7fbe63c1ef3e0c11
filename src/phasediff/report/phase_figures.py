"""Figures of the phase diagram of local denoising: the recovery diagram, the locality gap, and the gap next to
the CMI on the same (r, t) axes. Matplotlib (Agg), PNG files written atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from phasediff.diagnostics.gap import LocalityGap  # noqa: E402
from phasediff.diagnostics.recovery import DEFAULT_LEVEL, RecoveryDiagram, radius_label  # noqa: E402
from phasediff.info.result import CMIResult  # noqa: E402
from phasediff.rundir import write_atomic  # noqa: E402

LOG_FLOOR = 1e-6
T_LABEL = "t (0 = data, 1 = noise)"


def _edges(values) -> np.ndarray:
    """Cell edges around sorted centres: midpoints, the end cells as wide as their neighbours' half gaps."""
    v = np.asarray(values, float)
    if len(v) == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def log_norm(*tables: np.ndarray) -> LogNorm:
    """A log colour scale from the largest finite value down to the smallest positive one, at most four decades
    (and not below LOG_FLOOR)."""
    values = np.concatenate([np.ravel(t) for t in tables])
    values = values[np.isfinite(values)]
    top = max(float(values.max()) if len(values) else LOG_FLOOR * 10, LOG_FLOOR * 10)
    positive = values[values > 0]
    bottom = max(float(positive.min()) if len(positive) else LOG_FLOOR, top * 1e-4, LOG_FLOOR)
    return LogNorm(vmin=bottom, vmax=top)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    write_atomic(Path(path), lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return Path(path)


def recovery_figure(diagram: RecoveryDiagram, path: Path, level: float = DEFAULT_LEVEL) -> Path:
    """MSE over (r, T_f) in log colour, the value in each cell, and the ``level`` contour: per radius the T_f
    where the MSE first reaches the level, with bars spanning the crossings of the 95% interval's ends
    (open-ended bars where an end never crosses)."""
    order = np.argsort(diagram.t_final)
    t = np.asarray(diagram.t_final, float)[order]
    mse = np.asarray(diagram.mse, float)[order]
    cols = np.arange(len(diagram.radii))
    fig, ax = plt.subplots(figsize=(2.2 + 0.75 * len(cols), 5.0))
    mesh = ax.pcolormesh(_edges(cols), _edges(t), np.maximum(mse, LOG_FLOOR), cmap="magma",
                         norm=log_norm(mse), shading="flat")
    fig.colorbar(mesh, ax=ax, label="recovery MSE per pixel")
    for i, ti in enumerate(t):
        for j in cols:
            value = mse[i, j]
            ax.text(j, ti, f"{value:.3f}" if value >= 1e-3 else f"{value:.0e}", ha="center", va="center",
                    fontsize=6, color="white" if value < np.sqrt(mse.max() * max(mse.min(), LOG_FLOOR)) else "black")
    xs, ys, lower, upper = [], [], [], []
    for j, c in enumerate(diagram.threshold_contour(level)):
        if c.t is None:
            ax.annotate("", xy=(j, t[-1] + 0.02), xytext=(j, t[-1] - 0.04),
                        arrowprops=dict(arrowstyle="->", color="cyan"))
            continue
        lo = t[0] if c.t_lo is None else c.t_lo
        hi = t[-1] if c.t_hi is None else c.t_hi
        xs.append(j), ys.append(c.t), lower.append(c.t - lo), upper.append(hi - c.t)
    if xs:
        ax.errorbar(xs, ys, yerr=(lower, upper), fmt="o-", color="cyan", capsize=4, lw=1.5)
    ax.set_xticks(cols, [radius_label(r) for r in diagram.radii])
    ax.set_xlabel("denoiser radius r")
    ax.set_ylabel("T_f (noised to, then denoised back)")
    ax.set_ylim(_edges(t)[0], _edges(t)[-1])
    ax.set_title(f"Local recovery, {diagram.n_images} images, Euler steps {min(diagram.steps)}-{max(diagram.steps)}\n"
                 f"cyan: first T_f with MSE = {level:g}, bars: 95% interval", fontsize=9)
    return _save(fig, path)


def _log_mesh(ax, fig, times, radii, table, label: str) -> tuple[np.ndarray, np.ndarray]:
    """A (radius, time) table in log colour with its colour bar; returns (sorted times, radii)."""
    t = np.asarray(times, float)
    order = np.argsort(t)
    r = np.asarray(radii, float)
    values = np.asarray(table, float)[order]
    mesh = ax.pcolormesh(_edges(r), _edges(t[order]), np.maximum(values, LOG_FLOOR), cmap="viridis",
                         norm=log_norm(values), shading="flat")
    fig.colorbar(mesh, ax=ax, label=label)
    return t[order], r


def _gap_panel(ax, fig, gap: LocalityGap, tolerance: float | None) -> None:
    _, r = _log_mesh(ax, fig, gap.times, gap.radii, gap.gap, "locality gap (per-pixel MSE)")
    if tolerance is not None:
        shown = False
        for radius in gap.radii:
            window = gap.window(radius, tolerance)
            if window is not None:
                ax.plot([radius, radius], window, color="red", lw=3, solid_capstyle="butt",
                        label=None if shown else f"gap > {tolerance:g}")
                shown = True
        if shown:
            ax.legend(loc="upper right", fontsize=7, framealpha=0.6)
    ax.set_xticks(r, [str(v) for v in gap.radii])
    ax.set_xlabel("radius r")
    ax.set_ylabel(T_LABEL)
    ax.set_title(f"Locality gap ({gap.mode}, n = {gap.n})", fontsize=9)


def gap_heatmap(gap: LocalityGap, path: Path, tolerance: float | None = None) -> Path:
    """Delta(t, r) over (r, t) in log colour; with ``tolerance``, each radius's window (hull) as a red bar."""
    fig, ax = plt.subplots(figsize=(2.5 + 0.6 * len(gap.radii), 5.0))
    _gap_panel(ax, fig, gap, tolerance)
    return _save(fig, path)


def gap_cmi_figure(gap: LocalityGap, cmi: CMIResult | None, path: Path, tolerance: float | None = None) -> Path:
    """The gap heatmap and, when a CMI result is given, the CMI heatmap beside it on the same (r, t) axes
    (numeric radius and time, shared limits; both in log colour, CMI at or below 0 shown at the floor)."""
    if cmi is None:
        return gap_heatmap(gap, path, tolerance)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 5.0), sharey=True)
    _gap_panel(left, fig, gap, tolerance)
    t, r = _log_mesh(right, fig, cmi.t, cmi.r, cmi.cmi, "CMI (nats)")
    right.set_xlabel("buffer radius r")
    right.set_title(f"I_t(A:C|B_r), {cmi.estimator} estimator", fontsize=9)
    x_edges = np.concatenate([_edges(gap.radii), _edges(r)])
    y_edges = np.concatenate([_edges(gap.times), _edges(t)])
    for ax in (left, right):
        ax.set_xlim(x_edges.min(), x_edges.max())
        ax.set_ylim(y_edges.min(), y_edges.max())
    return _save(fig, path)


def common_radius(members) -> int | None:
    """The radius with a local model in the most members (the smallest among ties): the gap panel's radius, so
    that its columns compare the same denoiser size."""
    counts: dict[int, int] = {}
    for m in members:
        for r in m["radii"]:
            counts[int(r)] = counts.get(int(r), 0) + 1
    return min(counts, key=lambda r: (-counts[r], r)) if counts else None


def phases_figure(members, parameter: str, path: Path) -> None:
    """The phase diagram of a family: the parameter across, t up; colour the locality gap of one radius (the
    one most members have, `common_radius`; left) and the CMI at that radius, exact or the neural estimate
    (right); above each column, r* (the smallest radius whose all-local samples match the data; '>R' where
    none of the measured radii up to R does)."""
    radius = common_radius(members)
    with_cmi = any(m["cmi"] for m in members)
    fig, axes = plt.subplots(1, 2 if with_cmi else 1, figsize=(11 if with_cmi else 6.5, 4.6), squeeze=False)
    columns_at = np.arange(len(members))  # one equal-width column per member, labelled by its value
    panels = [("gap", f"locality gap of r = {radius} (per-pixel MSE)")] + (
        [("cmi", f"I_t(A:C|B_{radius}), nats")] if with_cmi else [])
    for ax, (what, label) in zip(axes[0], panels):
        columns, times = [], None
        for m in members:
            column = None
            if what == "gap" and m["gap"] and radius in m["gap"]["radii"]:
                times = m["gap"]["times"]
                column = np.asarray(m["gap"]["gap"])[:, m["gap"]["radii"].index(radius)]
            elif what == "cmi" and m["cmi"] and radius in m["cmi"]["r"]:
                times = m["cmi"]["t"]
                column = np.asarray(m["cmi"]["cmi"])[:, m["cmi"]["r"].index(radius)]
            columns.append(column)
        if times is None:
            continue
        grid = np.array([np.full(len(times), np.nan) if c is None else c for c in columns]).T
        norm = log_norm(grid) if (np.isfinite(grid) & (grid > 0)).any() else None
        mesh = ax.pcolormesh(columns_at, times, np.where(grid > 0, grid, np.nan), norm=norm, cmap="viridis",
                             shading="nearest")
        fig.colorbar(mesh, ax=ax, label=label)
        for x, (m, column) in enumerate(zip(members, columns)):
            star = m["r_star"] if m["r_star"] is not None else f">{max(m['radii'] or [0])}"
            ax.annotate(f"r*={star}", (x, max(times)), xytext=(0, 8), textcoords="offset points", ha="center",
                        fontsize=7, annotation_clip=False)
            if column is None:
                ax.text(x, float(np.mean(times)), f"no r = {radius}\nmodel", ha="center", va="center", fontsize=6,
                        rotation=90, color="0.4")
        ax.set_xticks(columns_at, [f"{m['value']:g}" for m in members])
        ax.set_xlabel(parameter)
        ax.set_ylabel(T_LABEL)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def r_star_figure(members, parameter: str, largest: int, path: Path) -> None:
    """r* against the correlation length of the data (with its interval where it is measured): a point at r*
    and a bar down to the largest measured radius below it that fails (the threshold lies above that end); members
    where no measured radius matches are drawn at largest + 1 with an upward arrow from their largest failing
    radius. The dashed line is r = xi; the xi axis is logarithmic when the lengths span more than a decade."""
    from phasediff.diagnostics.phases import r_star_bracket

    fig, ax = plt.subplots(figsize=(5.8, 4.4))
    kinds = set()
    for m in members:
        xi = m["data_correlation_length"]
        kinds.add(xi.get("kind", "xi_2").split(" (")[0])
        err = None if xi["low"] is None or xi["low"] == xi["high"] else [[xi["value"] - xi["low"]],
                                                                          [xi["high"] - xi["value"]]]
        low, star = r_star_bracket(m)
        found = star is not None
        y = star if found else largest + 1
        ax.errorbar(xi["value"], y, xerr=err, yerr=[[y - low], [0]], fmt="o" if found else "^",
                    color="C0" if found else "C3", capsize=2)
        ax.annotate(f"{parameter}={m['value']:g}", (xi["value"], y), xytext=(4, 4), textcoords="offset points",
                    fontsize=7)
    xs = [m["data_correlation_length"]["value"] for m in members if m["data_correlation_length"]["value"] > 0]
    if xs:
        spread = max(xs) > 10 * min(xs)  # lengths near a critical point span decades: log axis
        grid = np.geomspace(min(xs) / 1.5, max(xs) * 1.5, 50) if spread else np.linspace(0, max(xs) * 1.1, 50)
        ax.plot(grid, grid, "k--", lw=0.8, label="r = xi")
        ax.legend(loc="upper left", fontsize=7)
        if spread:
            ax.set_xscale("log")
    ax.axhline(largest + 0.5, color="k", ls=":", lw=1)
    ax.set_xlabel("correlation length of the data xi (sites; " + ", ".join(sorted(kinds)) + ")")
    ax.set_ylabel("r*: smallest radius whose all-local samples match")
    ax.set_ylim(0, largest + 1.6)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
