"""The schedule planner: the cheapest piecewise schedule of named models whose paired FD ratio to the
all-reference schedule (the full model at every step) meets a budget beta.

Blocks. Edges 0 = e_0 < ... < e_K = 1 cut [0, 1]; block k holds the sampler's evaluation times in
(e_k, e_k+1] (block 0 also e_0), which is how a `Schedule` written in increasing t settles a shared end (the
ownership is read from `Piecewise.choose` on the sampler's own times). A block without an evaluation time is
merged into the next one. A plan gives each block one model; its text is a `Schedule`.

Cost per image. cost(a) = sum over evaluation times t of c(model at t), c being the model's forward FLOPs per
image (`flops_per_image`) or its wall-clock seconds per image (`seconds_per_image`: interleaved repeats,
median); speed-up = cost(all-reference) / cost(a).

Quality. Every schedule is sampled from the same seeded noise (`run_schedule`), judged by the classifier and
compared with all-reference by the paired, bias-corrected ratio `frechet_ratio`, as `phasediff hybrid`
judges; a schedule meets the budget when ratio <= beta (``confident``: the upper end of its 95% interval).

Search (screen, predict, verify):

1. Screen: all-reference, then each single-block substitution (block k to model m): its excess
   e(k, m) = max(high - 1, 0), high the upper end of the paired ratio's 95% interval (the largest excess the
   measurement allows: a substitution that looks free within the noise still counts, so joining many of
   them is predicted to cost something). That is 1 + B (M - 1) schedules for B blocks and M models.
2. Predict: excess(a) ~ s * sum_k e(k, a_k), a first-order (additive) model of measured sensitivities, as
   OMS-DPM's predictor but measured. The exact Pareto front of (cost, predicted excess) over all M^B
   plans, by dynamic programming over the blocks, ordered from dear to cheap, is the ladder.
3. Verify: a bracket (cheapest rung measured to pass, dearest measured to fail) on the ladder; the next
   probe is the cheapest rung with s * predicted <= beta - 1, s the last probe's measured / predicted excess
   (a secant step: compounding errors make s > 1), or the bracket's middle when that rung lies outside it.
   It stops when the bracket closes, when no rung is predicted to meet the budget, or when the next probe
   would pass the image cap.

4. Confirm: the search picks the cheapest of many noisy measurements, so its winner's ratio is biased low
   (a Fashion-MNIST plan read 1.01 at n = 250 and 1.62 on 5,000 fresh samples). The plans measured to meet
   the budget are measured again, with all-reference, on fresh noise (seed + CONFIRM_SEED) at ``confirm``
   images per plan. The first probe is the cheapest plan whose search interval lies within the budget (upper
   end <= beta: a pass the search's noise hardly explains; else the plan with the lowest upper end); then a
   bisection over the list (cheaper plans fail more often) moves to cheaper plans while they pass and dearer
   ones when one fails, within the image cap. Its fresh measurement is the one reported; with no plan
   confirmed the answer is all-reference (ratio 1 by construction). The search leaves room in the cap for
   all-reference and one plan at 2 n images each (``confirm`` when given). By default (`confirmation_size`)
   each plan gets 2 n, or fewer so that all-reference, the first probe and one step of the bisection fit in
   what the search left (at least 4/3 n each): with two models and their small cap, one probe could only
   confirm the plan it started at, never step to the cheaper plan the search had also passed.

The answer is the cheapest schedule confirmed to meet the budget (all-reference always does: ratio 1). Why
this search: in the measured sweeps (docs/hybrid-study.md) the excesses of substitutions at the two ends of
the path roughly add ([0.1, 1]: 1.03, [0, 0.9]: 1.12, together [0.1, 0.9]: 1.15) and compound in the middle,
which the secant scale and the verification absorb. Screening costs 1 + B (M - 1) schedules against
1 + (M - 1) B (B + 1) / 2 for the single-window sweep (B = 10, two models: 11 against 56), and it ranks any
piecewise plan of any subset of the models, not only one window. The image cap (default a third of the
sweep's images) is enforced, never exceeded.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

from phasediff.denoisers.schedule import NAME, Schedule, build_member
from phasediff.diagnostics.schedules import flops_per_image, interleaved_median, run_schedule
from phasediff.errors import PhasediffError
from phasediff.metrics import classify, frechet_ratio
from phasediff.precision import autocast
from phasediff.progress import progress
from phasediff.sampling import SAMPLERS, sample

PLANNER_VERSION = 4  # part of the cache key: bump when the search changes its answers
CONFIRM_SEED = 7919  # offset of the confirmation's noise seed from the search's
DEFAULT_BETA = 1.15
DEFAULT_GRID = tuple(round(0.1 * k, 10) for k in range(11))
COSTS = ("flops", "wall")


@dataclass(frozen=True)
class PlanOptions:
    """How to plan: the sampler (steps, method), the budget beta, images per schedule, the block edges, what
    "cheap" means (``cost``: flops or wall), the pass rule and the image cap (None: a third of the sweep)."""

    steps: int = 32
    method: str = "euler"
    beta: float = DEFAULT_BETA
    n: int = 250
    grid: tuple[float, ...] = DEFAULT_GRID
    seed: int = 0
    batch_size: int = 500
    precision: str = "fp32"
    device: str = "cpu"
    cost: str = "flops"
    confident: bool = False
    max_images: int | None = None
    rounds: int = 200  # bootstrap rounds of each paired ratio
    confirm: int | None = None  # images per plan confirmed on fresh noise (None: `confirmation_size`; 0: none)

    @property
    def confirm_n(self) -> int:
        """The most images per confirmed plan: ``confirm``, by default 2 n."""
        return 2 * self.n if self.confirm is None else self.confirm

    def check(self) -> None:
        if self.steps < 1 or self.n < 2 or self.batch_size < 1 or self.rounds < 1:
            raise PhasediffError(f"need steps >= 1, n >= 2, batch size >= 1, rounds >= 1; got {self.steps}, "
                                 f"{self.n}, {self.batch_size}, {self.rounds}")
        if self.method not in SAMPLERS:
            raise PhasediffError(f"unknown sampler {self.method!r} (choose from {', '.join(SAMPLERS)})")
        if not (math.isfinite(self.beta) and self.beta >= 1.0):
            raise PhasediffError(f"the budget beta is an FD ratio to all-reference, a finite number >= 1; got "
                                 f"{self.beta}")
        if self.cost not in COSTS:
            raise PhasediffError(f"cost must be one of {', '.join(COSTS)}, got {self.cost!r}")
        grid = list(self.grid)
        if (len(grid) < 3 or grid[0] != 0.0 or grid[-1] != 1.0
                or any(not b > a for a, b in pairwise(grid))):
            raise PhasediffError(f"the grid must rise strictly from 0 to 1 with at least two blocks, e.g. "
                                 f"0:1:0.1; got {grid}")
        if self.confirm is not None and (self.confirm < 0 or self.confirm == 1):
            raise PhasediffError(f"confirm: images per confirmation, 0 (none) or >= 2; got {self.confirm}")
        if self.max_images is not None and self.max_images < 1:
            raise PhasediffError(f"the image cap must be >= 1, got {self.max_images}")


@dataclass(frozen=True)
class Blocks:
    """The non-empty blocks: their edges (lo, hi) and how many evaluations per image each holds."""

    edges: tuple[tuple[float, float], ...]
    counts: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.edges)

    def schedule(self, plan: Sequence[str]) -> Schedule:
        """One model per block -> the `Schedule` (neighbours with the same model joined; one model: bare)."""
        pieces: list[list] = []
        for (lo, hi), name in zip(self.edges, plan):
            if pieces and pieces[-1][2] == name:
                pieces[-1][1] = hi
            else:
                pieces.append([lo, hi, name])
        if len(pieces) == 1:
            return Schedule((), pieces[0][2])
        return Schedule(tuple(tuple(p) for p in pieces))

    def cost(self, plan: Sequence[str], per_model: Mapping[str, float]) -> float:
        """sum over blocks of (evaluations in the block) x (the block model's cost per evaluation)."""
        return float(sum(count * per_model[name] for count, name in zip(self.counts, plan)))


def evaluation_times(steps: int, method: str) -> torch.Tensor:
    """The times at which the sampler calls the denoiser for one image, as it passes them (Heun: twice a step
    but the last), recorded by a probe denoiser."""
    seen = []

    def probe(x, t, label=None):
        seen.append(t.clone())
        return torch.zeros_like(x)

    sample(probe, 1, (1, 1, 1), steps=steps, method=method)
    return torch.cat(seen)


def make_blocks(grid: Sequence[float], times: torch.Tensor) -> Blocks:
    """The grid's blocks that hold evaluation times; an empty block joins the next one (the last, the one
    before). Ownership is `Piecewise.choose`'s, on the sampler's own times."""
    labels = {f"b{k}": None for k in range(len(grid) - 1)}
    pieces = tuple((lo, hi, name) for (lo, hi), name in zip(pairwise(grid), labels))
    owner = Schedule(pieces).build({name: _Nothing() for name in labels}).choose(times)
    counts = torch.bincount(owner, minlength=len(labels)).tolist()
    edges, held, start = [], [], grid[0]
    for k, count in enumerate(counts[: len(labels)]):
        if count:
            edges.append((start, grid[k + 1]))
            held.append(count)
            start = grid[k + 1]
    edges[-1] = (edges[-1][0], grid[-1])
    return Blocks(tuple(edges), tuple(held))


class _Nothing(torch.nn.Module):
    """A placeholder member: `make_blocks` only asks which piece owns each time."""

    radius = None

    def forward(self, x, t, label=None):
        raise AssertionError("the placeholder is never called")


def sweep_plans(blocks: Blocks, models: Sequence[str], reference: str) -> set[tuple[str, ...]]:
    """The distinct plans of the single-window sweep on the same blocks: all-reference, and for each other model
    m, the reference inside every window of consecutive blocks and m outside (the empty window: all-m)."""
    b = len(blocks)
    plans = {(reference,) * b}
    for cheap in models:
        if cheap == reference:
            continue
        plans.add((cheap,) * b)
        for i in range(b):
            for j in range(i, b):
                plans.add(tuple(reference if i <= k <= j else cheap for k in range(b)))
    return plans


@torch.no_grad()
def seconds_per_image(models: Mapping[str, object], shape: tuple[int, int, int], batch: int = 32,
                      repeats: int = 5, precision: str = "fp32", device: str = "cpu") -> dict[str, float]:
    """Wall-clock seconds of one forward pass per image of each model, as the sampler calls it (no label): a
    batch at t = 0.5, the models interleaved over ``repeats`` rounds (`interleaved_median`) / batch."""
    members = {name: build_member(name, models) for name in models}
    x = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(0)).to(device)
    t = torch.full((batch,), 0.5, device=device)

    def run(member):
        return lambda: member(x, t)

    with autocast(precision, torch.device(device).type):
        medians = interleaved_median({name: run(m) for name, m in members.items()}, repeats, device)
    return {name: value / batch for name, value in medians.items()}


