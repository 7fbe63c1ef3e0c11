"""The report of a reproduction: ``DIR/index.html`` and ``DIR/report.css``, through the Jinja2 template
``templates/report.html.j2`` (autoescaped; nothing is loaded from outside DIR: no scripts, no web fonts).

One section per stage: the question, its figures, its tables (with intervals), the paper's numbers beside ours,
the command and the data file behind it, or the reason it was skipped or failed. Then the provenance: the run,
the machine, the package versions, the checkpoints with their hashes, and the wall time of every stage.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import os
import platform
import shutil
import sys
from pathlib import Path

from phasediff import __version__
from phasediff.reproduce.stages import (
    KEY_LENGTH,
    Context,
    Stage,
    checkpoint_sha256,
    checkpoints_root,
)
from phasediff.rundir import write_atomic

TEMPLATE = "report.html.j2"
STYLE = "report.css"
PACKAGES = ("phasediff", "torch", "numpy", "scipy", "matplotlib", "scikit-learn", "scikit-image", "pillow",
            "safetensors", "jinja2", "pyyaml", "tqdm")


def templates() -> Path:
    return Path(str(importlib.resources.files("phasediff.reproduce") / "templates"))


def environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates())), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _seconds(value) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def section(stage: Stage, record: dict, ctx: Context) -> dict:
    """The template's view of one stage."""
    status = "cached" if record.get("cached") else record["status"]
    out = {"id": stage.name, "title": stage.title, "question": stage.question, "status": status,
           "reason": record.get("reason"), "command": stage.command, "key": None, "full_key": None,
           "data_file": None, "files": [], "figures": [], "tables": [], "comparison": None, "notes": [],
           "compute_text": _seconds(record.get("seconds")) if record["status"] != "skipped" else "-",
           "wall_text": "reused" if record.get("cached") else _seconds(record.get("wall"))
           if record["status"] != "skipped" else "-"}
    if record["status"] == "failed":
        out["key"], out["full_key"] = record["key"][:KEY_LENGTH], record["key"]
    if record["status"] != "done":
        return out
    out.update(key=record["key"][:KEY_LENGTH], full_key=record["key"], data_file=ctx.relative(stage.name, "results.json"),
               files=[ctx.relative(stage.name, f) for f in record["result"].get("files", [])
                      if not f.endswith(".png")])
    out.update(stage.view().present(stage, record, ctx))
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def provenance(ctx: Context, stages: list[Stage], summary: dict) -> list[dict]:
    """Tables: the run, the machine, the packages, the checkpoints, the stages' times."""
    import torch

    run = [["data", f"{summary['data']} ({summary['spec']})"], ["mode", summary["mode"]],
           ["seed", summary["seed"]], ["device", summary["device"]], ["started (UTC)", summary["started"]],
           ["wall time of this run", _seconds(summary["wall_seconds"])],
           ["command", summary.get("command") or "-"], ["phasediff", __version__]]
    machine = [["platform", platform.platform()], ["processor", _cpu_name()], ["logical CPUs", os.cpu_count()],
               ["torch threads", torch.get_num_threads()], ["OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "unset")],
               ["python", sys.version.split()[0]]]
    packages = [[name, _version(name)] for name in PACKAGES]
    root = checkpoints_root(ctx.options)
    used: dict[str, dict] = {}
    for stage in stages:
        if stage.skip is not None:
            continue
        for path in stage.checkpoints.values():
            path = Path(path)
            name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
            entry = used.setdefault(name, {"path": path, "stages": []})
            entry["stages"].append(stage.name)
    checkpoints = [[name, checkpoint_sha256(entry["path"]), ", ".join(dict.fromkeys(entry["stages"]))]
                   for name, entry in sorted(used.items())]
    times = [[row["name"], "cached" if row["status"] == "cached" else row["status"],
              row["key"][:KEY_LENGTH] if row["key"] else "-", _seconds(row.get("expected_seconds")),
              _seconds(row["compute_seconds"]), "reused" if row["status"] == "cached" else _seconds(row["wall_seconds"])]
             for row in summary["stages"]]
    return [
        {"title": "Run", "columns": None, "rows": run, "wide": False},
        {"title": "Machine", "columns": None, "rows": machine, "wide": False},
        {"title": "Packages", "columns": None, "rows": packages, "wide": False},
        {"title": "Wall time per stage", "columns": ["stage", "status", "key", "expected", "computed in",
                                                     "this run"], "rows": times, "wide": True},
        {"title": f"Checkpoints (under {root}; SHA-256 of the weights, as in their sidecars)",
         "columns": ["checkpoint", "sha256", "stages"], "rows": checkpoints or [["none", "-", "-"]], "wide": True},
    ]


def render(ctx: Context, stages: list[Stage], summary: dict) -> str:
    sections = [section(stage, ctx.records[stage.name], ctx) for stage in stages]
    run = {"title": ctx.dataset.title, "spec": ctx.dataset.spec, "mode": summary["mode"], "version": __version__,
           "command": summary.get("command"), "started": summary["started"]}
    return environment().get_template(TEMPLATE).render(run=run, sections=sections,
                                                        provenance=provenance(ctx, stages, summary))


def write_report(out: Path, ctx: Context, stages: list[Stage], summary: dict) -> Path:
    """DIR/index.html and DIR/report.css, each written atomically."""
    out = Path(out)
    text = render(ctx, stages, summary)
    write_atomic(out / STYLE, lambda tmp: shutil.copyfile(templates() / STYLE, tmp))
    write_atomic(out / "index.html", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return out / "index.html"
