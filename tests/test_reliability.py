"""Every failure one clear line, and no run lost or mixed: atomic and locked outputs, resumable training,
bounded checkpoints, checked data files, a self-healing network cache and checked seeds."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from phasediff import rundir
from phasediff.data.dataset import MAX_LABEL
from phasediff.data.registry import load_dataset
from phasediff.errors import PhasediffError
from phasediff.rundir import check_output_file, check_run_dir, output_lock, run_directory, write_atomic
from phasediff.specs import check_seed

HOLD_LOCK = """
import sys
from phasediff.rundir import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""

# A writer of a run directory with --force semantics, slowed around each rename so that kills land there too.
FORCED_WRITER = """
import os, sys, time
from pathlib import Path
from phasediff import rundir

rename = os.replace
def slow_rename(src, dst):
    time.sleep(0.004)
    rename(src, dst)
    time.sleep(0.004)
os.replace = slow_rename
out, generation = Path(sys.argv[1]), sys.argv[2]
print("ready", flush=True)
with rundir.run_directory(out, force=True) as work:
    for i in range(5):
        (work / f"f{i}").write_text(generation)
        time.sleep(0.002)
"""
FILES = {f"f{i}" for i in range(5)}


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


def _python(script: str, *args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, **kwargs)


# ---- atomic outputs -----------------------------------------------------------------------------------


def test_outputs_keep_the_umask_mode(tmp_path):
    write_atomic(tmp_path / "a.txt", lambda tmp: tmp.write_text("x"))
    with run_directory(tmp_path / "run") as work:
        (work / "b.txt").write_text("y")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~rundir.UMASK
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o777 & ~rundir.UMASK
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "run"]  # no temporary or lock file left


def test_a_failed_write_leaves_nothing(tmp_path):
    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "a.json", broken)
    with pytest.raises(RuntimeError), run_directory(tmp_path / "run") as work:
        (work / "x").write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_output_checks_are_one_line(tmp_path, monkeypatch):
    (tmp_path / "folder.npz").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(PhasediffError, match="is a folder") as error:
        check_output_file(tmp_path / "folder.npz", (".npz",))
    _one_line(error)
    with pytest.raises(PhasediffError, match="not a folder"):
        check_run_dir(tmp_path / "file")
    with pytest.raises(PhasediffError, match="does not exist"):
        check_run_dir(tmp_path / "missing" / "run")
    monkeypatch.setattr(rundir.os, "access", lambda path, mode: False)  # as for a user without write access
    with pytest.raises(PhasediffError, match="not writable"):
        check_output_file(tmp_path / "x.npz", (".npz",))
    with pytest.raises(PhasediffError, match="not writable"):
        check_run_dir(tmp_path / "run")