@dataclass
class Measured:
    """One sampled schedule: its plan and text, the paired ratio to all-reference, its costs per image."""

    plan: tuple[str, ...]
    schedule: str
    phase: str  # reference, screen, verify or confirm
    ratio: dict[str, float]
    flops: float
    seconds: float
    sampling_seconds: float
    meets: bool
    predicted_excess: float | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("plan")
        return out


@dataclass
class Plan:
    """The chosen schedule and what it cost to find it."""

    schedule: str
    reference: str
    fd_ratio: float
    fd_ratio_interval: tuple[float, float]
    beta: float
    confident: bool
    speedup_flops: float
    speedup_wall: float
    member_evaluations: dict[str, int]  # per image
    flops_per_image: dict[str, float]  # per model and evaluation
    seconds_per_image: dict[str, float]
    images_sampled: int
    schedules_sampled: int
    confirmed: bool  # measured again on fresh noise (``confirm_n`` images, seed ``confirm_seed``) and met the budget
    confirm_n: int
    confirm_seed: int | None
    search_fd_ratio: float  # the search's measurement of the chosen schedule (n images, seed), biased low
    search_fd_ratio_interval: tuple[float, float]
    rejected: list[dict]  # schedules that met the budget in the search and failed it on fresh noise
    sweep_schedules: int
    sweep_images: int
    max_images: int
    planning_seconds: float
    payback_images: float | None  # planning seconds / wall-clock seconds saved per image
    blocks: list[tuple[float, float]]
    steps: int
    method: str
    n: int
    seed: int
    cost: str
    sensitivities: dict[str, dict[str, float]]  # block -> model -> paired ratio of the single substitution
    evaluations: list[Measured] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["evaluations"] = [m.to_dict() for m in self.evaluations]
        return out


