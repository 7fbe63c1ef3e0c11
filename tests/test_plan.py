"""The schedule planner: blocks and costs, the search on cases with known answers, the image cap, the cache,
replay through `phasediff sample --schedule`, and bad input."""

import copy
import json

import numpy as np
import pytest
import torch

from phasediff.classifier import Classifier
from phasediff.data.registry import load_dataset
from phasediff.denoisers.analytic import WienerDenoiser
from phasediff.denoisers.local import LocalDenoiser
from phasediff.denoisers.schedule import Schedule
from phasediff.denoisers.unet import UNet
from phasediff.diagnostics import planner
from phasediff.diagnostics.planner import (
    Blocks,
    PlanOptions,
    evaluation_times,
    make_blocks,
    pareto_ladder,
    plan_schedule,
    sweep_plans,
)
from phasediff.errors import PhasediffError
from phasediff.metrics import classify, frechet_ratio
from phasediff.sampling import sample

SHAPE = (1, 8, 8)
GRID = tuple(round(0.1 * k, 10) for k in range(11))
OPTIONS = PlanOptions(steps=10, n=48, rounds=50, grid=GRID)


class PixelJudge:
    """Frechet distance on the pixels themselves: sensitive to any change of the samples."""

    def features_and_logits(self, x):
        return x.flatten(1).double(), torch.zeros(len(x), 2)


class Only(torch.nn.Module):
    """``good`` where ``keep(t)`` holds, ``bad`` elsewhere: a cheap model that is right only on part of the path."""

    def __init__(self, good, bad, keep):
        super().__init__()
        self.good, self.bad, self.keep, self.radius = good, bad, keep, None

    def forward(self, x, t, label=None):
        keep = self.keep(t).view(-1, 1, 1, 1)
        return torch.where(keep, self.good(x, t), self.bad(x, t))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", split="train").images, load_dataset("digits", split="test").images


@pytest.fixture(scope="module")
def wiener(digits):
    return WienerDenoiser.fit(digits[0])


class Noise(torch.nn.Module):
    """A useless denoiser: its x0 estimate is large random noise (seeded by t, so that reruns agree)."""

    radius = None

    def forward(self, x, t, label=None):
        generator = torch.Generator().manual_seed(round(float(t[0]) * 1e6))
        return 100.0 * torch.randn(x.shape, generator=generator).to(x)


@pytest.fixture(scope="module")
def junk():
    return Noise()


def test_blocks_follow_the_sampler_and_the_schedule(wiener):
    euler, heun = evaluation_times(10, "euler"), evaluation_times(4, "heun")
    assert len(euler) == 10 and len(heun) == 4 + 3  # Heun: a second call per step but the last
    blocks = make_blocks(GRID, heun)  # Heun at 4 steps: t = 1, .75, .5, .25 and .75, .5, .25 again
    assert blocks.edges == ((0.0, 0.3), (0.3, 0.5), (0.5, 0.8), (0.8, 1.0)) and blocks.counts == (2, 2, 2, 1)
    blocks = make_blocks(GRID, euler)
    assert len(blocks) == 10 and blocks.counts == (1,) * 10
    rng = np.random.default_rng(0)
    models = {"a": wiener, "b": wiener, "c": wiener}
    for _ in range(20):  # the written schedule gives each evaluation time its block's model
        plan = tuple(rng.choice(list(models), size=len(blocks)))
        text = blocks.schedule(plan).text()
        assert Schedule.parse(text).text() == text
        denoiser = Schedule.parse(text).build(models)
        chosen = [denoiser.names[i] for i in denoiser.choose(euler).tolist()]
        expected = [plan[k] for k, count in enumerate(blocks.counts) for _ in range(count)][::-1]  # t falls
        assert chosen == expected
    assert blocks.schedule(("a",) * 10).text() == "a"
    assert blocks.cost(("a",) * 5 + ("b",) * 5, {"a": 3.0, "b": 1.0}) == 20.0