def test_leftovers_of_killed_writers_are_cleaned_and_others_kept(tmp_path):
    (tmp_path / ".run.partial-abcd1234").mkdir()
    (tmp_path / ".run.partial-abcd1234" / "x").write_text("half")
    (tmp_path / ".run.lock").write_text("99999999\n")  # left by a dead process: no obstacle
    (tmp_path / ".run2.partial-abcd1234").mkdir()  # another output's: not ours to delete
    (tmp_path / ".a.json.tmp-zz99yy88.json").write_text("")
    with run_directory(tmp_path / "run") as work:
        (work / "done").write_text("ok")
    write_atomic(tmp_path / "a.json", lambda tmp: tmp.write_text("{}"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run2.partial-abcd1234", "a.json", "run"]


class _Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs in the writer (no cleanup of the work folder)."""


def test_force_never_loses_both_runs(tmp_path, monkeypatch):
    out = tmp_path / "run"
    with run_directory(out) as work:
        (work / "result").write_text("old")
    rename = os.replace

    def killed_between_renames(src, dst):
        if Path(src).name.startswith(".run.partial-"):
            raise _Killed
        rename(src, dst)

    monkeypatch.setattr(rundir.os, "replace", killed_between_renames)
    monkeypatch.setattr(rundir.shutil, "rmtree", lambda path: None)  # a killed process removes nothing
    with pytest.raises(_Killed), run_directory(out, force=True) as work:
        (work / "result").write_text("new")
    monkeypatch.undo()
    assert not out.exists()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(".run.old-")]
    assert len(aside) == 1 and (aside[0] / "result").read_text() == "old"
    with pytest.raises(PhasediffError, match="already holds results"), run_directory(out):
        pass  # the next start restores the old run (and, without --force, keeps it)
    assert (out / "result").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_killed_forced_runs_leave_old_or_new_whole(tmp_path):
    """SIGKILL a --force writer at random moments: the output is always one whole run (or, killed between
    the two renames, absent with the old run whole beside it), and the next start cleans up."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", FORCED_WRITER, out, "g0"], check=True, env=env, capture_output=True)
    rng = random.Random(0)
    for generation in range(1, 25):
        child = _python(FORCED_WRITER, out, f"g{generation}", env=env)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.045))
        child.send_signal(signal.SIGKILL)
        child.wait()
        aside = [p for p in tmp_path.iterdir() if p.name.startswith(".run.old-")]
        whole = out if out.exists() else aside[-1]
        assert out.exists() or len(aside) == 1
        assert {p.name for p in whole.iterdir()} == FILES
        assert len({(whole / name).read_text() for name in FILES}) == 1
    subprocess.run([sys.executable, "-c", FORCED_WRITER, out, "final"], check=True, env=env, capture_output=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert {(out / name).read_text() for name in FILES} == {"final"}


# ---- locks ------------------------------------------------------------------------------------------


def test_a_second_writer_fails_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir, "WRITE_WAIT_S", 0.2)  # a single file's writer waits this long, then fails
    out = tmp_path / "run"
    holder = _python(HOLD_LOCK, out)
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = f"being written by another phasediff process \\(pid {holder.pid}\\)"
        with pytest.raises(PhasediffError, match=busy) as error, run_directory(out):
            pass
        _one_line(error)
        with pytest.raises(PhasediffError, match="being written"):
            write_atomic(out, lambda tmp: tmp.write_text("x"))
        assert not out.exists() and not any(p.name.startswith(".run.partial") for p in tmp_path.iterdir())
    finally:
        holder.stdin.close()
        holder.wait()
    with output_lock(out), output_lock(out):  # free again, and re-entrant within a process
        pass
    assert list(tmp_path.iterdir()) == []


def test_the_lock_of_a_killed_process_is_released(tmp_path):
    holder = _python(HOLD_LOCK, tmp_path / "run")
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / ".run.lock").exists()
    with run_directory(tmp_path / "run") as work:
        (work / "x").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# ---- training ---------------------------------------------------------------------------------------


def _train_options(tmp_path, **changes):
    from phasediff.train.setup import TrainOptions

    options = dict(spec="digits", model="local", radius=1, width=4, steps=2, batch_size=8, warmup=1,
                   ema_decay=0.9, checkpoint_every=1, out=tmp_path / "run")
    return TrainOptions(**{**options, **changes})


@pytest.mark.parametrize("changes, message", [
    ({"crop": 9}, "exceeds the 8 x 8 images"),
    ({"crop": 2}, "too small for radius 1"),
    ({"width": 0}, "--width must be >= 1"),
    ({"radius": 0}, "--radius must be >= 1"),
    ({"lr": 0.0}, "lr > 0"),
    ({"seed": -1}, "seed must be"),
    ({"t_min": 0.5, "t_max": 0.2}, "t_min < t_max"),
])
def test_bad_training_options_write_nothing(tmp_path, changes, message):
    from phasediff.train.setup import run_training

    with pytest.raises(PhasediffError, match=message) as error:
        run_training(_train_options(tmp_path, **changes))
    _one_line(error)
    assert list(tmp_path.iterdir()) == []


