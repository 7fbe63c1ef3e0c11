"""Schedule evaluation (time, evaluations, FLOPs, paired Frechet ratio), the front, and the hybrid commands."""

import time

import numpy as np
import pytest
import torch

from phasediff.classifier import Classifier
from phasediff.denoisers.local import LocalDenoiser
from phasediff.denoisers.schedule import Schedule
from phasediff.denoisers.unet import UNet
from phasediff.diagnostics.schedules import (ScheduleResult, compare_schedules, flops_per_image, interleaved_seconds,
                                             pareto_front, run_schedule, sweep_windows)
from phasediff.errors import PhasediffError
from phasediff.metrics import QualityReport, frechet_ratio
from phasediff.sampling import sample

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    local = LocalDenoiser(1, width=8).eval()
    global_ = UNet(base=8, mults=(1, 2), res_blocks=1, image_size=8).eval()
    return {"local": local, "global": global_}


def test_paper_window_runs_the_global_model_ten_of_thirty_two_steps():
    from phasediff.sampling import time_grid

    times = time_grid(32)[:-1].tolist()
    assert Schedule.hybrid([(0.2, 0.5)]).steps(times) == {"global": 10, "local": 22}
    assert Schedule.hybrid([(0.0, 1.0)]).steps(times)["global"] == 32
    assert Schedule.hybrid([]).steps(times) == {"local": 32}


def test_all_global_schedule_equals_plain_sampling(models):
    images, result = run_schedule("global", models, Schedule.hybrid([(0, 1)]), 6, SHAPE, steps=4, seed=3,
                                  precision="fp32")
    expected = sample(models["global"], 6, SHAPE, steps=4, seed=3).clamp(0, 1).numpy()
    np.testing.assert_array_equal(images, expected)
    assert result.evaluations == {"global": 24, "local": 0} and result.member_steps == {"global": 4, "local": 0}
    assert result.flops == pytest.approx(24 * flops_per_image(models["global"], SHAPE))


def test_flops_count_each_model_by_its_evaluations(models):
    local, global_ = models["local"], models["global"]
    f_local, f_global = flops_per_image(local, SHAPE), flops_per_image(global_, SHAPE)
    assert 0 < f_local < f_global
    # 8 steps: t = 1, 7/8, ..., 1/8; the window [0.3, 0.6] holds t = 3/8, 4/8
    _, result = run_schedule("lgl", models, Schedule.hybrid([(0.3, 0.6)]), 5, SHAPE, steps=8, precision="fp32")
    assert result.evaluations == {"global": 10, "local": 30}
    assert result.flops == pytest.approx(30 * f_local + 10 * f_global)
    with pytest.raises(PhasediffError):
        run_schedule("x", models, Schedule.hybrid([]), 2, SHAPE, steps=2, precision="fp16")


def test_a_guided_member_costs_two_passes():
    torch.manual_seed(0)
    g = UNet(base=8, mults=(1, 2), res_blocks=1, image_size=8, num_classes=3).eval()
    from phasediff.diagnostics.schedules import member_flops

    flops = member_flops({"g": g}, Schedule.parse("0:0.5=g*3,g"), SHAPE)
    assert flops["g*3"] == pytest.approx(2 * flops["g"])


def test_frechet_ratio_is_paired():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(400, 3))
    shifted = rng.normal(size=(300, 3)) + 0.5
    ratio = frechet_ratio(shifted, shifted, reference, rounds=20)
    assert ratio == {"ratio": 1.0, "low": 1.0, "high": 1.0, "plug_in": 1.0}
    worse = frechet_ratio(shifted + 0.5, shifted, reference, rounds=50)
    assert worse["low"] > 1.5 and worse["low"] <= worse["ratio"] <= worse["high"]
    # a baseline close to the reference: resampling inflates its FD most, so the draws R* fall below R; the
    # bias-corrected ratio moves up from R, and its basic interval covers it
    near = rng.normal(size=(300, 3)) + 0.05
    small = frechet_ratio(shifted, near, reference, rounds=100)
    assert small["ratio"] > small["plug_in"] and small["low"] <= small["ratio"] <= small["high"]


