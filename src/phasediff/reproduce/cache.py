"""Finished stages on disk: ``DIR/stages/NAME-KEY12/``.

A stage runs in a hidden work folder beside its final name (`rundir.run_directory`); its files go there, then
``results.json`` last (the stage's result, the inputs of its key, its wall time), and the folder is renamed to
``NAME-KEY12``. So a stage folder exists only whole: a stage killed or failed mid-way leaves at most a hidden
``.NAME-KEY12.partial-*`` folder, which the next run removes (`sweep`), and the stage runs again. A rerun with
the same key finds ``results.json`` and logs ``stage NAME: cached``.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from phasediff.errors import PhasediffError
from phasediff.reproduce.stages import KEY_LENGTH, Stage
from phasediff.rundir import run_directory, save_json

RESULTS = "results.json"
STAGES = "stages"
LEFTOVER = re.compile(r"\.[^/]+\.((partial|old)-[a-z0-9_]+|lock)")


def stage_dir(out: Path, name: str, key: str) -> Path:
    return Path(out) / STAGES / f"{name}-{key[:KEY_LENGTH]}"


def finished(path: Path) -> dict | None:
    """The record of a finished stage folder, None if it is not there or not finished."""
    results = Path(path) / RESULTS
    if not results.is_file():
        return None
    try:
        record = json.loads(results.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("status") == "done" else None


def sweep(out: Path) -> list[str]:
    """Remove the hidden work folders and lock files that killed runs left under DIR/stages (call it holding DIR's
    lock: no other process writes there then)."""
    folder = Path(out) / STAGES
    removed = []
    if folder.is_dir():
        for path in folder.iterdir():
            if LEFTOVER.fullmatch(path.name):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                removed.append(path.name)
    return removed


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Log:
    """Stage lines on stderr (unless quiet) and appended to DIR/log.txt."""

    def __init__(self, out: Path, quiet: bool = False):
        self.path, self.quiet = Path(out) / "log.txt", quiet

    def __call__(self, line: str) -> None:
        if not self.quiet:
            print(f"phasediff: {line}", file=sys.stderr, flush=True)
        with open(self.path, "a") as handle:
            handle.write(f"{_now()} {line}\n")


def execute(stage: Stage, key: str, inputs: dict, out: Path, run: Callable[[Path], dict], log: Log) -> dict:
    """The record of ``stage``: read from its folder when finished, else computed by ``run(work folder)`` and
    written whole. A `PhasediffError` inside ``run`` becomes a record with status "failed" (nothing is kept on
    disk, so the next run tries again); any other exception propagates."""
    path = stage_dir(out, stage.name, key)
    record = finished(path)
    if record is not None:
        log(f"stage {stage.name}: cached ({path.relative_to(out)}, computed in {record['seconds']:.1f} s on "
            f"{record['finished']})")
        return {**record, "cached": True, "wall": 0.0}
    if path.exists():  # a folder without a finished results.json: not ours to trust
        shutil.rmtree(path)
    log(f"stage {stage.name}: running ({stage.title})")
    started, start = _now(), time.perf_counter()
    try:
        with run_directory(path) as work:
            result = run(work)
            record = {"stage": stage.name, "status": "done", "key": key, "inputs": inputs, "result": result,
                      "started": started, "finished": _now(), "seconds": time.perf_counter() - start}
            save_json(work / RESULTS, record)  # last: its presence marks the stage finished
    except PhasediffError as error:
        seconds = time.perf_counter() - start
        log(f"stage {stage.name}: failed after {seconds:.1f} s: {' '.join(str(error).split())}")
        return {"stage": stage.name, "status": "failed", "key": key, "reason": str(error), "seconds": seconds,
                "cached": False, "wall": seconds}
    log(f"stage {stage.name}: done in {record['seconds']:.1f} s")
    return {**record, "cached": False, "wall": record["seconds"]}
