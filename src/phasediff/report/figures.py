"""Figures of CMI runs and datasets (Matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from phasediff.info.result import CMIResult  # noqa: E402

LOG_FLOOR = 1e-5


def _title(result: CMIResult) -> str:
    return f"I_t(A:C|B_r), {result.estimator} estimator\n{textwrap.shorten(result.dataset, 80, placeholder=' ...')}"


def cmi_heatmap(result: CMIResult, path: Path) -> None:
    """Heatmap over (r, t), in log colour where the positive values span more than a decade (values at or below
    the colour scale's floor, max / 10^4, take its lowest colour); cells whose value is within 2 standard errors
    of zero carry a dot, lower bounds a triangle."""
    from phasediff.report.phase_figures import log_norm

    cmi = np.asarray(result.cmi, dtype=float)
    positive = cmi[np.isfinite(cmi) & (cmi > 0)]
    logarithmic = positive.size > 0 and positive.max() > 10 * positive.min()
    norm, label = (log_norm(cmi), "CMI (nats, log scale)") if logarithmic else (None, "CMI (nats)")
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * len(result.r) + 1.5, 1.0 + 0.35 * len(result.t) + 1.0))
    shown = np.maximum(cmi, norm.vmin) if logarithmic else cmi
    image = ax.imshow(shown, origin="lower", aspect="auto", cmap="viridis", norm=norm,
                      extent=(-0.5, len(result.r) - 0.5, -0.5, len(result.t) - 0.5))
    ax.set_xticks(range(len(result.r)), [str(r) for r in result.r])
    ax.set_yticks(range(len(result.t)), [f"{t:g}" for t in result.t])
    ax.set_xlabel("buffer radius r")
    ax.set_ylabel("t (0 = data, 1 = noise)")
    ax.set_title(_title(result), fontsize=9)
    fig.colorbar(image, ax=ax, label=label)
    marked = False
    if result.stderr is not None:
        ti, ri = np.nonzero(cmi < 2 * np.asarray(result.stderr))
        ax.plot(ri, ti, "w.", markersize=3, label="< 2 s.e. from 0")
        marked = len(ti) > 0
    ti, ri = np.nonzero(result.lower_bound)
    if len(ti):
        ax.plot(ri, ti, "^", markersize=4, markerfacecolor="white", markeredgecolor="black", markeredgewidth=0.5,
                linestyle="none", label="lower bound")
        marked = True
    if marked:
        ax.legend(loc="upper right", fontsize=7, framealpha=0.5)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cmi_versus_radius(result: CMIResult, path: Path) -> None:
    """CMI against r on a log scale, one curve per t, with +-1 standard-error bars; lower bounds as upward
    triangles."""
    cmi = np.asarray(result.cmi)
    err = None if result.stderr is None else np.asarray(result.stderr)
    bound = result.lower_bound
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    colours = plt.cm.plasma(np.linspace(0, 0.9, len(result.t)))
    for i, (t, colour) in enumerate(zip(result.t, colours)):
        y = np.maximum(cmi[i], LOG_FLOOR)
        if err is None:
            ax.plot(result.r, y, "o-", color=colour, markersize=3, label=f"t={t:g}")
        else:
            lower = np.minimum(err[i], y - LOG_FLOOR)
            ax.errorbar(result.r, y, yerr=(lower, err[i]), fmt="o-", color=colour, markersize=3, capsize=2,
                        label=f"t={t:g}" + (" (lower bounds)" if bound[i].all() else ""))
        if bound[i].any():
            ax.plot(np.asarray(result.r)[bound[i]], y[bound[i]], "^", color=colour, markersize=6,
                    markerfacecolor="none", linestyle="none")
    ax.set_yscale("log")
    ax.set_ylim(bottom=LOG_FLOOR)
    ax.set_xlabel("buffer radius r")
    ax.set_ylabel("CMI (nats)")
    ax.set_title(_title(result) + ("" if err is None else ", bars: 1 s.e."), fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def image_grid(images: np.ndarray, path: Path, columns: int = 8, title: str | None = None) -> None:
    """A grid of images (N, C, H, W); each image is scaled to its dataset's value range."""
    n = len(images)
    rows = int(np.ceil(n / columns))
    lo, hi = float(images.min()), float(images.max())
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.1 + (0.4 if title else 0)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image in zip(axes.ravel(), images):
        picture = image[0] if image.shape[0] == 1 else np.moveaxis(image[:3], 0, -1)
        ax.imshow(np.clip((picture - lo) / max(hi - lo, 1e-12), 0, 1), cmap="gray", vmin=0, vmax=1)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markov_length_figure(result: CMIResult, path: Path) -> None:
    """xi(t) with 95% intervals (open intervals drawn to the top of the axes); t with no fit are left out."""
    fit = result.analysis["markov_length"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    rows = [(t, x, lo, hi) for t, x, lo, hi in zip(fit["t"], fit["xi"], fit["xi_low"], fit["xi_high"])
            if x is not None and np.isfinite(x)]
    if rows:
        t, xi, lo, hi = (np.array(v, float) for v in zip(*rows))
        top = max(2 * np.nanmax(xi), 1.0)
        hi = np.minimum(hi, top)
        ax.errorbar(t, xi, yerr=(xi - lo, hi - xi), fmt="o-", capsize=3)
        ax.set_ylim(0, top)
    else:
        ax.text(0.5, 0.5, "no t with two resolved radii", ha="center", transform=ax.transAxes)
    ax.set_xlabel("t (0 = data, 1 = noise)")
    ax.set_ylabel("Markov length xi (pixels)")
    ax.set_title(_title(result) + ", bars: 95% interval", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