def check_models(models: Mapping[str, object], reference: str | None) -> None:
    """At least two models, names a `Schedule` can use, and the reference (None: chosen later) among them."""
    if len(models) < 2:
        raise PhasediffError(f"the planner needs the reference model and at least one other, got "
                             f"{', '.join(models) or 'none'}")
    for name in models:
        if not NAME.fullmatch(name):
            raise PhasediffError(f"bad model name {name!r}: letters, digits, _ and -, starting with a letter")
    if reference is not None and reference not in models:
        raise PhasediffError(f"the reference model {reference!r} is not among {', '.join(models)}")


def heaviest(flops: Mapping[str, float]) -> str:
    """The model with the most FLOPs per image (the default reference)."""
    return max(flops, key=lambda name: flops[name])


def plan_schedule(models: Mapping[str, object], reference: str | None, shape: tuple[int, int, int], judge,
                  reference_images: np.ndarray, options: PlanOptions = PlanOptions(),
                  flops: Mapping[str, float] | None = None, seconds: Mapping[str, float] | None = None,
                  started: float | None = None) -> Plan:
    """Search for the cheapest schedule of ``models`` that meets the budget (see the module docstring).
    ``reference``: the full model (None: the one with the most FLOPs); ``judge``: a classifier
    (features_and_logits); ``reference_images``: the data it compares against; ``flops`` / ``seconds``: per
    model and image (measured when not given); ``started``: `time.perf_counter` when planning began (default
    now), for the planning seconds."""
    start = time.perf_counter() if started is None else started
    options.check()
    check_models(models, reference)
    names = list(models)
    flops = dict(flops) if flops is not None else {m: flops_per_image(build_member(m, models), shape) for m in names}
    seconds = dict(seconds) if seconds is not None else seconds_per_image(models, shape, precision=options.precision,
                                                                          device=options.device)
    for table, what in ((flops, "flops"), (seconds, "seconds")):
        if set(table) != set(names) or not all(math.isfinite(v) and v >= 0 for v in table.values()):
            raise PhasediffError(f"{what} per image must be given, finite and >= 0, for every model: {names}")
    reference = heaviest(flops) if reference is None else reference
    blocks = make_blocks(options.grid, evaluation_times(options.steps, options.method))
    sweep = len(sweep_plans(blocks, names, reference))
    cap = options.max_images if options.max_images is not None else sweep * options.n // 3
    screen = 1 + len(blocks) * (len(names) - 1)
    reserve = 2 * options.confirm_n  # for the confirmation: all-reference and at least one plan, on fresh noise
    if screen * options.n + reserve > cap:
        raise PhasediffError(f"screening {len(blocks)} blocks of {len(names)} models takes {screen} schedules of "
                             f"{options.n} images, and confirming {reserve} more, over the cap of {cap} (a third of "
                             f"the {sweep}-schedule sweep); plan more steps over a finer grid, confirm on fewer "
                             "images, or run hybrid-sweep")
    per = flops if options.cost == "flops" else seconds
    key = cheap_first(blocks, per, reference)

    search = Search(models, shape, judge, reference_images, options, blocks, flops, seconds, cap - reserve)

    base = (reference,) * len(blocks)
    search.measure(base, "reference")
    excess = {}
    bar = progress(total=screen - 1, desc="screen")
    for k in range(len(blocks)):
        for name in names:
            if name == reference:
                continue
            plan = base[:k] + (name,) + base[k + 1:]
            excess[k, name] = max(search.measure(plan, "screen").ratio["high"] - 1.0, 0.0)
            bar.update()
    bar.close()
    ladder = pareto_ladder(blocks, names, reference, excess, key)
    verify(search, ladder, options.beta - 1.0)

    chosen = min((m for m in search.measured.values() if m.meets), key=lambda m: key(m.plan))
    best, rejected, checked = chosen, [], None
    passing = search.passing(base, key)
    if options.confirm_n and passing:
        checked = search.confirmation(cap - search.images, confirmation_size(options, cap - search.images))
        best, rejected = confirm(checked, base, passing, first_probe([search.measured[p] for p in passing],
                                                                     options.beta))
    everything = search.measured[base]
    spent = time.perf_counter() - start
    saved = everything.seconds - best.seconds
    evaluations = {name: 0 for name in names}
    for count, name in zip(blocks.counts, best.plan):
        evaluations[name] += count
    return Plan(
        schedule=best.schedule, reference=reference, fd_ratio=best.ratio["ratio"],
        fd_ratio_interval=(best.ratio["low"], best.ratio["high"]), beta=options.beta, confident=options.confident,
        speedup_flops=_ratio(everything.flops, best.flops), speedup_wall=_ratio(everything.seconds, best.seconds),
        member_evaluations={k: v for k, v in evaluations.items() if v}, flops_per_image=flops,
        seconds_per_image=seconds, images_sampled=search.images + (checked.images if checked else 0),
        schedules_sampled=len(search.measured) + (len(checked.measured) if checked else 0),
        confirmed=best.plan == base or (checked is not None and best.plan in checked.measured),
        confirm_n=options.confirm_n if checked is None else checked.options.n,
        confirm_seed=None if checked is None else checked.options.seed,
        search_fd_ratio=search.measured[best.plan].ratio["ratio"],
        search_fd_ratio_interval=(search.measured[best.plan].ratio["low"], search.measured[best.plan].ratio["high"]),
        rejected=[{"schedule": m.schedule, "fd_ratio": m.ratio["ratio"], "fd_ratio_interval": [m.ratio["low"],
                   m.ratio["high"]], "search_fd_ratio": search.measured[m.plan].ratio["ratio"]} for m in rejected],
        sweep_schedules=sweep, sweep_images=sweep * options.n, max_images=cap, planning_seconds=spent,
        payback_images=spent / saved if saved > 0 else None, blocks=list(blocks.edges), steps=options.steps,
        method=options.method, n=options.n, seed=options.seed, cost=options.cost,
        sensitivities={f"[{lo:g}, {hi:g}]": {name: 1.0 + excess[k, name] for name in names if name != reference}
                       for k, (lo, hi) in enumerate(blocks.edges)},
        evaluations=list(search.measured.values()) + (list(checked.measured.values()) if checked else []))