def test_the_sweep_count_and_the_exact_front():
    blocks = Blocks(((0, 0.5), (0.5, 1)), (1, 1))
    assert len(sweep_plans(Blocks(tuple((k / 10, (k + 1) / 10) for k in range(10)), (1,) * 10), ["g", "c"], "g")) \
        == 1 + 10 * 11 // 2  # all-reference, all-cheap and the 54 proper windows
    excess = {(0, "c"): 0.1, (1, "c"): 0.3, (0, "l"): 0.5, (1, "l"): 0.05}
    cost = {"g": 10.0, "c": 3.0, "l": 1.0}
    ladder = pareto_ladder(blocks, ["g", "c", "l"], "g", excess, lambda plan: (blocks.cost(plan, cost), 0))
    plans = {(a, b) for a in "gcl" for b in "gcl"}
    predicted = {p: sum(0.0 if m == "g" else excess[k, m] for k, m in enumerate(p)) for p in plans}
    brute = [p for p in plans if not any(blocks.cost(q, cost) <= blocks.cost(p, cost) and predicted[q] <= predicted[p]
                                         and (blocks.cost(q, cost), predicted[q]) != (blocks.cost(p, cost), predicted[p])
                                         for q in plans)]
    assert sorted(p for p, _ in ladder) == sorted(brute)
    costs = [blocks.cost(p, cost) for p, _ in ladder]
    assert costs == sorted(costs, reverse=True) and [e for _, e in ladder] == sorted(e for _, e in ladder)


def test_an_identical_cheap_model_takes_every_step():
    torch.manual_seed(0)
    global_ = UNet(base=8, mults=(1, 2), res_blocks=1, image_size=8).eval()
    models = {"global": global_, "cheap": copy.deepcopy(global_)}
    reference = np.random.default_rng(0).random((40, *SHAPE)).astype(np.float32)
    plan = plan_schedule(models, "global", SHAPE, PixelJudge(), reference, PlanOptions(steps=10, n=16, rounds=20))
    assert plan.schedule == "cheap" and plan.fd_ratio == 1.0 and plan.member_evaluations == {"cheap": 10}
    assert plan.speedup_flops == pytest.approx(1.0)  # the same FLOPs: the tie goes to fewer reference steps
    assert plan.confirmed and plan.confirm_n == 32 and plan.rejected == []
    assert plan.images_sampled == 16 * 12 + 2 * 32 <= plan.sweep_images / 3  # search, then all-reference and cheap


def test_a_useless_cheap_model_keeps_all_reference(wiener, junk, digits):
    plan = plan_schedule({"global": wiener, "cheap": junk}, "global", SHAPE, PixelJudge(), digits[1], OPTIONS,
                         flops={"global": 10.0, "cheap": 1.0})
    assert all(ratios["cheap"] > OPTIONS.beta for ratios in plan.sensitivities.values())
    assert plan.schedule == "global" and plan.fd_ratio == 1.0 and plan.speedup_flops == 1.0
    assert plan.payback_images is None  # nothing saved


@pytest.fixture(scope="module")
def three(wiener, junk, digits):
    """Global everywhere; "mid" right only above t = 0.45, "local" only below t = 0.35: the answer is known."""
    models = {"global": wiener, "mid": Only(wiener, junk, lambda t: t > 0.45),
              "local": Only(wiener, junk, lambda t: t < 0.35)}
    flops, seconds = {"global": 100.0, "mid": 30.0, "local": 5.0}, {"global": 1e-3, "mid": 4e-4, "local": 1e-4}
    plan = plan_schedule(models, None, SHAPE, PixelJudge(), digits[1], OPTIONS, flops=flops, seconds=seconds)
    return models, plan


def test_three_models_split_the_path_where_each_is_right(three):
    _, plan = three
    assert plan.reference == "global"  # the most FLOPs
    assert plan.schedule == "0:0.3=local,0.3:0.4=global,0.4:1=mid"
    assert plan.fd_ratio == 1.0 and plan.member_evaluations == {"local": 3, "global": 1, "mid": 6}
    assert plan.speedup_flops == pytest.approx(1000 / (3 * 5 + 100 + 6 * 30))
    assert plan.speedup_wall == pytest.approx(1e-2 / (3e-4 + 1e-3 + 6 * 4e-4))
    saved = 1e-2 - (3e-4 + 1e-3 + 6 * 4e-4)
    assert plan.payback_images == pytest.approx(plan.planning_seconds / saved)
    for measured in plan.evaluations:  # the counted FLOPs of each sampled schedule are the predicted ones
        assert measured.flops == pytest.approx(planner.Blocks(tuple(plan.blocks), (1,) * 10).cost(
            measured.plan, {"global": 100.0, "mid": 30.0, "local": 5.0}))


