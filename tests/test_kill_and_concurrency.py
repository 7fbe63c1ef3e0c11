"""Whole commands killed at random moments, and two writers of one output at once.

A killed `cmi --out D --force` leaves D either as the old complete run or the new complete one, never half; a
killed `train` leaves checkpoints that load, and resuming to the end gives bit-for-bit the weights of an
uninterrupted run. Of two writers of one output, one wins and the other fails at its start with one line.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from phasediff.denoisers import load

CMI = ["cmi", "grf:L=9,ell=2", "--estimator", "exact", "--t", "0:1:0.1", "--r", "1:3", "--quiet"]
TRAIN = ["train", "digits", "--model", "local", "--radius", "1", "--width", "4", "--steps", "40",
         "--checkpoint-every", "5", "--batch-size", "16", "--quiet"]
RUN_FILES = {"arrays.npz", "cmi_vs_r.png", "config.yaml", "heatmap.png", "log.txt", "markov_length.png",
             "results.json"}
KILLS = 20


def _command(*argv):
    return [sys.executable, "-m", "phasediff.cli", *map(str, argv)]


def _timed(argv, cwd) -> float:
    start = time.perf_counter()
    subprocess.run(_command(*argv), cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def _kill_after(argv, cwd, seconds: float) -> int:
    """Start the command, SIGKILL it after ``seconds`` (if still running); its exit status."""
    process = subprocess.Popen(_command(*argv), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        return process.wait()


def _cmi_run(folder):
    """The run's results.json (and a check that every file of a finished run is there and readable)."""
    assert {p.name for p in folder.iterdir()} == RUN_FILES
    return json.loads((folder / "results.json").read_text())


def test_a_killed_forced_cmi_run_leaves_the_old_or_the_new_run_whole(tmp_path):
    out = tmp_path / "run"
    duration = _timed([*CMI, "--out", out, "--seed", "1"], tmp_path)
    first = _cmi_run(out)
    rng = random.Random(0)
    finished = 0
    for _ in range(KILLS):
        status = _kill_after([*CMI, "--out", out, "--force", "--seed", "2"], tmp_path,
                             rng.uniform(0.5, 1.05) * duration)
        finished += status == 0
        run = _cmi_run(out)  # never half: always a whole run, the old one or the new one
        assert run["t"] == first["t"] and run["cmi"] == first["cmi"]
        assert (out / "config.yaml").read_text().count("seed: ") == 1
    subprocess.run(_command(*CMI, "--out", out, "--force"), cwd=tmp_path, check=True, capture_output=True)
    _cmi_run(out)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # leftovers of the killed runs are cleaned
    assert finished < KILLS  # the loop did interrupt runs


def _checkpoint_is_whole(out) -> None:
    """Whatever a killed training run left loads: the weights match their sidecar, the state is readable."""
    if (out / "model.json").exists():
        load(out / "model")
    if (out / "state.pt").exists():
        import torch

        torch.load(out / "state.pt", weights_only=True)
    for line in (out / "log.jsonl").read_text().splitlines()[:-1] if (out / "log.jsonl").exists() else []:
        json.loads(line)


def test_a_killed_training_run_resumes_bit_for_bit(tmp_path):
    reference = tmp_path / "reference"
    duration = _timed([*TRAIN, "--out", reference], tmp_path)
    out = tmp_path / "killed"
    rng = random.Random(1)
    for _ in range(KILLS):
        resume = ["--resume"] if (out / "state.pt").exists() else []
        _kill_after([*TRAIN, "--out", out, *resume], tmp_path, rng.uniform(0.4, 1.0) * duration)
        _checkpoint_is_whole(out)
        if (out / "model.json").exists() and json.loads((out / "model.json").read_text()).get("step") == 40:
            break
    resume = ["--resume"] if (out / "state.pt").exists() else []
    subprocess.run(_command(*TRAIN, "--out", out, *resume), cwd=tmp_path, capture_output=True)
    a, b = load_file(str(reference / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _wait_for_lock(out, process, timeout: float = 60.0) -> None:
    lock = out.parent / f".{out.name}.lock"
    deadline = time.monotonic() + timeout
    while not lock.exists():
        assert process.poll() is None, "the first writer ended before taking its lock"
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.mark.parametrize("argv", [["cmi", "digits", "--estimator", "gaussian", "--t", "0:1:0.02", "--r", "1:3",
                                   "--quiet", "--force"], [*TRAIN]])
def test_a_second_writer_of_one_output_fails_with_one_line(cli, tmp_path, argv):
    out = tmp_path / "out"
    first = subprocess.Popen(_command(*argv, "--out", out), cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    _wait_for_lock(out, first)
    status, stdout, err = cli(*argv, "--out", out, "--seed", "5")
    assert status == 2 and len(err.strip().splitlines()) == 1 and "being written by another" in err
    assert first.wait(timeout=120) == 0, first.stderr.read()
    if argv[0] == "cmi":
        assert json.loads((out / "results.json").read_text())["t"][1] == pytest.approx(0.02)
        assert "seed: 0" in (out / "config.yaml").read_text()  # the first writer's run, not the second's
    else:
        assert json.loads((out / "model.json").read_text())["step"] == 40 and load(out / "model") is not None
        steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
        assert steps == sorted(set(steps))  # one writer's log: no step twice
        assert "seed: 0" in (out / "config.yaml").read_text()
    assert not os.path.exists(out.parent / f".{out.name}.lock")
