"""`phasediff reproduce`: stage keys, the on-disk cache (reuse, failure, a kill mid-stage), skip reasons on the
page, and bad input at the command line. The stages run on scikit-learn's 8 x 8 digits with the Gaussian CMI
estimator on a tiny grid, so a whole reproduction takes a few seconds."""

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from phasediff.errors import PhasediffError
from phasediff.report.samples import CHECKPOINTS
from phasediff.reproduce import DATASETS, DatasetPlan, Options, reproduce
from phasediff.reproduce.paper import REFERENCES
from phasediff.reproduce.stages import Stage, build_stages, key_inputs, stage_key
from phasediff.reproduce.steps.cmi import PROFILES
from phasediff.reproduce.views.cmi import PROFILE_TEXT

DATA = {"spec": "digits", "sha256": None}


def tiny_plan() -> DatasetPlan:
    """Digits, no checkpoints (so the network stages are skipped), the CMI on a 3 x 2 grid."""
    return DatasetPlan("digits", "scikit-learn digits", "digits", "digits", "digits",
                       overrides={"cmi": {"t": [0.1, 0.5, 0.9], "r": [1, 2]}, "data": {"grid": 16}})


def tiny_options(tmp_path: Path) -> Options:
    return Options(quick=True, cmi_estimator="gaussian", checkpoints=tmp_path / "no-checkpoints")


def tiny_report(tmp_path: Path, out: Path | None = None, quiet: bool = True) -> tuple[Path, dict]:
    out = out or tmp_path / "report"
    return out, reproduce(tiny_plan(), out, tiny_options(tmp_path), quiet=quiet)


@pytest.fixture(scope="session")
def finished_report(tmp_path_factory) -> tuple[Path, dict]:
    """One tiny reproduction, made once: (its folder, the summary of its first run). Copy it to change it."""
    base = tmp_path_factory.mktemp("tiny")
    return tiny_report(base)


@pytest.fixture
def report_copy(finished_report, tmp_path) -> Path:
    """A copy of the finished tiny reproduction in this test's folder."""
    copy = tmp_path / "report"
    shutil.copytree(finished_report[0], copy)
    return copy


def _log(out: Path) -> str:
    return (out / "log.txt").read_text()


def _last_run(out: Path) -> str:
    """The log lines of the last run."""
    return _log(out).rpartition(" reproduce digits (quick)")[2]


# --- keys ------------------------------------------------------------------------------------------------------

def _copy_checkpoint(tmp_path: Path) -> Path:
    for suffix in (".json", ".safetensors"):
        shutil.copy(CHECKPOINTS / "mnist" / f"local-r1{suffix}", tmp_path / f"local-r1{suffix}")
    return tmp_path / "local-r1"


def test_the_key_changes_with_a_setting_a_checkpoint_the_data_or_a_dependency_and_not_otherwise(tmp_path):
    checkpoint = _copy_checkpoint(tmp_path)
    stage = Stage("data", "t", "q", {"n": 10, "seed": 0}, {"local-r1": checkpoint}, depends=("cmi",))
    key = stage_key(key_inputs(stage, DATA, {"cmi": "abc"}))
    assert key == stage_key(key_inputs(Stage("data", "other title", "other question", {"seed": 0, "n": 10},
                                             {"local-r1": checkpoint}, depends=("cmi",)), dict(DATA), {"cmi": "abc"}))
    assert key != stage_key(key_inputs(Stage("data", "t", "q", {"n": 11, "seed": 0}, {"local-r1": checkpoint},
                                             depends=("cmi",)), DATA, {"cmi": "abc"}))
    assert key != stage_key(key_inputs(stage, {"spec": "digits:n=100", "sha256": None}, {"cmi": "abc"}))
    assert key != stage_key(key_inputs(stage, DATA, {"cmi": "abd"}))
    assert key != stage_key(key_inputs(stage, DATA, {}))  # the dependency did not finish
    sidecar = json.loads(checkpoint.with_suffix(".json").read_text())
    sidecar["weights_sha256"] = "0" * 64
    checkpoint.with_suffix(".json").write_text(json.dumps(sidecar))
    assert key != stage_key(key_inputs(stage, DATA, {"cmi": "abc"}))


def test_quick_and_full_stages_have_different_keys_and_the_same_options_the_same_keys():
    keys, names = {}, []
    for quick in (True, False, True):
        stages = [s for s in build_stages(DATASETS["mnist"], Options(quick=quick)) if s.skip is None]
        keys.setdefault(quick, []).append([stage_key(key_inputs(s, DATA, {})) for s in stages])
        names = [s.name for s in stages]
    assert keys[True][0] == keys[True][1]
    # shared by both modes: the data summary, and the CMI heatmap, which the quick mode reads from the full mode's
    # committed estimator networks (checkpoints/mnist/cmi/)
    shared = {"data", "cmi"}
    assert [(a == b) for a, b in zip(keys[True][0], keys[False][0])] == [name in shared for name in names]