def test_the_search_samples_at_most_a_third_of_the_sweep(three):
    _, plan = three
    assert plan.sweep_schedules == 1 + 2 * 55 and plan.sweep_images == 111 * OPTIONS.n
    assert plan.max_images == plan.sweep_images // 3
    phases = [m.phase for m in plan.evaluations]
    assert phases.count("reference") == 1 and phases.count("screen") == 20 and phases.count("verify") >= 1
    confirmations = phases.count("confirm")
    assert confirmations == 2 and plan.confirmed  # all-reference and the search's choice, which holds
    assert plan.images_sampled == OPTIONS.n * (plan.schedules_sampled - confirmations) + 2 * OPTIONS.n * confirmations
    assert plan.images_sampled <= plan.sweep_images / 3


def test_the_cap_is_enforced(wiener, digits):
    models = {"global": wiener, "mid": Only(wiener, wiener, lambda t: t > 0.45)}
    options = PlanOptions(steps=10, n=16, rounds=20, max_images=11 * 16, confirm=0)  # the screen only
    plan = plan_schedule(models, "global", SHAPE, PixelJudge(), digits[1], options, flops={"global": 2.0, "mid": 1.0},
                         seconds={"global": 2.0, "mid": 1.0})
    assert plan.images_sampled == 11 * 16 and {m.phase for m in plan.evaluations} == {"reference", "screen"}
    assert plan.schedule.count("mid") == 1  # the best single substitution measured
    assert not plan.confirmed and plan.confirm_seed is None
    for too_small in (PlanOptions(steps=10, n=16, max_images=100), PlanOptions(steps=10, n=16, max_images=11 * 16)):
        with pytest.raises(PhasediffError, match="over the cap"):  # the second: no room to confirm
            plan_schedule(models, "global", SHAPE, PixelJudge(), digits[1], too_small,
                          flops={"global": 2.0, "mid": 1.0}, seconds={"global": 2.0, "mid": 1.0})


class FreshTrial:
    """A stand-in for the confirmation's `Search`: plan k of a list meets the budget from k = ``first_pass`` on."""

    def __init__(self, first_pass: int, cap: int = 100):
        self.first_pass, self.cap, self.measured = first_pass, cap, {}

    def affordable(self, plan):
        return plan in self.measured or len(self.measured) < self.cap

    def measure(self, plan, phase):
        meets = plan == ("base",) or int(plan[0]) >= self.first_pass
        self.measured[plan] = planner.Measured(plan, plan[0], phase, {"ratio": 1.0 if meets else 2.0}, 0.0, 0.0,
                                               0.0, meets)
        return self.measured[plan]


@pytest.mark.parametrize("first_pass", [0, 1, 5, 11, 12])
def test_the_confirmation_bisects_to_the_cheapest_plan_that_holds(first_pass):
    passing = [(str(k),) for k in range(12)]  # cheap to dear
    trial = FreshTrial(first_pass)
    best, rejected = planner.confirm(trial, ("base",), passing)
    assert best.plan == (passing[first_pass] if first_pass < 12 else ("base",))
    assert all(not m.meets for m in rejected) and len(trial.measured) <= 2 + 4  # base, the choice, log2(12)
    short = FreshTrial(5, cap=2)  # all-reference and one plan: the choice fails, the cap stops the search
    best, rejected = planner.confirm(short, ("base",), passing)
    assert best.plan == ("base",) and [m.plan for m in rejected] == [("0",)]


@pytest.mark.parametrize("start, first_pass", [(7, 5), (7, 8), (3, 0), (11, 12)])
def test_the_confirmation_started_inside_the_list_still_finds_the_cheapest_that_holds(start, first_pass):
    passing = [(str(k),) for k in range(12)]
    best, _ = planner.confirm(FreshTrial(first_pass), ("base",), passing, start)
    assert best.plan == (passing[first_pass] if first_pass < 12 else ("base",))
    best, _ = planner.confirm(FreshTrial(first_pass, cap=2), ("base",), passing, start)  # room for one probe
    assert best.plan == (passing[start] if first_pass <= start else ("base",))