def _result(name, seconds, fd):
    q = QualityReport(n=1, frechet=fd, frechet_low=fd, frechet_high=fd, frechet_plug_in=fd, confidence=1.0,
                      class_fractions=[1.0], memorised_fraction=None, median_nn_ratio=None)
    return ScheduleResult(name=name, schedule="local", n=1, steps=1, member_steps={}, seconds=seconds,
                          images_per_second=1 / seconds, evaluations={}, flops=0.0, quality=q)


class Sleepy(torch.nn.Module):
    """Zero velocity after ``pause`` seconds; counts its calls."""

    radius = None

    def __init__(self, pause: float):
        super().__init__()
        self.pause, self.calls = pause, 0

    def forward(self, x, t, label=None):
        self.calls += 1
        time.sleep(self.pause)
        return torch.zeros_like(x)


def test_interleaved_timing_samples_every_schedule_once_a_round():
    slow, fast = Sleepy(0.005), Sleepy(0.0)
    schedules = {"slow": Schedule.parse("slow"), "half": Schedule.parse("0:0.5=fast,0.5:1=slow")}
    seconds = interleaved_seconds({"slow": slow, "fast": fast}, schedules, (1, 4, 4), steps=4, batch=2, rounds=3,
                                  precision="fp32")
    assert set(seconds) == {"slow", "half"}
    assert slow.calls == (1 + 3) * (4 + 2) and fast.calls == (1 + 3) * 2  # an untimed batch, then one a round each
    assert seconds["slow"] >= 4 * 0.005 / 2 and seconds["half"] >= 2 * 0.005 / 2  # per image: the pauses at least


def test_pareto_front_keeps_only_undominated_schedules():
    results = [_result("a", 1.0, 9.0), _result("b", 2.0, 5.0), _result("c", 3.0, 6.0), _result("d", 4.0, 1.0)]
    assert [r.name for r in pareto_front(results)] == ["a", "b", "d"]
    for r, flops in zip(results, (4.0, 1.0, 2.0, 3.0)):  # by FLOPs: b is cheapest, then c, d, a
        r.flops = flops
    assert [r.name for r in pareto_front(results, "flops")] == ["b", "d"]
    with pytest.raises(PhasediffError):
        pareto_front(results, "watts")
    assert sweep_windows([0.0, 0.5], [0.5, 1.0]) == [(0.0, 0.5), (0.0, 1.0), (0.5, 1.0)]


def test_compare_schedules_end_to_end(models):
    torch.manual_seed(0)
    judge = Classifier(channels=1, num_classes=3, width=8).eval()
    reference = np.random.default_rng(0).random((40, *SHAPE)).astype(np.float32)
    schedules = {name: Schedule.hybrid(w) for name, w in (("global", [(0, 1)]), ("local", []),
                                                          ("lgl", [(0.2, 0.5)]))}
    results, grids = compare_schedules(models, schedules, judge, reference, n=20, shape=SHAPE, steps=4,
                                       baseline="global", rounds=5, keep_images=4)
    by_name = {r.name: r for r in results}
    assert by_name["global"].frechet_ratio["ratio"] == pytest.approx(1.0)
    assert by_name["local"].evaluations == {"local": 80} and by_name["global"].evaluations["local"] == 0
    assert all(r.quality.n == 20 and r.seconds > 0 for r in results)
    assert grids["lgl"].shape == (4, *SHAPE)
    with pytest.raises(PhasediffError):
        compare_schedules(models, schedules, judge, reference, n=2, shape=SHAPE, baseline="nope")
    with pytest.raises(PhasediffError, match="uses cheap"):
        compare_schedules(models, {"x": Schedule.parse("cheap")}, judge, reference, n=2, shape=SHAPE)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, models):
    """Tiny untrained global, local, wiener-local and judge checkpoints for 8 x 8 digits."""
    from phasediff.denoisers.checkpoint import save

    folder = tmp_path_factory.mktemp("ckpt")
    local, global_ = models["local"], models["global"]
    extra = {"data": "digits", "image_shape": [1, 8, 8]}
    save(folder / "global", global_, extra, weights="ema")
    save(folder / "local", local, extra, weights="ema")
    from phasediff.data.registry import load_dataset
    from phasediff.denoisers.wiener_local import WienerPlusLocalDenoiser

    torch.manual_seed(0)
    cheap = WienerPlusLocalDenoiser(1, 8, width=4).fit_linear(load_dataset("digits", split="train").images)
    save(folder / "wiener-local", cheap, extra, weights="ema")
    torch.manual_seed(0)
    save(folder / "judge", Classifier(channels=1, num_classes=10, width=8), extra, weights="ema")
    save(folder / "cond", UNet(base=8, mults=(1, 2), res_blocks=1, image_size=8, num_classes=10), extra,
         weights="ema")
    return folder