def test_what_each_dataset_can_serve_is_decided_with_a_reason():
    mnist = {s.name: s for s in build_stages(DATASETS["mnist"], Options(quick=True))}
    assert [name for name, s in mnist.items() if s.skip] == ["phases"]
    assert "not such a family" in mnist["phases"].skip
    assert mnist["diagram"].settings["radii"] == [1, 3, 6] and "global" in mnist["diagram"].checkpoints
    assert mnist["cmi"].settings["estimator"] == "neural-validated"  # checkpoints/mnist/cmi/ serves it
    fashion = {s.name: s for s in build_stages(DATASETS["fashion-mnist"], Options(quick=True))}
    assert fashion["cmi"].settings["estimator"] == "neural-validated"  # checkpoints/fashion-mnist/cmi/
    assert set(PROFILE_TEXT) == set(PROFILES) and all(caveat for _, caveat in PROFILE_TEXT.values())
    ising = {s.name: s for s in build_stages(DATASETS["ising"], Options(quick=True))}
    assert ising["cmi"].settings["estimator"] == "neural-amortised-quick"  # no committed estimator networks
    assert not any(s.skip for s in ising.values())
    assert ising["hybrid"].settings["mode"] == "plan"
    assert ising["phases"].settings["values"] == [1.8, 3.0, 4.0] and not ising["phases"].settings["lacking"]
    full = {s.name: s for s in build_stages(DATASETS["ising"], Options())}
    assert full["phases"].settings["values"] == [1.8, 2.269, 2.75, 3.0, 3.5, 4.0, 5.0]
    unknown = DatasetPlan(**{**DATASETS["ising"].__dict__, "family": {**DATASETS["ising"].family, "quick_values": [3.0, 9.0]}})
    lacking = {s.name: s for s in build_stages(unknown, Options(quick=True))}["phases"].settings["lacking"]
    assert [item["value"] for item in lacking] == [9.0] and "no global checkpoint" in lacking[0]["reason"]
    bare = {s.name: s for s in build_stages(DATASETS["mnist"], Options(quick=True, checkpoints=Path("/nonexistent")))}
    assert all(bare[name].skip for name in ("diagram", "hybrid", "concurrence", "phases"))
    with pytest.raises(PhasediffError, match="unknown CMI estimator"):
        build_stages(DATASETS["mnist"], Options(cmi_estimator="nope"))


def test_the_full_mode_logs_its_expected_cost_first_and_counts_each_stages_work(report_copy):
    assert "expected cost" not in _log(report_copy)  # the quick mode does not time itself
    plan = tiny_plan()
    changed = DatasetPlan(**{**plan.__dict__, "overrides": {**plan.overrides, "cmi": {"t": [0.2, 0.6], "r": [1]}}})
    for expected in ("expected cost: about", "expected cost: nothing to compute"):
        reproduce(changed, report_copy, Options(cmi_estimator="gaussian"), quiet=True)
        run = _log(report_copy).rpartition(" reproduce digits (full)")[2]
        assert expected in run and run.index("expected cost") < run.index("stage data")
    stages = {s.name: s for s in build_stages(DATASETS["mnist"], Options(quick=True))}
    for name in ("diagram", "hybrid", "concurrence"):
        counts = stages[name].step().workload(stages[name])["evaluations"]
        assert counts and set(counts) <= set(stages[name].checkpoints) and min(counts.values()) > 0


def test_every_paper_number_has_a_source():
    assert REFERENCES and all(ref.source and ref.text for ref in REFERENCES)
    assert {ref.data for ref in REFERENCES} <= set(DATASETS)


# --- the cache -------------------------------------------------------------------------------------------------

def test_a_rerun_reuses_finished_stages_and_says_so(tmp_path, capsys, finished_report, report_copy):
    out, first = report_copy, finished_report[1]
    assert [s["status"] for s in first["stages"]] == ["done", "done", "skipped", "skipped", "skipped", "skipped"]
    results = {p: p.read_bytes() for p in (out / "stages").glob("*/results.json")}
    assert len(results) == 2
    capsys.readouterr()
    _, second = tiny_report(tmp_path, out, quiet=False)
    err = capsys.readouterr().err
    assert "stage data: cached" in err and "stage cmi: cached" in err and "running" not in err
    assert [s["status"] for s in second["stages"]][:2] == ["cached", "cached"]
    assert {p: p.read_bytes() for p in (out / "stages").glob("*/results.json")} == results
    assert _log(out).count("stage cmi: cached") == 1 and _log(out).count("stage cmi: running") == 1
    assert json.loads((out / "run.json").read_text())["stages"][1]["status"] == "cached"


def test_a_changed_setting_recomputes_only_its_stage(tmp_path, report_copy):
    out = report_copy
    plan = tiny_plan()
    changed = DatasetPlan(**{**plan.__dict__, "overrides": {**plan.overrides, "cmi": {"t": [0.2, 0.5], "r": [1]}}})
    summary = reproduce(changed, out, tiny_options(tmp_path), quiet=True)
    assert [s["status"] for s in summary["stages"]][:2] == ["cached", "done"]
    assert len(list((out / "stages").glob("cmi-*"))) == 2  # the other key's stage is kept, not used