def test_the_confirmation_keeps_room_to_step_past_its_first_probe():
    assert planner.confirmation_size(PlanOptions(n=250), left=2_000) == 500  # 2 n, three plans fit
    assert planner.confirmation_size(PlanOptions(n=250), left=1_166) == 388  # two models' small cap: fewer each
    assert planner.confirmation_size(PlanOptions(n=250, confirm=300), left=1_166) == 300  # asked for: as asked
    passing = [(str(k),) for k in range(12)]
    best, _ = planner.confirm(FreshTrial(0, cap=3), ("base",), passing, 1)  # the probe holds, one step cheaper too
    assert best.plan == ("0",)


def test_the_first_probe_is_the_cheapest_pass_the_search_noise_hardly_explains():
    def searched(*highs):
        return [planner.Measured((str(k),), str(k), "verify", {"ratio": 1.0, "low": 0.9, "high": high}, 0.0, 0.0,
                                 0.0, True) for k, high in enumerate(highs)]

    assert planner.first_probe(searched(1.3, 1.2, 1.1, 1.05), 1.15) == 2  # cheap to dear: the first upper end <= beta
    assert planner.first_probe(searched(1.3, 1.2, 1.25), 1.15) == 1  # none within: the lowest upper end
    assert planner.first_probe([], 1.15) == 0