def test_sample_command_with_schedules(cli_json, cli, checkpoints, tmp_path):
    """A three-model schedule, the label only inside a window, and a guided hybrid, through the command line;
    each equals the same composite built through the Python API."""
    from phasediff.denoisers import load
    from phasediff.denoisers.compose import Guided, Piecewise, Unconditional

    bind = ["--model", f"local={checkpoints / 'local'}", "--model", f"g={checkpoints / 'cond'}",
            "--model", f"cheap={checkpoints / 'wiener-local'}"]
    three = cli_json("sample", *bind, "--schedule", "0:0.25=local,0.25:0.75=g,0.75:1=cheap", "--n", "3",
                     "--steps", "4", "--out", tmp_path / "three.npz")
    assert three["evaluations"] == {"local": 3, "g": 6, "cheap": 3}
    window = cli_json("sample", *bind, "--schedule", "0.5:0.5=g*3,g", "--label", "7", "--n", "3", "--steps", "4",
                      "--out", tmp_path / "window.npz")
    assert window["evaluations"] == {"g*3": 3, "g": 9}
    g = load(checkpoints / "cond")
    by_hand = Piecewise([(0.5, 0.5, Guided(g, 3.0))], default=Unconditional(g))
    expected = sample(by_hand, 3, SHAPE, steps=4, label=torch.full((3,), 7)).clamp(0, 1).numpy()
    np.testing.assert_array_equal(np.load(tmp_path / "window.npz")["images"], expected)
    guided = cli_json("sample", "--model", checkpoints / "cond", "--local", checkpoints / "local", "--window",
                      "0.25:0.75", "--label", "2", "--guidance", "2", "--n", "2", "--steps", "4",
                      "--out", tmp_path / "guided.npz")
    assert guided["schedule"] == "0.25:0.75=global*2.0,local" and guided["evaluations"] == {"global*2.0": 6,
                                                                                          "local": 2}
    for extra in (["--schedule", "0:1=g*2"], ["--schedule", "0:1=g", "--label", "1"],
                  ["--schedule", "0:0.5=g"], ["--schedule", "0:1=nobody"], ["--schedule", "0:1=g", "--local",
                                                                            str(checkpoints / "local")]):
        status, _, err = cli("sample", *bind, *extra, "--n", "2", "--steps", "2", "--out", tmp_path / "x.npz",
                             "--quiet")
        assert status == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "x.npz").exists(), extra


def test_sample_command_with_a_hybrid(cli_json, checkpoints, tmp_path):
    out = tmp_path / "h.npz"
    summary = cli_json("sample", "--model", checkpoints / "global", "--local", checkpoints / "local", "--window",
                       "0.25:0.5", "--n", "6", "--steps", "4", "--out", out)
    assert summary["schedule"] == "0.25:0.5=global,local" and summary["evaluations"] == {"global": 12, "local": 12}
    assert np.load(out)["images"].shape == (6, 1, 8, 8) and out.with_suffix(".png").exists()
    cheap = cli_json("sample", "--model", checkpoints / "global", "--local", checkpoints / "wiener-local",
                     "--window", "auto", "--judge", checkpoints / "judge", "--plan-n", "16", "--plan-cache",
                     tmp_path / "cache", "--n", "3", "--steps", "10", "--out", tmp_path / "w.npz")
    assert cheap["schedule"] == cheap["auto"]["schedule"] and sum(cheap["evaluations"].values()) == 30
    assert np.load(tmp_path / "w.npz")["images"].shape == (3, 1, 8, 8)


@pytest.mark.parametrize("extra", [["--window", "0.5:0.2"], ["--window", "auto"], ["--local", "LOCAL"],
                                   ["--local", "GLOBAL", "--window", "all"], ["--window", "auto", "--local", "LOCAL",
                                                                              "--budget", "0.5"],
                                   ["--window", "0.2:0.5", "--budget", "1.2"]])
