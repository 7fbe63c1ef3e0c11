import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from phasediff.denoisers import load, read_info

TINY_LOCAL = ["train", "digits", "--model", "local", "--radius", "1", "--width", "8", "--batch-size", "16",
              "--checkpoint-every", "3", "--quiet"]


def _weights(run):
    return load_file(str(run / "model.safetensors"))


def test_resumed_run_equals_uninterrupted_run(cli, tmp_path):
    status, _, err = cli(*TINY_LOCAL, "--steps", "6", "--out", tmp_path / "whole")
    assert status == 0, err
    assert cli(*TINY_LOCAL, "--steps", "3", "--out", tmp_path / "split")[0] == 0
    assert read_info(tmp_path / "split" / "model")["step"] == 3
    status, _, err = cli(*TINY_LOCAL, "--steps", "6", "--out", tmp_path / "split", "--resume")
    assert status == 0, err
    whole, split = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    assert whole.keys() == split.keys()
    assert all(torch.equal(whole[k], split[k]) for k in whole)
    raw_whole = torch.load(tmp_path / "whole" / "state.pt", weights_only=True)["net"]
    raw_split = torch.load(tmp_path / "split" / "state.pt", weights_only=True)["net"]
    assert all(torch.equal(raw_whole[k], raw_split[k]) for k in raw_whole)
    log = [json.loads(line)["step"] for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert log == sorted(set(log)) and log[-1] == 6


def test_refuses_to_overwrite_and_refuses_bad_resume_state(cli, tmp_path):
    run = tmp_path / "run"
    assert cli(*TINY_LOCAL, "--steps", "3", "--out", run)[0] == 0
    status, _, err = cli(*TINY_LOCAL, "--steps", "3", "--out", run)
    assert status == 2 and "--resume" in err
    status, _, err = cli(*[a if a != "1" else "2" for a in TINY_LOCAL], "--steps", "6", "--out", run, "--resume")
    assert status == 2 and "architecture" in err and len(err.strip().splitlines()) == 1
    status, _, err = cli(*TINY_LOCAL, "--steps", "6", "--out", run, "--resume", "--lr", "0.1")
    assert status == 2 and "settings" in err
    (run / "state.pt").write_bytes(b"not a checkpoint")
    status, _, err = cli(*TINY_LOCAL, "--steps", "6", "--out", run, "--resume")
    assert status == 2 and "cannot read" in err
    status, _, err = cli(*TINY_LOCAL, "--steps", "6", "--out", tmp_path / "empty", "--resume")
    assert status == 2 and "nothing to resume" in err


def test_corrupt_or_mismatched_checkpoint_is_refused(cli, tmp_path):
    run = tmp_path / "run"
    assert cli(*TINY_LOCAL, "--steps", "3", "--out", run)[0] == 0
    assert load(run / "model").radius == 1
    data = bytearray((run / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (run / "model.safetensors").write_bytes(bytes(data))
    status, _, err = cli("sample", "--model", run / "model", "--n", "4", "--out", tmp_path / "s.npz", "--quiet")
    assert status == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "s.npz").exists()


def test_sample_command_writes_images_and_grid(cli, tmp_path):
    run = tmp_path / "run"
    assert cli(*TINY_LOCAL, "--steps", "3", "--out", run)[0] == 0
    out = tmp_path / "samples.npz"
    status, _, err = cli("sample", "--model", run / "model", "--n", "10", "--steps", "4", "--method", "heun",
                         "--out", out, "--quiet")
    assert status == 0, err
    images = np.load(out)["images"]
    assert images.shape == (10, 1, 8, 8) and images.dtype == np.float32 and 0 <= images.min() <= images.max() <= 1
    assert out.with_suffix(".png").exists()


def test_classifier_trains_and_reports_accuracy(cli_json, tmp_path):
    summary = cli_json("train", "digits", "--model", "classifier", "--steps", "150", "--batch-size", "64",
                       "--checkpoint-every", "150", "--warmup", "10", "--out", tmp_path / "judge")
    assert summary["test_accuracy"] > 0.5
    assert load(tmp_path / "judge" / "model").config()["arch"] == "classifier"


def test_global_conditional_model_trains_a_step(cli, tmp_path):
    status, _, err = cli("train", "digits", "--model", "global", "--conditional", "--width", "8", "--steps", "2",
                         "--batch-size", "8", "--out", tmp_path / "g", "--quiet")
    assert status == 0, err
    assert load(tmp_path / "g" / "model").num_classes == 10


def test_two_process_torchrun_trains_and_its_checkpoint_loads(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "phasediff.cli", *TINY_LOCAL, "--steps", "4", "--batch-size", "16", "--out", str(tmp_path / "ddp")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    info = read_info(tmp_path / "ddp" / "model")
    assert info["step"] == 4
    model = load(tmp_path / "ddp" / "model")
    assert model(torch.zeros(2, 1, 8, 8), 0.5).shape == (2, 1, 8, 8)


@pytest.mark.parametrize("argv, message", [
    (["--model", "local", "--steps", "2"], "--radius"),
    (["--model", "global", "--radius", "2", "--steps", "2"], "local models only"),
    (["--model", "classifier", "--crop", "4", "--steps", "2"], "local models only"),
])
def test_bad_training_options(cli, tmp_path, argv, message):
    status, _, err = cli("train", "digits", *argv, "--out", tmp_path / "x", "--quiet")
    assert status == 2 and message in err and not (tmp_path / "x").exists()


def test_init_continues_from_a_checkpoint_and_records_it(cli, cli_json, tmp_path):
    assert cli(*TINY_LOCAL, "--steps", "3", "--out", tmp_path / "first")[0] == 0
    assert cli("convert", tmp_path / "first" / "model", tmp_path / "small", "--quiet")[0] == 0
    summary = cli_json(*TINY_LOCAL, "--steps", "2", "--lr", "1e-12", "--init", tmp_path / "small",
                       "--out", tmp_path / "second")
    assert summary["step"] == 2
    info = read_info(tmp_path / "second" / "model")
    assert info["init"]["steps_before"] == 3
    assert info["init"]["weights_sha256"] == read_info(tmp_path / "small")["weights_sha256"]
    start, end = load(tmp_path / "small").state_dict(), load(tmp_path / "second" / "model").state_dict()
    assert all(torch.allclose(start[k], end[k], atol=1e-6) for k in start)  # lr ~ 0: the weights stay put
    wider = [a if a != "8" else "16" for a in TINY_LOCAL]
    status, _, err = cli(*wider, "--steps", "1", "--init", tmp_path / "small", "--out", tmp_path / "third")
    assert status == 2 and "another architecture" in err
    status, _, err = cli(*TINY_LOCAL, "--steps", "4", "--init", tmp_path / "small", "--resume",
                         "--out", tmp_path / "second")
    assert status == 2 and "--init" in err


def test_init_adds_a_zero_class_embedding_to_an_unconditional_checkpoint(cli, tmp_path):
    """A conditional network started from an unconditional one predicts exactly what it did, for every label."""
    tiny_global = ["train", "digits", "--model", "global", "--width", "8", "--batch-size", "8", "--quiet"]
    assert cli(*tiny_global, "--steps", "1", "--out", tmp_path / "plain")[0] == 0
    status, _, err = cli(*tiny_global, "--conditional", "--steps", "1", "--lr", "1e-30", "--init",
                         tmp_path / "plain" / "model", "--out", tmp_path / "labelled")
    assert status == 0, err
    assert read_info(tmp_path / "labelled" / "model")["init"]["added"].startswith("class embedding")
    plain, labelled = load(tmp_path / "plain" / "model"), load(tmp_path / "labelled" / "model")
    x, t = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.full((4,), 0.5)
    with torch.no_grad():
        expected = plain(x, t)
        for label in (None, torch.tensor([0, 3, 7, 9])):
            assert torch.allclose(labelled(x, t, label=label), expected, atol=1e-5)
    status, _, err = cli(*tiny_global, "--steps", "1", "--init", tmp_path / "labelled" / "model",
                         "--out", tmp_path / "back")
    assert status == 2 and "another architecture" in err
