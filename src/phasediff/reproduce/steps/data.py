"""Stage "data": what the study runs on: size, shape, value range, classes and source of each split, and a grid
of test images."""

from __future__ import annotations

from pathlib import Path

from phasediff.reproduce.stages import Context, DatasetPlan, Options, Stage
from phasediff.reproduce.views.data import QUESTION, TITLE

GRID = 32


def plan(dataset: DatasetPlan, options: Options, folder: Path) -> Stage:
    settings = dataset.settings_for("data", {"spec": dataset.spec, "n": None, "grid": GRID}, options.quick)
    return Stage("data", TITLE, QUESTION, settings, code=("phasediff.data.registry", "phasediff.report.figures"))


def run(stage: Stage, ctx: Context, work: Path) -> dict:
    from phasediff.data.registry import load_dataset
    from phasediff.report.figures import image_grid

    spec, n, seed = stage.settings["spec"], stage.settings["n"], stage.settings["seed"]
    splits = {}
    for split in ("train", "test"):
        data = load_dataset(spec, split=split, n=n, seed=seed)
        splits[split] = data.info()
        if split == "test":
            image_grid(data.images[: stage.settings["grid"]], work / "samples.png", title=data.source)
    return {"spec": spec, "splits": splits, "files": ["samples.png"]}


def workload(stage: Stage) -> dict:
    return {}
