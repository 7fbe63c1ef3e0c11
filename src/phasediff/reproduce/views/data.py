"""The report's view of the data stage."""

from __future__ import annotations

from phasediff.reproduce.stages import Context, Stage
from phasediff.reproduce.tables import figure, number, table

TITLE = "The data"
QUESTION = "What does the study run on: how many images, of what shape and range, from where?"


def command(stage: Stage) -> str:
    s = stage.settings
    n = "" if s["n"] is None else f" --n {s['n']}"
    return (f"phasediff data info {s['spec']}{n} --json; phasediff data info {s['spec']}{n} --split test --json; "
            f"phasediff data show {s['spec']} --split test --count {s['grid']} --out samples.png")


def present(stage: Stage, record: dict, ctx: Context) -> dict:
    result = record["result"]
    rows = []
    for split, info in result["splits"].items():
        rows.append([split, info["n"], " x ".join(map(str, info["shape"])), number(info["min"]), number(info["max"]),
                     number(info["mean"]), number(info["std"]), info.get("classes") or "-", info["source"]])
    return {
        "figures": [figure(ctx.relative("data", "samples.png"),
                           f"The first {stage.settings['grid']} test images of {result['spec']} (grey scale: the "
                           "dataset's value range)")],
        "tables": [table("Splits", ["split", "images", "shape (C x H x W)", "min", "max", "mean", "std", "classes",
                                    "source"], rows)],
    }