def test_sample_command_refuses_bad_hybrids(cli, checkpoints, tmp_path, extra):
    extra = [str(checkpoints / "local") if e == "LOCAL" else str(checkpoints / "global") if e == "GLOBAL" else e
             for e in extra]
    if "--local" not in extra and "auto" not in extra:
        extra += ["--local", str(checkpoints / "local")]
    out = tmp_path / "x.npz"
    status, _, err = cli("sample", "--model", checkpoints / "global", *extra, "--n", "2", "--steps", "2",
                         "--out", out, "--quiet")
    assert status == 2 and len(err.strip().splitlines()) == 1 and not out.exists()


def test_judge_command(cli_json, checkpoints, tmp_path):
    from phasediff.data.registry import load_dataset

    path = tmp_path / "test.npz"
    np.savez(path, images=load_dataset("digits", split="test").images[:100])
    report = cli_json("judge", path, "--data", "digits", "--judge", checkpoints / "judge")
    assert report["n"] == 100 and len(report["class_fractions"]) == 10
    assert report["frechet_plug_in"] < 1.0  # a subset of the reference itself
    assert 0 <= report["memorised_fraction"] <= 1


@pytest.fixture(scope="module")
def plan_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("plans")


def test_hybrid_and_sweep_commands_write_runs(cli_json, checkpoints, tmp_path, plan_cache):
    common = ["--model", checkpoints / "global", "--local", checkpoints / "local", "--judge", checkpoints / "judge",
              "--n", "16", "--steps", "10", "--precision", "fp32", "--plan-n", "16", "--plan-cache", plan_cache]
    summary = cli_json("hybrid", *common, "--out", tmp_path / "cmp")
    names = [s["name"] for s in summary["schedules"]]
    assert names == ["all-global", "all-local", "local-global-local [0.2, 0.5]", "global-local-global", "auto"]
    assert {p.name for p in (tmp_path / "cmp").iterdir()} >= {"results.json", "table.md", "grid-0.png"}
    auto = summary["auto"]
    assert summary["schedules"][-1]["schedule"] == Schedule.parse(auto["schedule"]).text()
    assert auto["budget"] == summary["budget"] == 1.15 and auto["planned_images"] > 0 and "payback_images" in auto
    assert "pays for itself" in (tmp_path / "cmp" / "table.md").read_text()
    sweep = cli_json("hybrid-sweep", *common, "--lows", "0,0.5", "--highs", "0.5,1", "--out", tmp_path / "sweep")
    assert sweep["auto"]["cached"] and sweep["auto"]["planning_images"] == 0  # the same plan: read, not made
    assert sweep["auto"]["schedule"] == auto["schedule"] and sweep["quality_bar"] == 1.15
    assert len(sweep["schedules"]) == 3 + 3 and sweep["pareto"]
    meeting = [s for s in sweep["schedules"] if s["frechet_ratio"]["ratio"] <= sweep["quality_bar"]]
    assert sweep["fastest_meeting_bar"] == min(meeting, key=lambda s: s["seconds"])["name"]
    assert sweep["fewest_flops_meeting_bar"] == min(meeting, key=lambda s: s["flops"])["name"]
    by_name = {s["name"]: s for s in sweep["schedules"]}
    assert by_name["all-global"]["frechet_ratio"]["plug_in"] == 1.0
    assert by_name["[0, 0.5]"]["member_steps"] == {"global": 5, "local": 5}
    assert (tmp_path / "sweep" / "pareto.png").exists()
    bar = cli_json("hybrid-sweep", *common, "--lows", "0", "--highs", "1", "--budget", "2", "--out", tmp_path / "bar")
    assert bar["quality_bar"] == bar["auto"]["budget"] == 2.0 and not bar["auto"]["cached"]


def test_hybrid_default_precision_follows_the_hardware(cli_json, cli, checkpoints, tmp_path, monkeypatch, plan_cache):
    from phasediff import precision

    monkeypatch.setattr(precision, "native_bf16", lambda device_type="cpu": False)
    summary = cli_json("hybrid", "--model", checkpoints / "global", "--local", checkpoints / "local", "--judge",
                       checkpoints / "judge", "--n", "4", "--steps", "10", "--plan-n", "16", "--plan-cache",
                       plan_cache, "--out", tmp_path / "auto")
    assert summary["precision"] == "fp32"
    assert "precision: fp32" in (tmp_path / "auto" / "config.yaml").read_text()
    status, _, err = cli("sample", "--model", checkpoints / "global", "--n", "2", "--steps", "2", "--precision",
                         "bf16", "--out", tmp_path / "s.npz", "--quiet")
    assert status == 0 and "bf16 is emulated" in err


