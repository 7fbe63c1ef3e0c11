"""A probe of bad inputs across every subcommand: each is one line on stderr, exit status 2, nothing written.

Each probe has a class (what kind of mistake it is), so that new kinds of input get their own probes. The
files the probes read are made once per module; every probe runs in a fresh working folder and checks that
neither it nor the fixture folder changed.
"""

import json
import os

import numpy as np
import pytest
import torch

UNWRITABLE = "/proc/phasediff-probe"  # not writable even by root


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Bad data files, tiny checkpoints (good and tampered) and odd paths."""
    from phasediff.classifier import Classifier
    from phasediff.data.registry import load_dataset
    from phasediff.denoisers.checkpoint import save
    from phasediff.denoisers.local import LocalDenoiser
    from phasediff.denoisers.unet import UNet

    folder = tmp_path_factory.mktemp("probe")
    digits = load_dataset("digits", split="test").images[:50]
    np.savez(folder / "good.npz", images=digits)
    np.savez(folder / "objects.npz", images=np.array([object()] * 4, dtype=object))
    np.savez(folder / "strings.npz", images=np.array(["a", "b"]))
    np.savez(folder / "huge_labels.npz", images=digits, labels=np.full(50, 10**12))
    np.savez(folder / "negative_labels.npz", images=digits, labels=-np.ones(50, dtype=int))
    np.savez(folder / "short_labels.npz", images=digits, labels=np.zeros(3, dtype=int))
    np.savez(folder / "big_values.npz", images=np.full((50, 1, 8, 8), 1e30))
    np.savez(folder / "nan.npz", images=np.full((50, 1, 8, 8), np.nan))
    np.savez(folder / "empty.npz", images=np.zeros((0, 1, 8, 8)))
    np.savez(folder / "wrong_rank.npz", images=np.zeros((4, 5)))
    np.savez(folder / "samples16.npz", images=np.zeros((10, 1, 16, 16), dtype=np.float32))
    (folder / "garbage.npz").write_bytes(b"not a zip file at all")
    (folder / "empty_folder").mkdir()
    (folder / "a_folder.npz").mkdir()
    (folder / "a_folder.png").mkdir()
    (folder / "a_file").write_text("x")
    (folder / "wrong.json").write_text(json.dumps({"t": [0.1]}))
    (folder / "list.json").write_text("[1, 2]")

    torch.manual_seed(0)
    extra = {"data": "digits", "image_shape": [1, 8, 8]}
    save(folder / "local", LocalDenoiser(1, width=4), extra, weights="ema")
    save(folder / "global", UNet(base=8, mults=(1, 2), res_blocks=1, image_size=8), extra, weights="ema")
    save(folder / "cond", UNet(base=8, mults=(1, 2), res_blocks=1, image_size=8, num_classes=10), extra,
         weights="ema")
    save(folder / "judge", Classifier(channels=1, num_classes=10, width=8), extra, weights="ema")
    save(folder / "tampered", LocalDenoiser(1, width=4), extra, weights="ema")
    sidecar = json.loads((folder / "tampered.json").read_text())
    sidecar["model"]["width"] = 200_000
    (folder / "tampered.json").write_text(json.dumps(sidecar))
    save(folder / "garbled", LocalDenoiser(1, width=4), extra, weights="ema")
    (folder / "garbled.json").write_text("{not json")
    save(folder / "listed", LocalDenoiser(1, width=4), extra, weights="ema")
    (folder / "listed.json").write_text("[]")
    save(folder / "many_classes", LocalDenoiser(1, width=4), extra, weights="ema")
    sidecar = json.loads((folder / "many_classes.json").read_text())
    sidecar["model"]["num_classes"] = 10**12
    (folder / "many_classes.json").write_text(json.dumps(sidecar))
    return folder


EXACT = ["--estimator", "exact"]
GRF = "grf:L=9,ell=2"

PROBES = [
    # dataset specs
    ("spec", ["data", "info", ""]),
    ("spec", ["data", "info", "digits:n=0"]),
    ("spec", ["data", "info", "digits:n=-5"]),
    ("spec", ["data", "info", "digits:crop=0"]),
    ("spec", ["data", "info", "digits:crop=100"]),
    ("spec", ["data", "info", "nosuch"]),
    ("spec", ["data", "info", "grf:L=1,ell=2"]),
    ("spec", ["data", "info", "grf:L=9,ell=abc"]),
    ("spec", ["data", "info", "gmm2:L=9,mu=1,sigma=-1"]),
    ("spec", ["data", "info", "ising:L=8,T=0"]),
    ("spec", ["data", "info", "ising:L=8,T=-1"]),
    ("spec", ["data", "info", "patches:size=0"]),
    ("spec", ["data", "info", "gmm:data=digits,k=0"]),
    ("spec", ["data", "info", "grf:L=9,ell=2,foo=1"]),
    ("spec", ["data", "info", "grf:L"]),
    ("spec", ["data", "info", "{tmp}/good.npz:crop=0"]),
    ("spec", ["train", "", "--model", "local", "--radius", "1", "--out", "{work}/run"]),
    # data files
    ("file", ["data", "info", "{tmp}/objects.npz"]),
    ("file", ["data", "info", "{tmp}/strings.npz"]),
    ("file", ["data", "info", "{tmp}/huge_labels.npz"]),
    ("file", ["data", "info", "{tmp}/negative_labels.npz"]),
    ("file", ["data", "info", "{tmp}/short_labels.npz"]),
    ("file", ["data", "info", "{tmp}/big_values.npz"]),
    ("file", ["data", "info", "{tmp}/nan.npz"]),
    ("file", ["data", "info", "{tmp}/empty.npz"]),
    ("file", ["data", "info", "{tmp}/wrong_rank.npz"]),
    ("file", ["data", "info", "{tmp}/garbage.npz"]),
    ("file", ["data", "info", "{tmp}/missing.npz"]),
    ("file", ["data", "info", "{tmp}/empty_folder"]),
    ("file", ["data", "info", "{tmp}/good.npz", "--split", "test"]),
    ("file", ["cmi", "{tmp}/huge_labels.npz", "--out", "{work}/run"]),
    ("file", ["train", "{tmp}/objects.npz", "--model", "local", "--radius", "1", "--out", "{work}/run"]),
    ("file", ["judge", "{tmp}/big_values.npz", "--data", "digits", "--judge", "{tmp}/judge"]),
    ("file", ["judge", "{tmp}/missing.npz", "--data", "digits"]),
    ("file", ["judge", "{tmp}/samples16.npz", "--data", "digits", "--judge", "{tmp}/judge"]),
    ("file", ["diagram", "--data", "digits", "--local", "{tmp}/local", "--cmi", "{tmp}/wrong.json",
              "--out", "{work}/run"]),
    ("file", ["diagram", "--data", "digits", "--local", "{tmp}/local", "--cmi", "{tmp}/list.json",
              "--out", "{work}/run"]),
    # numeric options out of range
    ("range", ["data", "info", "digits", "--n", "0"]),
    ("range", ["data", "info", "digits", "--n", "-1"]),
    ("range", ["data", "show", "digits", "--count", "0", "--out", "{work}/g.png"]),
    ("range", ["cmi", GRF, *EXACT, "--t", "0:1:0"]),
    ("range", ["cmi", GRF, *EXACT, "--t", "0:1:-0.1"]),
    ("range", ["cmi", GRF, *EXACT, "--t", ""]),
    ("range", ["cmi", GRF, *EXACT, "--t", "0.5,1.2"]),
    ("range", ["cmi", GRF, *EXACT, "--r", "0"]),
    ("range", ["cmi", GRF, *EXACT, "--r", "1:6"]),
    ("range", ["cmi", GRF, *EXACT, "--patch", "0"]),
    ("range", ["cmi", GRF, *EXACT, "--patch", "100"]),
    ("range", ["cmi", GRF, *EXACT, "--site", "a,b"]),
    ("range", ["cmi", GRF, *EXACT, "--site", "-1,2"]),
    ("range", ["cmi", GRF, *EXACT, "--delta", "nan"]),
    ("range", ["cmi", GRF, *EXACT, "--delta", "0"]),
    ("range", ["cmi", "gmm2:L=9,mu=1,sigma=1", *EXACT, "--samples", "1"]),
    ("range", ["cmi", GRF, "--ridge", "-1"]),
    ("range", ["cmi", "digits", "--estimator", "neural", "--epochs", "0"]),
    ("range", ["cmi", "digits", "--estimator", "neural", "--budget", "-1"]),
    ("range", ["cmi", "digits", "--estimator", "neural", "--specialise", "-1"]),
    ("range", ["cmi", "digits", "--estimator", "neural", "--pool", "-1"]),
    ("range", ["cmi", "digits", "--estimator", "mine", "--mine-steps", "0"]),
    ("range", ["cmi", "digits", "--estimator", "mine", "--mine-runs", "0"]),
    ("range", ["cmi", "digits", "--estimator", "mine", "--mine-batch", "0"]),
    ("range", ["train", "digits", "--model", "local", "--out", "{work}/run"]),
    ("range", ["train", "digits", "--model", "local", "--radius", "0", "--out", "{work}/run"]),
    ("range", ["train", "digits", "--model", "local", "--radius", "-1", "--out", "{work}/run"]),
    ("range", ["train", "digits", "--model", "local", "--radius", "1", "--width", "0", "--out", "{work}/run"]),
    ("range", ["train", "digits", "--model", "global", "--width", "-3", "--out", "{work}/run"]),
    ("range", ["train", "digits", "--model", "local", "--radius", "1", "--crop", "100", "--out", "{work}/run"]),
    ("range", ["train", "digits", "--model", "local", "--radius", "1", "--crop", "0", "--out", "{work}/run"]),
    ("range", ["train", "digits", "--model", "local", "--radius", "1", "--steps", "0", "--out", "{work}/run"]),
    ("range", ["train", "digits", "--model", "local", "--radius", "1", "--batch-size", "0", "--out", "{work}/run"]),
    ("range", ["train", "digits", "--model", "local", "--radius", "1", "--lr", "-1", "--out", "{work}/run"]),
    ("range", ["train", "digits", "--model", "local", "--radius", "1", "--warmup", "-1", "--out", "{work}/run"]),
    ("range", ["train", "digits", "--model", "local", "--radius", "1", "--ema-decay", "1.5", "--out", "{work}/run"]),
    ("range", ["train", "digits", "--model", "local", "--radius", "1", "--t-min", "0.8", "--t-max", "0.2",
               "--out", "{work}/run"]),
    ("range", ["train", "digits", "--model", "local", "--radius", "1", "--t-max", "1.5", "--out", "{work}/run"]),
    ("range", ["train", "digits", "--model", "local", "--radius", "1", "--checkpoint-every", "0",
               "--out", "{work}/run"]),
    ("range", ["sample", "--model", "{tmp}/global", "--n", "0", "--out", "{work}/s.npz"]),
    ("range", ["sample", "--model", "{tmp}/global", "--steps", "0", "--out", "{work}/s.npz"]),
    ("range", ["sample", "--model", "{tmp}/global", "--batch-size", "0", "--out", "{work}/s.npz"]),
    ("range", ["diagram", "--data", "digits", "--local", "{tmp}/local", "--images", "0", "--out", "{work}/run"]),
    ("range", ["diagram", "--data", "digits", "--local", "{tmp}/local", "--t-final", "1.5", "--out", "{work}/run"]),
    ("range", ["diagram", "--data", "digits", "--local", "{tmp}/local", "--analytic", "-1", "--out", "{work}/run"]),
    ("range", ["hybrid", "--model", "{tmp}/global", "--local", "{tmp}/local", "--n", "0", "--out", "{work}/run"]),
    ("range", ["hybrid-sweep", "--model", "{tmp}/global", "--local", "{tmp}/local", "--lows", "0.9",
               "--highs", "0.5", "--judge", "{tmp}/judge", "--out", "{work}/run"]),
    # seeds, devices, precisions and other option values
    ("option", ["data", "info", "digits", "--seed", "-1"]),
    ("option", ["data", "info", "digits", "--seed", "4294967296"]),
    ("option", ["cmi", GRF, *EXACT, "--seed", "-7"]),
    ("option", ["cmi", GRF, "--device", "tpu"]),
    ("option", ["cmi", GRF, "--estimator", "magic"]),
    ("option", ["data", "info", "digits", "--split", "valid"]),
    ("option", ["sample", "--model", "{tmp}/global", "--precision", "fp16", "--out", "{work}/s.npz"]),
    ("option", ["sample", "--model", "{tmp}/global", "--device", "cuda:7", "--out", "{work}/s.npz"]),
    ("option", ["train", "digits", "--model", "local", "--radius", "1", "--conditional", "--out", "{work}/run"]),
    ("option", ["train", "digits", "--model", "global", "--position-channels", "--out", "{work}/run"]),
    ("option", ["train", "digits", "--model", "local", "--radius", "1", "--resume", "--out", "{work}/run"]),
    # checkpoints
    ("checkpoint", ["sample", "--model", "{tmp}/missing", "--out", "{work}/s.npz"]),
    ("checkpoint", ["sample", "--model", "{tmp}/tampered", "--out", "{work}/s.npz"]),
    ("checkpoint", ["sample", "--model", "{tmp}/many_classes", "--out", "{work}/s.npz"]),
    ("checkpoint", ["sample", "--model", "{tmp}/garbled", "--out", "{work}/s.npz"]),
    ("checkpoint", ["sample", "--model", "{tmp}/listed", "--out", "{work}/s.npz"]),
    ("checkpoint", ["convert", "{tmp}/tampered", "{work}/small"]),
    ("checkpoint", ["convert", "{tmp}/global", "{tmp}/local"]),
    ("checkpoint", ["judge", "{tmp}/good.npz", "--data", "digits", "--judge", "{tmp}/global"]),
    ("checkpoint", ["diagram", "--data", "digits", "--local", "{tmp}/global", "--out", "{work}/run"]),
    ("checkpoint", ["diagram", "--data", "digits", "--local", "", "--out", "{work}/run"]),
    ("checkpoint", ["hybrid", "--model", "{tmp}/global", "--local", "{tmp}/global", "--out", "{work}/run"]),
    ("checkpoint", ["hybrid", "--model", "{tmp}/local", "--local", "{tmp}/local", "--out", "{work}/run"]),
    ("checkpoint", ["hybrid", "--model", "{tmp}/global", "--local", "{tmp}/local", "--judge", "{tmp}/global",
                    "--out", "{work}/run"]),
    ("checkpoint", ["train", "digits", "--model", "local", "--radius", "1", "--init", "{tmp}/missing",
                    "--out", "{work}/run"]),
    ("checkpoint", ["train", "digits", "--model", "local", "--radius", "2", "--init", "{tmp}/local",
                    "--out", "{work}/run"]),
    # labels, guidance, windows and schedules
    ("schedule", ["sample", "--model", "{tmp}/cond", "--label", "99", "--out", "{work}/s.npz"]),
    ("schedule", ["sample", "--model", "{tmp}/global", "--label", "3", "--out", "{work}/s.npz"]),
    ("schedule", ["sample", "--model", "{tmp}/cond", "--guidance", "2", "--out", "{work}/s.npz"]),
    ("schedule", ["sample", "--model", "{tmp}/cond", "--label", "1", "--guidance", "nan", "--out", "{work}/s.npz"]),
    ("schedule", ["sample", "--model", "{tmp}/global", "--local", "{tmp}/local", "--window", "0.5", "--out",
                  "{work}/s.npz"]),
    ("schedule", ["sample", "--model", "{tmp}/global", "--local", "{tmp}/local", "--window", "0.5:0.2", "--out",
                  "{work}/s.npz"]),
    ("schedule", ["sample", "--model", "{tmp}/global", "--local", "{tmp}/local", "--out", "{work}/s.npz"]),
    ("schedule", ["sample", "--model", "g={tmp}/global", "--schedule", "0:0.5=g", "--out", "{work}/s.npz"]),
    ("schedule", ["sample", "--model", "g={tmp}/global", "--schedule", "0:1=g;", "--out", "{work}/s.npz"]),
    ("schedule", ["sample", "--model", "g={tmp}/global", "--model", "g={tmp}/local", "--schedule", "0:1=g",
                  "--out", "{work}/s.npz"]),
    ("schedule", ["sample", "--model", "{tmp}/global", "--model", "{tmp}/local", "--out", "{work}/s.npz"]),
    # output paths
    ("output", ["data", "show", "digits", "--out", "{work}/grid.txt"]),
    ("output", ["data", "show", "digits", "--out", "{work}/nowhere/grid.png"]),
    ("output", ["data", "show", "digits", "--out", "{tmp}/a_folder.png"]),
    ("output", ["data", "export", "digits", "--out", "{tmp}/a_file/x.npz"]),
    ("output", ["data", "export", "digits", "--out", UNWRITABLE + ".npz"]),
    ("output", ["cmi", GRF, *EXACT, "--r", "1", "--t", "0.5", "--out", "{tmp}/a_file"]),
    ("output", ["cmi", GRF, *EXACT, "--r", "1", "--t", "0.5", "--out", UNWRITABLE]),
    ("output", ["cmi", "digits", "--estimator", "neural", "--cache", "{tmp}/a_file", "--t", "0.5", "--r", "1"]),
    ("output", ["train", "digits", "--model", "local", "--radius", "1", "--out", "{tmp}/a_file"]),
    ("output", ["train", "digits", "--model", "local", "--radius", "1", "--out", UNWRITABLE]),
    ("output", ["sample", "--model", "{tmp}/global", "--out", "{work}/s.png"]),
    ("output", ["sample", "--model", "{tmp}/global", "--out", "{tmp}/a_folder.npz"]),
    ("output", ["sample", "--model", "{tmp}/global", "--out", UNWRITABLE + ".npz"]),
    ("output", ["diagram", "--data", "digits", "--local", "{tmp}/local", "--out", "{tmp}/a_file"]),
    ("output", ["hybrid", "--model", "{tmp}/global", "--local", "{tmp}/local", "--out", UNWRITABLE]),
    ("output", ["study", "--out", "{tmp}/a_file"]),
    # the automatic schedule (--window auto, hybrid): the planner's settings, judge and cache
    ("range", ["sample", "--model", "{tmp}/global", "--local", "{tmp}/local", "--window", "auto", "--budget", "0.5",
               "--out", "{work}/s.npz"]),
    ("range", ["sample", "--model", "{tmp}/global", "--local", "{tmp}/local", "--window", "auto", "--budget", "inf",
               "--out", "{work}/s.npz"]),
    ("range", ["sample", "--model", "{tmp}/global", "--local", "{tmp}/local", "--window", "auto", "--plan-n", "1",
               "--out", "{work}/s.npz"]),
    ("range", ["hybrid", "--model", "{tmp}/global", "--local", "{tmp}/local", "--budget", "nan", "--out",
               "{work}/run"]),
    ("schedule", ["sample", "--model", "{tmp}/global", "--window", "auto", "--out", "{work}/s.npz"]),
    ("schedule", ["sample", "--model", "{tmp}/global", "--local", "{tmp}/local", "--window", "0.2:0.5", "--budget",
                  "1.2", "--out", "{work}/s.npz"]),
    ("checkpoint", ["sample", "--model", "{tmp}/global", "--local", "{tmp}/local", "--window", "auto", "--out",
                    "{work}/s.npz"]),
    ("checkpoint", ["sample", "--model", "{tmp}/global", "--local", "{tmp}/local", "--window", "auto", "--judge",
                    "{tmp}/missing", "--out", "{work}/s.npz"]),
    ("checkpoint", ["sample", "--model", "{tmp}/global", "--local", "{tmp}/local", "--window", "auto", "--judge",
                    "{tmp}/global", "--plan-cache", "{work}/cache", "--out", "{work}/s.npz"]),
    ("output", ["sample", "--model", "{tmp}/global", "--local", "{tmp}/local", "--window", "auto", "--judge",
                "{tmp}/judge", "--plan-cache", "{tmp}/a_file", "--out", "{work}/s.npz"]),
]


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("kind, argv", PROBES, ids=[f"{i}-{kind}-{argv[0]}" for i, (kind, argv) in enumerate(PROBES)])
def test_bad_input_is_one_line_status_2_and_writes_nothing(cli, files, tmp_path, monkeypatch, kind, argv):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = [a.replace("{tmp}", str(files)).replace("{work}", str(work)) for a in argv]
    before = _listing(files)
    status, stdout, stderr = cli(*argv, "--quiet")
    assert status == 2, stderr
    assert stdout == "" and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("phasediff") and "Traceback" not in stderr
    assert _listing(files) == before and _listing(work) == [], _listing(work)
    assert not os.path.exists(UNWRITABLE)


def test_the_probe_covers_every_subcommand_and_class():
    commands = {argv[0] for _, argv in PROBES}
    assert commands == {"data", "cmi", "train", "sample", "convert", "judge", "diagram", "hybrid", "hybrid-sweep",
                        "study"}
    assert len(PROBES) >= 100 and len({kind for kind, _ in PROBES}) >= 7


def test_an_unexpected_error_is_one_line_status_1_with_a_trace_file(cli, monkeypatch):
    from phasediff import cli as command

    def broken(args):
        raise ZeroDivisionError("deliberately")

    monkeypatch.setitem(command.DATA_COMMANDS, "info", broken)
    status, _, err = cli("data", "info", "digits")
    assert status == 1 and len(err.strip().splitlines()) == 1 and "bug" in err
    trace = err.strip().split(" in ")[-1]
    assert "ZeroDivisionError: deliberately" in open(trace).read()
    os.unlink(trace)