def test_a_second_training_of_the_same_run_fails(tmp_path):
    from phasediff.data.dataset import Dataset
    from phasediff.denoisers.local import LocalDenoiser
    from phasediff.train.loop import TrainSettings, train
    from phasediff.train.objectives import DenoisingObjective

    out = tmp_path / "run"
    data = Dataset(np.random.default_rng(0).random((8, 1, 6, 6)), None, "noise")
    holder = _python(HOLD_LOCK, out)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(PhasediffError, match="being written by another") as error:
            train(LocalDenoiser(1, width=4), DenoisingObjective(), data, TrainSettings(steps=1, batch_size=4), out)
        _one_line(error)
        assert not out.exists()
    finally:
        holder.stdin.close()
        holder.wait()


def test_resume_drops_a_torn_last_log_line_but_not_a_damaged_middle(tmp_path):
    from phasediff.train.loop import _truncate_log

    log = tmp_path / "log.jsonl"
    rows = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (1, 2, 3)]
    log.write_text("\n".join(rows) + '\n{"step": 4, "lo')
    _truncate_log(log, 2)
    assert log.read_text() == "\n".join(rows[:2]) + "\n"
    log.write_text(rows[0] + "\n{garbage\n" + rows[1] + "\n")
    with pytest.raises(PhasediffError, match="line 2 is not a log row") as error:
        _truncate_log(log, 2)
    _one_line(error)


# ---- checkpoints ------------------------------------------------------------------------------------


CHECKPOINTS = sorted(Path(__file__).resolve().parents[1].glob("checkpoints/*/*.json"))


def test_committed_checkpoints_are_within_the_limits():
    from phasediff.denoisers.checkpoint import read_info

    assert CHECKPOINTS
    for sidecar in CHECKPOINTS:
        read_info(sidecar)


@pytest.mark.parametrize("model, message", [
    ({"width": 200_000}, "width=200000 is out of bounds"),
    ({"image_size": [10**6, 10**6], "position_channels": True}, "image_size"),
    ({"num_classes": 10**9}, "num_classes"),
    ({"radius": "3"}, "radius"),
    ({"arch": "wiener-local", "image_size": [4096, 4096], "position_channels": False}, "more than the limit"),
])
def test_absurd_sidecars_are_refused_before_building(tmp_path, monkeypatch, model, message):
    from phasediff.denoisers import checkpoint
    from phasediff.denoisers.local import LocalDenoiser

    path = tmp_path / "m"
    checkpoint.save(path, LocalDenoiser(1, width=4))
    info = json.loads(path.with_suffix(".json").read_text())
    info["model"].update(model)
    path.with_suffix(".json").write_text(json.dumps(info))
    real_build = checkpoint.build

    def build_on_meta_only(config):
        assert torch.empty(0).device.type == "meta", "a network was built on a real device"
        return real_build(config)

    monkeypatch.setattr(checkpoint, "build", build_on_meta_only)
    with pytest.raises(PhasediffError, match=message) as error:
        checkpoint.load(path)
    _one_line(error)


@pytest.mark.parametrize("text", ["[1, 2]", "garbage", '{"format": "phasediff-checkpoint", "version": 1, "model": 3}'])
def test_malformed_sidecars_are_one_line(tmp_path, text):
    from phasediff.denoisers import checkpoint
    from phasediff.denoisers.local import LocalDenoiser

    checkpoint.save(tmp_path / "m", LocalDenoiser(1, width=4))
    (tmp_path / "m.json").write_text(text)
    with pytest.raises(PhasediffError) as error:
        checkpoint.load(tmp_path / "m")
    _one_line(error)


# ---- data files -------------------------------------------------------------------------------------


def _npz(tmp_path, **arrays) -> str:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return str(path)


IMAGES = np.random.default_rng(0).random((6, 8, 8))


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.array([["a", "b"]] * 2)[:, :, None]}, "numeric"),
    ({"images": IMAGES, "labels": np.array(list("abcdef"))}, "numeric"),
    ({"images": IMAGES, "labels": np.array([0, 1, 2, 3, 4, -1])}, "labels must lie in"),
    ({"images": IMAGES, "labels": np.array([0, 1, 2, 3, 4, 10**12])}, "labels must lie in"),
    ({"images": IMAGES * 1e30}, "far outside"),
    ({"images": IMAGES - 1e4}, "far outside"),
    ({"images": np.full((2, 3, 3), 10**6, dtype=np.int64)}, "far outside"),
])
def test_bad_npz_contents_are_one_line(tmp_path, arrays, message):
    with pytest.raises(PhasediffError, match=message) as error:
        load_dataset(_npz(tmp_path, **arrays))
    _one_line(error)