def confirmation_size(options: PlanOptions, left: int) -> int:
    """Images per plan on fresh noise: ``options.confirm`` when given; else 2 n, or ``left`` // 3 when smaller,
    so that all-reference, the first probe and one step of the bisection fit in the ``left`` images of the cap
    (the search leaves at least 4 n: at least 4/3 n each)."""
    return options.confirm if options.confirm is not None else min(options.confirm_n, left // 3)


def cheap_first(blocks: Blocks, per: Mapping[str, float], reference: str) -> Callable:
    """The sort key of plans: cost per image by ``per``, then (at equal cost) fewer steps of ``reference``."""
    steps_of_reference = {m: float(m == reference) for m in per}
    return lambda plan: (blocks.cost(plan, per), blocks.cost(plan, steps_of_reference))


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.inf


class Search:
    """Samples and judges plans on the common noise, once each, within the image cap."""

    def __init__(self, models, shape, judge, reference_images, options: PlanOptions, blocks: Blocks, flops,
                 seconds, cap: int, reference_features=None):
        self.models, self.shape, self.judge, self.options, self.blocks = models, shape, judge, options, blocks
        self.flops, self.seconds, self.cap = flops, seconds, cap
        self.reference_features = (classify(judge, reference_images)[0] if reference_features is None
                                   else reference_features)
        self.base_features = None
        self.measured: dict[tuple[str, ...], Measured] = {}
        self.images = 0

    def confirmation(self, cap: int, n: int) -> Search:
        """The same search on fresh noise (seed + CONFIRM_SEED), ``n`` images per plan, judged against the same
        reference features, within ``cap`` images."""
        fresh = replace(self.options, n=n, seed=self.options.seed + CONFIRM_SEED)
        return Search(self.models, self.shape, self.judge, None, fresh, self.blocks, self.flops, self.seconds, cap,
                      self.reference_features)

    def passing(self, base: tuple[str, ...], key: Callable) -> list[tuple[str, ...]]:
        """The plans measured to meet the budget, but ``base``, cheap to dear by ``key``."""
        return sorted((m.plan for m in self.measured.values() if m.meets and m.plan != base), key=key)

    def affordable(self, plan: tuple[str, ...]) -> bool:
        return plan in self.measured or self.images + self.options.n <= self.cap

    def measure(self, plan: tuple[str, ...], phase: str, predicted: float | None = None) -> Measured:
        if plan in self.measured:
            return self.measured[plan]
        if not self.affordable(plan):
            raise PhasediffError(f"the image cap {self.cap} is spent")  # the search checks first
        o = self.options
        schedule = self.blocks.schedule(plan)
        images, result = run_schedule(schedule.text(), self.models, schedule, o.n, self.shape, o.steps, o.method,
                                      o.seed, o.batch_size, o.precision, flops=self.flops, device=o.device)
        self.images += o.n
        features, _ = classify(self.judge, images)
        if self.base_features is None:
            self.base_features = features  # the first plan measured is all-reference
        ratio = frechet_ratio(features, self.base_features, self.reference_features, rounds=o.rounds, seed=o.seed)
        judged = ratio["high"] if o.confident else ratio["ratio"]
        self.measured[plan] = Measured(
            plan=plan, schedule=schedule.text(), phase=phase, ratio=ratio, flops=result.flops / o.n,
            seconds=self.blocks.cost(plan, self.seconds), sampling_seconds=result.seconds, meets=judged <= o.beta,
            predicted_excess=predicted)
        return self.measured[plan]

    def excess(self, plan: tuple[str, ...]) -> float:
        m = self.measured[plan]
        return (m.ratio["high"] if self.options.confident else m.ratio["ratio"]) - 1.0


def pareto_ladder(blocks: Blocks, names: Sequence[str], reference: str, excess: Mapping[tuple[int, str], float],
                  key: Callable) -> list[tuple[tuple[str, ...], float]]:
    """Every plan not beaten in both cost (``key``, lexicographic) and predicted excess sum_k e(k, a_k), dear
    to cheap: exact, by extending the front one block at a time (a dominated partial plan stays dominated)."""
    front: list[tuple[tuple[str, ...], float]] = [((), 0.0)]
    for k in range(len(blocks)):
        grown = [(plan + (name,), e + (0.0 if name == reference else excess[k, name]))
                 for plan, e in front for name in names]
        rest = (reference,) * (len(blocks) - k - 1)  # the same for every partial plan: it keeps their order
        front = _undominated(grown, lambda plan, rest=rest: key(plan + rest))
    return sorted(front, key=lambda item: key(item[0]), reverse=True)


def _undominated(items, key) -> list:
    """The items no other beats in key (lower is better) and excess, one per distinct pair."""
    out, best = [], math.inf
    for plan, e in sorted(items, key=lambda item: (key(item[0]), item[1])):
        if e < best:
            out.append((plan, e))
            best = e
    return out


def verify(search: Search, ladder: list[tuple[tuple[str, ...], float]], allowed: float) -> None:
    """The safeguarded secant search on the ladder (module docstring, step 3)."""
    low, high, scale = -1, len(ladder), 1.0  # ladder[low] passes (-1: all-reference), ladder[high] fails
    while high - low > 1:
        fits = [i for i, (_, e) in enumerate(ladder) if scale * e <= allowed + 1e-12]
        if not fits:
            return  # the scaled prediction says no rung meets the budget
        probe = fits[-1]
        if not low < probe < high:
            probe = (low + high) // 2
        plan, predicted = ladder[probe]
        if not search.affordable(plan):
            return
        measured = search.measure(plan, "verify", predicted)
        if measured.meets:
            low = probe
        else:
            high = probe
        excess = search.excess(plan)
        if predicted > 0 and excess > 0:
            scale = excess / predicted


def first_probe(searched: Sequence[Measured], beta: float) -> int:
    """Where the confirmation starts in ``searched`` (cheap to dear): the first whose interval's upper end meets
    ``beta``, else the one with the lowest upper end (module docstring, step 4)."""
    highs = [m.ratio["high"] for m in searched]
    return next((i for i, high in enumerate(highs) if high <= beta), int(np.argmin(highs)) if highs else 0)


def confirm(checked: Search, base: tuple[str, ...], passing: Sequence[tuple[str, ...]], start: int = 0
            ) -> tuple[Measured, list[Measured]]:
    """(the cheapest of ``passing`` (cheap to dear) found to meet the budget on ``checked``'s fresh noise, else
    all-reference ``base``; the ones that failed there). All-reference is measured first (the pairing's base);
    then ``passing[start]``, and a bisection of the list between the dearest failure and the cheapest pass known
    (all-reference past its end), while the image cap allows (module docstring, step 4)."""
    checked.measure(base, "confirm")
    failed, good = -1, len(passing)  # passing[good] meets on fresh noise (len: all-reference); passing[failed] not
    probe = start
    while good - failed > 1 and checked.affordable(passing[probe]):
        if checked.measure(passing[probe], "confirm").meets:
            good = probe
        else:
            failed = probe
        probe = (failed + good) // 2
    rejected = [checked.measured[plan] for plan in passing if plan in checked.measured
                and not checked.measured[plan].meets]
    return checked.measured[passing[good] if good < len(passing) else base], rejected


def default_cache() -> Path:
    """$XDG_CACHE_HOME/phasediff/plans (~/.cache/phasediff/plans)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "phasediff" / "plans"


def plan_settings(checkpoints: Mapping[str, Mapping], reference: str | None, data: str, judge: str,
                  options: PlanOptions) -> dict:
    """What a plan of checkpoints depends on, the input of `plan_key`: each named model's weights digest and
    architecture (from its sidecar, `read_info`), the reference (None: the most FLOPs), the reference data, the
    judge's identity (`report.samples.judge_identity`), the device type and the options."""
    return {"models": {name: [info["weights_sha256"], info["model"]] for name, info in checkpoints.items()},
            "reference": reference, "data": data, "judge": judge,
            "device": options.device.split(":")[0], **{k: v for k, v in vars(options).items() if k != "device"}}


def plan_key(settings: Mapping) -> str:
    """sha256 of the settings (with the planner's version) as canonical JSON."""
    text = json.dumps({"planner": PLANNER_VERSION, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def cached(cache: Path | None, key: str, compute: Callable[[], dict]) -> tuple[dict, bool]:
    """(the plan stored under ``key`` in ``cache``, True), or (``compute()``, False) after storing it
    atomically; no cache: always computed."""
    from phasediff.rundir import save_json

    path = None if cache is None else Path(cache) / f"{key}.json"
    if path is not None and path.is_file():
        try:
            return json.loads(path.read_text()), True
        except (OSError, ValueError):
            pass  # a damaged entry is recomputed and replaced
    result = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_json(path, result)
    return result, False


def plan_text(summary: Mapping) -> str:
    """A few lines for the terminal."""
    low, high = summary["fd_ratio_interval"]
    payback = summary["payback_images"]
    return "\n".join([
        f"schedule: {summary['schedule']}",
        (f"FD ratio to all-{summary['reference']}: {summary['fd_ratio']:.3f} [{low:.3f}, {high:.3f}] (budget "
         f"{summary['beta']:g})"),
        (f"confirmed on {summary['confirm_n']} fresh samples (the search read {summary['search_fd_ratio']:.3f}; "
         f"{len(summary['rejected'])} cheaper schedules failed there)" if summary["confirm_seed"] is not None else
         "not confirmed on fresh samples" + ("" if summary["confirm_n"] else " (--confirm 0)")),
        f"speed-up: {summary['speedup_flops']:.2f}x by FLOPs, {summary['speedup_wall']:.2f}x by wall-clock",
        (f"images sampled: {summary['images_sampled']} ({summary['schedules_sampled']} schedules); the "
         f"single-window sweep: {summary['sweep_images']} ({summary['sweep_schedules']} schedules)"),
        f"planning: {summary['planning_seconds']:.1f} s" + ("" if payback is None else
                                                            f", paid back after {payback:.0f} images")
        + (" (cached)" if summary.get("cached") else "")])
