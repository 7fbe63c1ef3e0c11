"""``phasediff reproduce DATA --out DIR``: the study of one dataset as cached stages, and its report.

    DIR/reproduce.json          what DIR holds (the dataset); a folder holding anything else is refused
    DIR/stages/NAME-KEY12/      one finished stage: its files and results.json (see `reproduce.cache`)
    DIR/cache/                  networks a stage trains and reuses when it runs again (the neural estimator's)
    DIR/index.html, report.css  the report (`reproduce.report`), rewritten at the end of every run
    DIR/run.json                the summary of the last run (what ``--json`` prints)
    DIR/log.txt                 every run's stage lines

The whole of DIR is locked while a run writes it (`rundir.output_lock`): a second run on the same DIR fails at
its start. A run killed at any moment leaves the finished stages whole; the next run reuses them (the log says
"cached") and removes what the killed stage left.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from phasediff.errors import PhasediffError
from phasediff.reproduce import cache
from phasediff.reproduce.stages import (
    DATASETS,
    Context,
    DatasetPlan,
    Options,
    Stage,
    build_stages,
    data_identity,
    key_inputs,
    stage_key,
)
from phasediff.rundir import output_lock, save_json

MANIFEST = "reproduce.json"
FORMAT = "phasediff-reproduce"


def dataset_plan(name: str) -> DatasetPlan:
    """The plan of a dataset ``phasediff reproduce`` serves (mnist, fashion-mnist, ising)."""
    if name not in DATASETS:
        raise PhasediffError(f"reproduce serves {', '.join(DATASETS)}; got {name!r}")
    return DATASETS[name]


def check_out(out: Path, dataset: str) -> Path:
    """DIR may be new, empty, or a reproduction of the same dataset; anything else is refused."""
    out = Path(out)
    if not out.parent.is_dir():
        raise PhasediffError(f"folder {out.parent} does not exist")
    if out.exists() and not out.is_dir():
        raise PhasediffError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        manifest = out / MANIFEST
        try:
            held = json.loads(manifest.read_text())
        except (OSError, ValueError):
            raise PhasediffError(f"{out} holds other files (no {MANIFEST}); choose a new or empty --out") from None
        if held.get("format") != FORMAT:
            raise PhasediffError(f"{manifest} is not a phasediff reproduction; choose another --out")
        if held.get("data") != dataset:
            raise PhasediffError(f"{out} holds the reproduction of {held.get('data')!r}, not {dataset!r}; choose "
                                 "another --out")
    return out


def reproduce(plan: DatasetPlan, out: Path, options: Options | None = None, quiet: bool = False,
              command: str | None = None) -> dict:
    """Run (or reuse) every stage of ``plan`` into ``out`` and write the report; returns the summary. A stage
    that fails with a `PhasediffError` is reported as failed (its reason on the page) and the others go on."""
    options = options or Options()
    out = check_out(out, plan.name)
    start = time.perf_counter()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    with output_lock(out):
        out.mkdir(exist_ok=True)
        save_json(out / MANIFEST, {"format": FORMAT, "data": plan.name})
        (out / cache.STAGES).mkdir(exist_ok=True)
        log = cache.Log(out, quiet)
        removed = cache.sweep(out)
        if removed:
            log(f"removed what a killed run left: {', '.join(removed)}")
        stages = build_stages(plan, options)
        log(f"reproduce {plan.name} ({options.mode}): {len(stages)} stages into {out}")
        # the full mode prints what it will cost first; the quick mode is sized to fit its budget, and timing
        # the networks would cost it a noticeable share of that
        expected = {} if options.quick else _announce_cost(stages, options, out, plan.spec, log)
        ctx = Context(plan, options, out)
        keys: dict[str, str | None] = {}
        for number, stage in enumerate(stages, 1):
            record = _run_stage(stage, ctx, keys, log, f"{number}/{len(stages)}")
            ctx.records[stage.name] = record
            keys[stage.name] = record.get("key") if record["status"] == "done" else None
        from phasediff.reproduce.report import write_report

        wall = time.perf_counter() - start
        summary = _summary(plan, options, out, stages, ctx.records, started, wall, command)
        for row in summary["stages"]:
            row["expected_seconds"] = expected.get(row["name"])
        write_report(out, ctx, stages, summary)
        summary["wall_seconds"] = time.perf_counter() - start
        save_json(out / "run.json", summary)
        log(f"wrote {out / 'index.html'} ({summary['wall_seconds']:.1f} s)")
    return summary


def _run_stage(stage: Stage, ctx: Context, keys: dict, log, position: str) -> dict:
    if stage.skip is not None:
        log(f"stage {stage.name}: skipped ({stage.skip})")
        return {"stage": stage.name, "status": "skipped", "reason": stage.skip, "cached": False, "wall": 0.0}
    inputs = key_inputs(stage, data_identity(stage.settings.get("spec", ctx.dataset.spec)), keys)
    key = stage_key(inputs)
    log(f"stage {stage.name} [{position}]: key {key[:12]}")
    return cache.execute(stage, key, inputs, ctx.out, lambda work: stage.step().run(stage, ctx, work), log)


def _announce_cost(stages: list[Stage], options: Options, out: Path, spec: str, log) -> dict:
    """Print the expected cost of the stages that will run (`reproduce.cost`); {stage: seconds}."""
    from phasediff.reproduce.cost import expected_cost

    line, estimates = expected_cost(stages, options, out, spec)
    log(line)
    return estimates


def _summary(plan: DatasetPlan, options: Options, out: Path, stages: list[Stage], records: dict, started: str,
             wall: float, command: str | None) -> dict:
    rows = []
    for stage in stages:
        record = records[stage.name]
        status = "cached" if record.get("cached") else record["status"]
        folder = (out / cache.STAGES / f"{stage.name}-{record['key'][:12]}").relative_to(out).as_posix() \
            if record["status"] == "done" else None
        rows.append({"name": stage.name, "title": stage.title, "status": status, "key": record.get("key"),
                     "reason": record.get("reason"), "folder": folder, "compute_seconds": record.get("seconds"),
                     "wall_seconds": record.get("wall", 0.0)})
    return {"data": plan.name, "spec": plan.spec, "mode": options.mode, "seed": options.seed,
            "device": options.device, "out": str(out), "index": str(out / "index.html"), "started": started,
            "command": command, "stages": rows, "wall_seconds": wall,
            "failed": [r["name"] for r in rows if r["status"] == "failed"]}