def test_real_valued_fields_and_labels_at_the_limit_load(tmp_path):
    """A synthetic field written by `data export` (real values of order 1) reads back."""
    images = load_dataset("grf:L=8,ell=2", n=6).images
    data = load_dataset(_npz(tmp_path, images=images, labels=np.array([0, 1, 2, 3, 4, MAX_LABEL])))
    assert data.labels.max() == MAX_LABEL and np.array_equal(data.images, images)


def test_file_specs_take_crop_and_n_and_have_no_test_split(tmp_path):
    path = _npz(tmp_path, images=IMAGES)
    assert load_dataset(f"{path}:crop=4,n=3").images.shape == (3, 1, 4, 4)
    with pytest.raises(PhasediffError, match="no test split") as error:
        load_dataset(path, split="test")
    _one_line(error)


@pytest.mark.parametrize("spec, message", [
    ("", "empty dataset spec"),
    ("   ", "empty dataset spec"),
    ("digits:n=0", "positive integer"),
    ("grf:L=8,ell=2,n=0", "positive integer"),
    ("patches:n=0", "positive integer"),
    ("digits:crop=0", "positive integer"),
])
def test_bad_counts_and_empty_specs_are_errors(spec, message):
    with pytest.raises(PhasediffError, match=message) as error:
        load_dataset(spec)
    _one_line(error)
    with pytest.raises(PhasediffError, match=">= 1"):
        load_dataset("digits", n=0)


def test_a_folder_in_the_working_directory_does_not_hijack_a_dataset_name(tmp_path, monkeypatch):
    from PIL import Image

    for name in ("digits", "mine"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(tmp_path / name / "a.png")
    monkeypatch.chdir(tmp_path)
    assert load_dataset("digits").shape == (1, 8, 8)  # scikit-learn's digits, not the folder
    assert load_dataset("./digits").shape == (1, 5, 5)
    with pytest.raises(PhasediffError, match=r"write \./mine") as error:
        load_dataset("mine")
    _one_line(error)


# ---- the neural estimator's cache -------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "garbage json", "json list"])
def test_a_damaged_cache_entry_is_a_miss_with_a_warning(tmp_path, capsys, damage):
    from phasediff.info.neural import _load_cached, _save_cached
    from phasediff.info.neural_net import Geometry, NetConfig, RingNet

    net = RingNet(Geometry((1, 5, 5), (2, 2), 1), 3, NetConfig(width=8))
    entry = tmp_path / "ringnet-key"
    _save_cached(entry, net, {"cached": True, "history": {}})
    assert _load_cached(entry, RingNet(Geometry((1, 5, 5), (2, 2), 1), 3, NetConfig(width=8))) is not None
    weights, sidecar = entry.with_name(entry.name + ".safetensors"), entry.with_name(entry.name + ".json")
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        sidecar.write_text("{not json" if damage == "garbage json" else "[1, 2]")
    fresh = RingNet(Geometry((1, 5, 5), (2, 2), 1), 3, NetConfig(width=8))
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    assert _load_cached(entry, fresh) is None
    assert "damaged" in capsys.readouterr().err
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())


# ---- seeds ------------------------------------------------------------------------------------------


def test_check_seed():
    assert check_seed(0) == 0 and check_seed(np.int64(7)) == 7 and check_seed(2**32 - 1) == 2**32 - 1
    for bad in (-1, 2**32, 1.5, True, "3"):
        with pytest.raises(PhasediffError, match="seed must be an integer in 0..4294967295") as error:
            check_seed(bad)
        _one_line(error)
    with pytest.raises(PhasediffError, match="seed"):
        load_dataset("digits", seed=-1)