def test_a_plan_that_holds_only_on_the_planning_noise_is_rejected(wiener, junk, digits):
    """The winner's curse in its extreme: a cheap model right on the search's batches of n and wrong on any other."""
    lucky = Only(wiener, junk, lambda t: torch.ones_like(t, dtype=torch.bool))
    lucky.forward = lambda x, t, label=None: wiener(x, t) if len(x) == OPTIONS.n else junk(x, t)
    plan = plan_schedule({"global": wiener, "lucky": lucky}, "global", SHAPE, PixelJudge(), digits[1], OPTIONS,
                         flops={"global": 10.0, "lucky": 1.0}, seconds={"global": 1.0, "lucky": 0.1})
    assert plan.schedule == "global" and plan.fd_ratio == 1.0 and plan.confirmed
    assert plan.rejected and all(r["search_fd_ratio"] <= OPTIONS.beta < r["fd_ratio"] for r in plan.rejected)
    assert plan.rejected[0]["schedule"] == "lucky"  # the search's choice: every step to the cheap model
    assert plan.images_sampled <= plan.max_images
    searched = sum(OPTIONS.n for m in plan.evaluations if m.phase != "confirm")
    assert plan.confirm_n == min(2 * OPTIONS.n, (plan.max_images - searched) // 3)  # room for three plans


def test_the_plan_replays_through_the_sampler(three, digits):
    models, plan = three
    judge = PixelJudge()
    denoiser = Schedule.parse(plan.schedule).build(models)
    images = sample(denoiser, OPTIONS.n, SHAPE, steps=OPTIONS.steps).clamp(0, 1).numpy()
    base = sample(models["global"], OPTIONS.n, SHAPE, steps=OPTIONS.steps).clamp(0, 1).numpy()
    reference = classify(judge, digits[1])[0]
    ratio = frechet_ratio(classify(judge, images)[0], classify(judge, base)[0], reference, rounds=OPTIONS.rounds)
    assert ratio["ratio"] == pytest.approx(plan.fd_ratio) and denoiser.evaluations == {
        "local": 3 * OPTIONS.n, "global": OPTIONS.n, "mid": 6 * OPTIONS.n}


@pytest.mark.parametrize("change, match", [
    ({"beta": 0.9}, "beta"), ({"beta": float("nan")}, "beta"), ({"grid": (0.0, 0.5)}, "grid"),
    ({"grid": (0.0, 0.6, 0.5, 1.0)}, "grid"), ({"n": 1}, "n >= 2"), ({"method": "rk4"}, "sampler"),
    ({"cost": "watts"}, "cost")])
def test_bad_options_are_refused(change, match, wiener, junk, digits):
    options = PlanOptions(**{**vars(OPTIONS), **change})
    with pytest.raises(PhasediffError, match=match):
        plan_schedule({"global": wiener, "cheap": junk}, "global", SHAPE, PixelJudge(), digits[1], options)


def test_bad_models_are_refused(wiener, digits):
    for models, reference, match in (({"global": wiener}, "global", "at least one other"),
                                     ({"global": wiener, "a*2": wiener}, "global", "bad model name"),
                                     ({"global": wiener, "cheap": wiener}, "nope", "not among")):
        with pytest.raises(PhasediffError, match=match):
            plan_schedule(models, reference, SHAPE, PixelJudge(), digits[1], OPTIONS)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny untrained global and local networks and a judge for 8 x 8 digits."""
    from phasediff.denoisers.checkpoint import save

    folder = tmp_path_factory.mktemp("plan-ckpt")
    extra = {"data": "digits", "image_shape": [1, 8, 8]}
    torch.manual_seed(0)
    save(folder / "global", UNet(base=8, mults=(1, 2), res_blocks=1, image_size=8), extra, weights="ema")
    save(folder / "local", LocalDenoiser(1, width=4), extra, weights="ema")
    save(folder / "judge", Classifier(channels=1, num_classes=10, width=8), extra, weights="ema")
    return folder


def _plan_args(checkpoints, cache):
    return ["plan", "--model", f"global={checkpoints / 'global'}", "--model", f"local={checkpoints / 'local'}",
            "--judge", checkpoints / "judge", "--steps", "10", "--n", "16", "--precision", "fp32", "--cache", cache]


def test_plan_command_caches_and_replays(cli_json, checkpoints, tmp_path, monkeypatch):
    first = cli_json(*_plan_args(checkpoints, tmp_path / "cache"), "--out", tmp_path / "plan.json")
    for key in ("schedule", "fd_ratio", "fd_ratio_interval", "speedup_wall", "speedup_flops", "images_sampled",
                "sweep_images", "planning_seconds", "payback_images"):
        assert key in first
    assert first["reference"] == "global" and not first["cached"]
    assert first["images_sampled"] <= first["sweep_images"] / 3
    assert json.loads((tmp_path / "plan.json").read_text())["schedule"] == first["schedule"]
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1

    def no_sampling(*args, **kwargs):
        raise AssertionError("a cached plan samples nothing")

    monkeypatch.setattr(planner, "run_schedule", no_sampling)
    second = cli_json(*_plan_args(checkpoints, tmp_path / "cache"))
    assert second["cached"] and second["key"] == first["key"]
    assert {k: v for k, v in second.items() if k not in ("cached", "seconds")} == \
        {k: v for k, v in first.items() if k not in ("cached", "seconds")}
    monkeypatch.undo()
    other = cli_json(*_plan_args(checkpoints, tmp_path / "cache"), "--beta", "1.5")  # other settings, other key
    assert other["key"] != first["key"] and not other["cached"]

    # replay: `phasediff sample --schedule` draws the planner's samples, so the paired ratio comes back
    models = ["--model", f"global={checkpoints / 'global'}", "--model", f"local={checkpoints / 'local'}"]
    common = ["--n", "16", "--steps", "10"]
    if first["confirm_seed"] is not None:  # the reported ratio is the confirmation's, on its fresh noise
        common = ["--n", str(first["confirm_n"]), "--steps", "10", "--seed", str(first["confirm_seed"])]
    cli_json("sample", *models, "--schedule", first["schedule"], *common, "--out", tmp_path / "plan.npz")
    cli_json("sample", *models, "--schedule", "global", *common, "--out", tmp_path / "base.npz")
    from phasediff.report.samples import load_judge

    judge = load_judge(checkpoints / "judge")
    features = [classify(judge, np.load(tmp_path / f"{name}.npz")["images"])[0] for name in ("plan", "base")]
    reference = classify(judge, load_dataset("digits", split="test").images)[0]
    seed = first["confirm_seed"] or 0  # the bootstrap's bias correction is seeded as the measurement's noise
    assert frechet_ratio(*features, reference, seed=seed)["ratio"] == pytest.approx(first["fd_ratio"])


@pytest.mark.parametrize("extra, match", [
    (["--beta", "0.5"], "beta"), (["--reference", "nope"], "nope"), (["--grid", "0.5:1:0.1"], "grid"),
    (["--n", "0"], "--n"), (["--model", "bare-path"], "NAME=PATH"), (["--confirm", "-1"], "confirm")])
def test_plan_command_refuses_bad_input_in_one_line(cli, checkpoints, tmp_path, extra, match):
    status, out, err = cli(*_plan_args(checkpoints, tmp_path / "cache"), *extra)
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and match in err


def test_plan_command_needs_two_models(cli, checkpoints, tmp_path):
    status, _, err = cli("plan", "--model", f"global={checkpoints / 'global'}", "--judge", checkpoints / "judge",
                         "--cache", tmp_path)
    assert status == 2 and "at least one other" in err and len(err.strip().splitlines()) == 1


def _auto_args(checkpoints, cache, out, *extra):
    return ["sample", "--model", checkpoints / "global", "--local", checkpoints / "local", "--window", "auto",
            "--judge", checkpoints / "judge", "--steps", "10", "--plan-n", "16", "--plan-cache", cache, "--n", "8",
            "--precision", "fp32", "--out", out, *extra]


def test_window_auto_is_the_plan_and_a_second_call_reads_it(cli_json, cli, checkpoints, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = cli_json(*_auto_args(checkpoints, cache, tmp_path / "a.npz"))
    auto = first["auto"]
    assert first["schedule"] == auto["schedule"] and not auto["cached"]
    assert auto["planning_seconds"] == auto["planned_seconds"] > 0
    assert auto["planning_images"] == auto["planned_images"] > 0
    assert auto["payback_images"] is None or auto["payback_images"] > 0
    # `phasediff plan` of the same models, steps, sampler and budget: the same schedule, under the same key
    fresh = cli_json(*_plan_args(checkpoints, tmp_path / "fresh"))
    assert fresh["schedule"] == auto["schedule"] and fresh["key"] == auto["key"] and not fresh["cached"]
    assert fresh["images_sampled"] == auto["planned_images"]

    def no_sampling(*args, **kwargs):
        raise AssertionError("a cached plan samples nothing")

    monkeypatch.setattr(planner, "run_schedule", no_sampling)
    second = cli_json(*_auto_args(checkpoints, cache, tmp_path / "b.npz"))["auto"]
    assert second["cached"] and second["planning_seconds"] == 0 and second["planning_images"] == 0
    assert {k: second[k] for k in ("schedule", "key", "planned_seconds", "planned_images", "payback_images")} == \
        {k: auto[k] for k in ("schedule", "key", "planned_seconds", "planned_images", "payback_images")}
    np.testing.assert_array_equal(np.load(tmp_path / "a.npz")["images"], np.load(tmp_path / "b.npz")["images"])
    shared = cli_json(*_plan_args(checkpoints, cache))  # `phasediff plan` reads the plan that sample made
    assert shared["cached"] and shared["key"] == auto["key"]
    status, out, _ = cli(*_auto_args(checkpoints, cache, tmp_path / "c.npz", "--quiet"))
    assert status == 0 and "from the plan cache" in out and "pays for itself" in out
    monkeypatch.undo()
    other = cli_json(*_auto_args(checkpoints, cache, tmp_path / "d.npz", "--budget", "1.5"))["auto"]
    assert other["key"] != auto["key"] and not other["cached"] and other["budget"] == 1.5


def test_the_pay_off_of_a_plan_that_saves_nothing_is_never():
    from phasediff.report.hybrid import AutoSchedule

    auto = AutoSchedule(schedule="global", budget=1.15, fd_ratio=1.0, speedup_flops=1.0, speedup_wall=1.0,
                        cached=False, key="k", planning_seconds=2.0, planning_images=100, planned_seconds=2.0,
                        planned_images=100, payback_images=None)
    assert "pays for itself never" in auto.text() and auto.global_windows() == [(0.0, 1.0)]
    paid = AutoSchedule(**{**auto.to_dict(), "schedule": "0:0.3=local,0.3:1=global", "payback_images": 1234.2,
                           "cached": True, "planning_seconds": 0.0, "planning_images": 0})
    assert "after 1,235 samples" in paid.text() and "from the plan cache" in paid.text()
    assert paid.global_windows() == [(0.3, 1.0)]


@pytest.mark.parametrize("extra, match", [
    (["--budget", "0.9"], "--budget"), (["--budget", "nan"], "--budget"), (["--plan-n", "1"], "--plan-n")])
def test_window_auto_refuses_bad_settings_in_one_line(cli, checkpoints, tmp_path, extra, match):
    status, out, err = cli(*_auto_args(checkpoints, tmp_path / "cache", tmp_path / "x.npz", "--quiet", *extra))
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and match in err
    assert list(tmp_path.iterdir()) == []
