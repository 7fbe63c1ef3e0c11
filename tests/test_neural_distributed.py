"""The neural CMI estimator under torchrun: two CPU processes (gloo) train the amortised network and the chain's
links data-parallel, split the t grid of independent links, and estimate what one process does."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import torch
import torch.multiprocessing as mp

from phasediff.data.dataset import Dataset
from phasediff.info import neural as neural_estimator
from phasediff.info.cmi import flat_partitions, measure_cmi
from phasediff.info.gaussian import gaussian_cmi_grid
from phasediff.info.neural import settings_with
from phasediff.info.neural_net import NetConfig
from phasediff.info.neural_train import leave_world
from phasediff.progress import set_quiet
from phasediff.regions import tripartition
from test_neural_cmi import line_covariance

TS, RS = [0.2, 0.5, 0.8], [1, 2]  # three t: in the split grid the first process takes two, the second one
BASE = dict(epochs=6, test=1500, val=500, net=NetConfig(width=32), components=4, specialise=200,
            specialise_everywhere=True)


def line_data(n: int = 4000) -> Dataset:
    images = np.random.default_rng(2).standard_normal((n, 7)) @ np.linalg.cholesky(line_covariance()).T
    return Dataset(images.reshape(-1, 1, 1, 7).astype(np.float32), None, "line")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _process(rank: int, port: int, cache: str, out: str) -> None:
    """One of two processes as torchrun starts them: the split grid, then the chain on the cached amortised
    network; writes its estimates and the cache files it wrote to ``out``/rank{rank}.json."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    set_quiet(True)
    written, save = [], neural_estimator._save_cached
    neural_estimator._save_cached = lambda path, net, meta: (written.append(path.name), save(path, net, meta))
    report = {}
    try:
        for name, chain in (("split", False), ("chain", True)):
            result = measure_cmi(line_data(), TS, RS, estimator="neural", site=(0, 3),
                                 neural=settings_with(**BASE, cache=cache, specialise_chain=chain))
            report[name] = {"cmi": result.cmi.tolist(), "stderr": result.stderr.tolist(),
                            "t": [link["t"] for link in result.details["specialised"]],
                            "cached": result.details["cached"], "written": written[:]}
            written.clear()
    finally:
        leave_world()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as handle:
        json.dump(report, handle)


def test_two_processes_estimate_what_one_does(tmp_path):
    parts = [tripartition((1, 7), r, (0, 3)) for r in RS]
    exact = gaussian_cmi_grid(line_covariance(), TS, flat_partitions((1, 1, 7), parts))
    mp.spawn(_process, args=(_free_port(), str(tmp_path / "cache"), str(tmp_path)), nprocs=2)
    ranks = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in range(2)]
    for name in ("split", "chain"):  # every process has the whole result, and the same one
        assert all(ranks[0][name][key] == ranks[1][name][key] for key in ("cmi", "stderr", "t", "cached"))
    alone = measure_cmi(line_data(), TS, RS, estimator="neural", site=(0, 3), neural=settings_with(**BASE))
    for name in ("split", "chain"):
        cmi, stderr = (np.array(ranks[0][name][key]) for key in ("cmi", "stderr"))
        assert ranks[0][name]["t"] == TS  # every t of the grid, from whichever process measured it
        assert np.all(np.abs(cmi - exact) < np.maximum(0.02, 4 * stderr)), (name, cmi, exact)
        if name == "split":
            combined = np.sqrt(stderr**2 + alone.stderr**2)
            assert np.all(np.abs(cmi - alone.cmi) <= 4 * combined), (cmi, alone.cmi, combined)
    split = [ranks[k]["split"]["written"] for k in range(2)]
    assert len(split[0]) == 3 and len(split[1]) == 1  # the amortised network and t = 0.2, 0.8; t = 0.5
    assert len(set(split[0] + split[1])) == 4  # no file written by both processes
    assert ranks[0]["chain"]["cached"] and ranks[1]["chain"]["written"] == []  # the chain: the first one writes
    assert all("-t0.5-" in name for name in split[1]) and len(ranks[0]["chain"]["written"]) >= 2


def test_cmi_under_torchrun_reports_and_writes_on_the_first_process_alone(tmp_path):
    """torchrun reads an argument --r (or --n) as an ambiguous abbreviation of its own options: the aliases
    --radii and --n-images pass."""
    path = tmp_path / "line.npz"
    np.savez(path, images=np.random.default_rng(0).standard_normal((1500, 1, 1, 27)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "phasediff.cli", "cmi", str(path), "--estimator", "neural", "--t", "0.3,0.6", "--epochs", "1",
           "--radii", "1,12", "--n-images", "1400",
           "--specialise", "20", "--specialise-everywhere", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run"),
           "--save-networks", str(tmp_path / "nets"), "--json"]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)  # one JSON document: the second process printed nothing
    assert [link["t"] for link in result["details"]["specialised"]] == [0.3, 0.6] and result["r"] == [1, 12]
    assert result["details"]["images"]["train"] + result["details"]["images"]["val"] + result["details"]["images"]["test"] == 1400
    assert (tmp_path / "run" / "results.json").is_file()
    assert len(list((tmp_path / "nets").glob("*.safetensors"))) == 3  # the amortised network and two links