def test_a_stage_that_fails_midway_leaves_no_finished_marker_and_runs_again(tmp_path, monkeypatch):
    import phasediff.reproduce.steps.cmi as cmi_step

    real = cmi_step.run

    def broken(stage, ctx, work):
        (work / "half-written.txt").write_text("not finished")
        raise RuntimeError("killed mid-stage")

    monkeypatch.setattr(cmi_step, "run", broken)
    out = tmp_path / "report"
    with pytest.raises(RuntimeError, match="killed mid-stage"):
        tiny_report(tmp_path, out)
    assert len(list((out / "stages").glob("data-*/results.json"))) == 1
    assert not list((out / "stages").glob("*cmi*")) and not list(out.rglob("half-written.txt"))

    def refused(stage, ctx, work):
        raise PhasediffError("the data cannot serve this")

    monkeypatch.setattr(cmi_step, "run", refused)
    _, summary = tiny_report(tmp_path, out)
    assert summary["failed"] == ["cmi"] and not list((out / "stages").glob("*cmi*"))
    page = (out / "index.html").read_text()
    assert "Failed:" in page and "the data cannot serve this" in page

    monkeypatch.setattr(cmi_step, "run", real)
    _, summary = tiny_report(tmp_path, out)
    assert [s["status"] for s in summary["stages"]][:2] == ["cached", "done"]
    last = _last_run(out)
    assert "stage data: cached" in last and "stage cmi: done" in last


KILLED = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    import phasediff.reproduce.steps.cmi as cmi_step
    from test_reproduce import tiny_report

    def slow(stage, ctx, work):
        (work / "half-written.txt").write_text("not finished")
        time.sleep(120)

    cmi_step.run = slow
    tiny_report(Path(sys.argv[1]))
""")


def test_a_run_killed_during_a_stage_resumes_without_recomputing_finished_stages(tmp_path):
    out = tmp_path / "report"
    process = subprocess.Popen([sys.executable, "-c", KILLED, str(tmp_path), str(Path(__file__).parent)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "log.txt").exists() or "stage cmi: running" not in _log(out):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the stage never started"
        time.sleep(0.1)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list((out / "stages").glob(".cmi-*.partial-*")), "the killed stage left its work folder"
    assert not list((out / "stages").glob("cmi-*"))
    _, summary = tiny_report(tmp_path, out)
    log = _log(out)
    assert "removed what a killed run left" in log
    assert log.count("stage data: running") == 1 and "stage data: cached" in log
    assert [s["status"] for s in summary["stages"]][:2] == ["cached", "done"]
    assert not list((out / "stages").glob(".*"))


# --- the page --------------------------------------------------------------------------------------------------

def test_skip_reasons_commands_and_data_files_reach_the_page(finished_report):
    out, summary = finished_report
    page = (out / "index.html").read_text()
    for row in summary["stages"]:
        if row["status"] == "skipped":
            assert row["reason"] and row["reason"].split(" (")[0] in page
    assert page.count("Skipped:") == 4
    assert "phasediff cmi digits --estimator gaussian" in page and "phasediff data info digits" in page
    assert "Provenance" in page and "Wall time per stage" in page and "torch" in page
    for link in ("stages/data-", "stages/cmi-"):
        assert link in page
    assert (out / "report.css").is_file()
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_a_folder_that_holds_other_files_or_another_dataset_is_refused(tmp_path, report_copy):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(PhasediffError, match="holds other files"):
        reproduce(tiny_plan(), other, tiny_options(tmp_path), quiet=True)
    with pytest.raises(PhasediffError, match="holds the reproduction of 'digits'"):
        reproduce(DATASETS["mnist"], report_copy, Options(quick=True), quiet=True)


# --- the command -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["reproduce", "cifar10", "--out", "{tmp}/r"], "reproduce serves mnist, fashion-mnist, ising"),
    (["reproduce", "mnist", "--out", "{tmp}/file.txt"], "exists and is not a folder"),
    (["reproduce", "mnist", "--out", "{tmp}/missing/r"], "does not exist"),
    (["reproduce", "mnist", "--quick", "--out", "{tmp}/r", "--cmi-estimator", "nope"], "invalid choice"),
])
def test_bad_input_is_one_line_and_status_2(cli, tmp_path, argv, message):
    (tmp_path / "file.txt").write_text("a file")
    status, out, err = cli(*[a.format(tmp=tmp_path) for a in argv])
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not (tmp_path / "r").exists()


def test_quick_cmi_takes_the_validated_profile_where_committed_networks_serve_it(tmp_path):
    """--quick: the validated estimator where the checkpoints root holds DATA/cmi/ networks (read, not trained),
    the quick amortised one elsewhere; the full mode is validated either way."""
    root = tmp_path / "checkpoints"
    (root / "mnist").mkdir(parents=True)
    profile = lambda quick: next(s for s in build_stages(DATASETS["mnist"], Options(quick=quick, checkpoints=root))
                                 if s.name == "cmi").settings["estimator"]
    assert profile(True) == "neural-amortised-quick" and profile(False) == "neural-validated"
    (root / "mnist" / "cmi").mkdir()
    (root / "mnist" / "cmi" / "ringnet-0.safetensors").write_bytes(b"")
    assert profile(True) == "neural-validated"