def test_convert_command_halves_the_weights_and_keeps_the_sidecar(cli_json, cli, checkpoints, tmp_path):
    from phasediff.denoisers import load, read_info

    info = cli_json("convert", checkpoints / "global", tmp_path / "small")
    assert info["weights_dtype"] == "bfloat16" and info["data"] == "digits"
    assert info["converted_from_sha256"] == read_info(checkpoints / "global")["weights_sha256"]
    big, small = (checkpoints / "global.safetensors").stat().st_size, (tmp_path / "small.safetensors").stat().st_size
    assert small < 0.6 * big
    a, b = load(checkpoints / "global"), load(tmp_path / "small")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert q.dtype == p.dtype and torch.equal(q, p.to(torch.bfloat16).float()), name
    status, _, err = cli("convert", checkpoints / "global", tmp_path / "small", "--quiet")
    assert status == 2 and "exists" in err


def test_diagram_command_writes_the_phase_diagram(cli_json, cli, checkpoints, tmp_path):
    summary = cli_json("diagram", "--data", "digits", "--local", str(checkpoints / "local"), "--model",
                       checkpoints / "global", "--images", "12", "--t-final", "0.2,0.6", "--steps", "4",
                       "--analytic", "50", "--out", tmp_path / "d")
    assert summary["recovery"]["radii"] == ["1", "global"] and len(summary["recovery"]["mse"]) == 2
    assert summary["gap_network_trajectory"]["n"] == 12 and summary["gap_analytic_forward"]["radii"] == [1]
    written = {p.name for p in (tmp_path / "d").iterdir()}
    assert written >= {"recovery.png", "gap-network-forward.png", "gap-network-trajectory.png", "gap-analytic.png",
                       "results.json", "summary.txt"}
    fast = cli_json("diagram", "--data", "digits", "--local", str(checkpoints / "local"), "--model",
                    checkpoints / "global", "--images", "12", "--t-final", "0.2,0.6", "--steps", "4",
                    "--analytic", "0", "--precision", "bf16", "--out", tmp_path / "bf16")
    assert fast["precision"] == "bf16" and "gap_analytic_forward" not in fast
    np.testing.assert_allclose(fast["recovery"]["mse"], summary["recovery"]["mse"], rtol=0.05)
    status, _, err = cli("diagram", "--data", "digits", "--local", str(checkpoints / "global"), "--out",
                         tmp_path / "e", "--quiet")
    assert status == 2 and "not a local model" in err and not (tmp_path / "e").exists()


def test_reproduce_hybrid_stage_compares_with_the_planned_schedule(checkpoints, tmp_path, monkeypatch):
    """The reproduction's comparison stage runs `hybrid_comparison` with the planner's automatic schedule (plan
    cache under $XDG_CACHE_HOME) and counts the planner's samples in its workload."""
    from phasediff.reproduce.stages import Stage
    from phasediff.reproduce.steps import hybrid as step
    from phasediff.reproduce.views.hybrid import command

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = {"mode": "comparison", "spec": "digits", "n": 4, "steps": 10, "seed": 0, "budget": 1.15, "plan_n": 16,
                "batch_size": 500, "precision": "fp32", "device": "cpu"}
    stage = Stage("hybrid", "t", "q", settings, {k: checkpoints / k for k in ("global", "local", "judge")})
    (tmp_path / "work").mkdir()
    result = step.run(stage, None, tmp_path / "work")
    auto = result["hybrid"]["auto"]
    assert "auto" in {s["name"] for s in result["hybrid"]["schedules"]} and not auto["cached"]
    assert auto["planning_images"] > 0 and list((tmp_path / "cache" / "phasediff" / "plans").glob("*.json"))
    assert step.workload(stage)["evaluations"]["global"] >= step.PLANNED_SCHEDULES * 16 * 10
    assert "--budget 1.15 --plan-n 16" in command(stage) and "--tolerance" not in command(stage)
