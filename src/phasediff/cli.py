"""The ``phasediff`` command.

    phasediff data info SPEC            summary statistics of a dataset
    phasediff data show SPEC --out F    a grid of samples
    phasediff data export SPEC --out F  images (and labels) as .npz, e.g. samples of a synthetic model
    phasediff cmi SPEC ...              I_t(A:C|B_r) on a (t, r) grid, with figures
    phasediff study --out DIR           the default study: CMI heatmaps on MNIST and the exact models
    phasediff train SPEC --model ...    train a local, wiener-local, global or classifier network (resumable, torchrun)
    phasediff sample --model CKPT ...   draw samples with a trained denoiser (or a local/global hybrid)
    phasediff convert SRC DST           copy a checkpoint with its weights stored as bfloat16 (half the size)
    phasediff judge SAMPLES.npz ...     sample quality by the project's classifier (Frechet distance, ...)
    phasediff diagram --data D --local CKPTS   recovery diagram and locality gaps over (t, r)
    phasediff hybrid ...                the paper's hybrid schedules and ours: quality, time, FLOPs
    phasediff hybrid-sweep ...          a grid of global windows: the speed / quality Pareto front
    phasediff plan --model NAME=PATH ...  the cheapest schedule of several models within an FD budget (cached)
    phasediff reproduce DATA --out DIR  the study of mnist, fashion-mnist or ising as cached stages, DIR/index.html

Bad input is reported in one line with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from phasediff import __version__
from phasediff.errors import PhasediffError
from phasediff.precision import PRECISIONS, resolve_precision
from phasediff.progress import set_quiet
from phasediff.rundir import check_output_file, to_json, write_atomic
from phasediff.specs import check_seed, parse_list

SPEC_HELP = ("dataset spec: mnist, fashion-mnist, digits, patches:size=S, grf:L=..,ell=.., gmrf:L=..,kappa=.., "
             "gmm2:L=..,mu=..,sigma=.., gmm:data=mnist,k=..,rank=..,by=kmeans|class, ising:L=..,T=.., FILE.npz or a "
             "folder of PNGs; every spec also takes crop=S and n=N")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _common(device: bool = False) -> argparse.ArgumentParser:
    """Options every command takes; ``device`` adds --device to the commands that run networks."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    common.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same numbers")
    if device:
        common.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    return common


def _data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help=SPEC_HELP)
    parser.add_argument("--split", default="train", choices=("train", "test"), help="data split (default train)")
    parser.add_argument("--n", "--n-images", dest="n", type=int, default=None, help="number of images (default: all; "
                        "synthetic: 10,000); --n-images under torchrun, which takes --n for itself")


def _precision_arg(parser, default: str, what: str = "the networks") -> None:
    parser.add_argument("--precision", default=default, choices=PRECISIONS,
                        help=f"bf16 autocast, fp32, or auto (bf16 where the hardware multiplies it natively, fp32 "
                        f"elsewhere) for {what} (default {default})")


def _add_data(commands) -> None:
    data = commands.add_parser("data", help="inspect, plot and export datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    info = data_commands.add_parser("info", parents=[_common()], help="summary statistics (n, shape, min, max, "
                                    "mean, std, classes, source)")
    _data_args(info)
    show = data_commands.add_parser("show", parents=[_common()], help="write a PNG grid of samples")
    _data_args(show)
    show.add_argument("--out", required=True, type=Path, help="output .png")
    show.add_argument("--count", type=int, default=64, help="images in the grid (default 64)")
    export = data_commands.add_parser("export", parents=[_common()], help="write images and labels to an .npz file")
    _data_args(export)
    export.add_argument("--out", required=True, type=Path, help="output .npz (keys images, labels)")


def _add_cmi(commands) -> None:
    cmi = commands.add_parser("cmi", parents=[_common(device=True)], help="conditional mutual information "
                              "I_t(A:C|B_r) on a (t, r) grid", description="Estimate I_t(A:C|B_r) in nats. A is the "
                              "pixel (or K x K patch) at --site, B_r the ring of Chebyshev radius 1..r around it, C "
                              "the rest.")
    _data_args(cmi)
    cmi.add_argument("--estimator", default="auto", choices=("auto", "exact", "gaussian", "neural", "mine"),
                     help="auto (default): exact where the data's model has it, neural otherwise; exact: closed form "
                     "of a synthetic model (grf, gmrf, gmm2) or Monte Carlo with a standard error (gmm); neural: "
                     "difference of held-out cross-entropies of a network, paired standard errors and bootstrap "
                     "intervals, by default in the validated mode (see --specialise); gaussian: log-det formula on "
                     "the empirical covariance + ridge I, jackknife standard errors: seconds, but blind to "
                     "non-Gaussian structure (on MNIST its peak sits at t = 0, r = 1, docs/cmi-study.md); mine: "
                     "Donsker-Varadhan bounds of I(A:BC) - I(A:B_r), see --mine-protocol")
    cmi.add_argument("--t", default="0:1:0.1", help="times, e.g. 0:1:0.1 (inclusive) or 0.1,0.3 (default 0:1:0.1)")
    cmi.add_argument("--r", "--radii", dest="r", default="1:12", help="buffer radii, e.g. 1:12 or 1,3,6 (default "
                     "1:12); --radii under torchrun, which takes --r for itself")
    cmi.add_argument("--site", default=None, help="Y,X of the site A (default: the image centre H//2, W//2)")
    cmi.add_argument("--patch", type=int, default=1, help="A is a K x K patch (default 1: one pixel)")
    cmi.add_argument("--samples", type=int, default=4000, help="Monte Carlo samples of the exact gmm estimator")
    cmi.add_argument("--ridge", type=float, default=1e-4, help="ridge added to the empirical covariance (gaussian)")
    cmi.add_argument("--delta", type=float, default=0.005, help="threshold of the nonlocality window, nats "
                     "(default 0.005)")
    cmi.add_argument("--out", type=Path, default=None, help="run directory: config.yaml, results.json, "
                     "arrays.npz, heatmap.png, cmi_vs_r.png, markov_length.png")
    cmi.add_argument("--force", action="store_true", help="replace an existing run directory")
    neural = cmi.add_argument_group("neural estimator")
    neural.add_argument("--epochs", type=float, default=None, help="training epochs of the amortised network "
                        "(default: 4 in the validated mode, as validated; 12 with --specialise 0)")
    neural.add_argument("--budget", type=float, default=None, help="stop training after this many seconds")
    neural.add_argument("--specialise", type=int, default=None, help="after the amortised training, train a "
                        "copy of the network at each t alone for this many steps (default: the validated mode's "
                        "5000, with the chain; 6-17 minutes per t on a 2-core CPU); 0: the amortised network alone, minutes for a whole grid but low by up to 2x at "
                        "r <= 2, t <= 0.5 on the MNIST-fitted mixture (docs/cmi-study.md)")
    neural.add_argument("--specialise-chain", action=argparse.BooleanOptionalAction, default=True,
                        help="specialise from the largest t down, each copy starting from the previous one (the low "
                        "t inherit every specialisation above); a copy that ends no better than the amortised "
                        "network at its t, or that memorises the training images, is retrained from it and replaced "
                        "unless the retrained one validates worse (default: on)")
    neural.add_argument("--specialise-everywhere", action="store_true",
                        help="specialise at every t < 1, also where the estimates are lower bounds anyway and where "
                        "the amortised network puts every radius far below the resolution (by default the amortised "
                        "network serves there: the same bounds, looser, at a fraction of the time)")
    neural.add_argument("--pool", type=int, default=0, help="also train on every site within K pixels of A "
                        "(shared weights, told the shift; evaluation at A): more targets per image (default 0)")
    neural.add_argument("--train-precision", default="auto", choices=PRECISIONS,
                        help="bf16 autocast, fp32, or auto (default: bf16 where the hardware has it natively, fp32 "
                             "elsewhere) for the training passes; evaluation is fp32")
    neural.add_argument("--head", default="auto", choices=("auto", "categorical", "mixture"),
                        help="posterior of x_0,A over 8-bit levels or a Gaussian mixture (auto: from the data)")
    neural.add_argument("--cache", default=None, help="folder of trained networks (default: the data cache's "
                        "neural/; 'none' to retrain every time); the committed networks (checkpoints/DATA/cmi/) are "
                        "read first in any case")
    neural.add_argument("--save-networks", type=Path, default=None, help="after the run, copy the networks it used "
                        "(the amortised one and the link kept at each t) into this folder, named as in the cache: "
                        "how checkpoints/DATA/cmi/ is made")
    mine = cmi.add_argument_group("MINE estimator")
    mine.add_argument("--mine-protocol", default="sound", choices=("sound", "paper"),
                      help="sound (fresh noise, held-out evaluation, s.e.) or paper (one noise draw per image, "
                      "bound averaged over the last 10%% of training, max of runs, clipped at 0)")
    mine.add_argument("--mine-steps", type=int, default=1500, help="training steps per critic (default 1500)")
    mine.add_argument("--mine-runs", type=int, default=1, help="runs of the I(A:BC) critic (paper: 3)")
    mine.add_argument("--mine-batch", type=int, default=256, help="training batch size (default 256; paper: 100)")


def _add_study(commands) -> None:
    study = commands.add_parser("study", parents=[_common()], help="the default study: CMI heatmaps on MNIST and "
                                "on the exact models, with figures and a summary")
    study.add_argument("--out", type=Path, default=Path("study"), help="output folder (default ./study)")
    study.add_argument("--force", action="store_true", help="replace an existing output folder")


def _add_train(commands) -> None:
    train = commands.add_parser("train", parents=[_common(device=True)], help="train a network: a strictly local "
                                "denoiser of radius R, a global U-Net, or the classifier that judges samples")
    train.add_argument("spec", help=SPEC_HELP)
    train.add_argument("--model", required=True, choices=("local", "wiener-local", "global", "classifier"),
                       help="wiener-local: the Wiener denoiser of the training moments plus a local network")
    train.add_argument("--radius", type=int, default=None, help="receptive-field radius of a local model")
    train.add_argument("--conditional", action="store_true", help="class-conditional global model (label dropout "
                       "for classifier-free guidance)")
    train.add_argument("--width", type=int, default=None, help="channels (local default 64, global base 32, "
                       "classifier 16)")
    train.add_argument("--position-channels", action="store_true", help="local model sees its (y, x) position")
    train.add_argument("--crop", type=int, default=None, help="train a local model on random crops of this size")
    train.add_argument("--t-min", type=float, default=0.0, help="lowest training time (default 0)")
    train.add_argument("--t-max", type=float, default=1.0, help="highest training time (default 1)")
    train.add_argument("--steps", type=int, default=10_000, help="optimiser steps (default 10,000)")
    train.add_argument("--batch-size", type=int, default=128, help="global batch size (default 128)")
    train.add_argument("--lr", type=float, default=None, help="peak learning rate (default: 1e-3 local and "
                       "classifier, 5e-4 global)")
    train.add_argument("--warmup", type=int, default=200, help="steps of linear learning-rate warm-up")
    train.add_argument("--ema-decay", type=float, default=0.999, help="EMA decay of the saved weights")
    _precision_arg(train, "fp32", "training")
    train.add_argument("--checkpoint-every", type=int, default=1000, help="steps between checkpoints")
    train.add_argument("--out", type=Path, required=True, help="run directory (model.safetensors + model.json)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--init", type=Path, default=None, help="start from the weights of this checkpoint (same "
                       "architecture; fresh optimiser); the sidecar records it and the steps it had")


SCHEDULE_HELP = ("which model runs at which t, e.g. '0:0.1=local,0.1:0.8=global,0.8:1=cheap': pieces A:B=NAME "
                 "(A <= t <= B; the first listed wins at a shared end), and optionally a bare NAME last that runs "
                 "wherever no piece does ('0.2:0.5=global,local' is the paper's hybrid). NAME*S guides NAME with "
                 "--label at scale S (*1: plainly conditional); a plain NAME never sees the label, so "
                 "'0.4:0.5=g*3,g' applies the class only inside [0.4, 0.5]. Names are bound by --model NAME=PATH")


def _auto_args(group, command: str) -> None:
    """The options of the automatic schedule: the planner's cheapest schedule of the global and the local model
    (`report.hybrid.auto_schedule`), cached on disk with `phasediff plan`'s plans."""
    from phasediff.diagnostics.planner import DEFAULT_BETA, PlanOptions

    what = "--window auto" if command == "sample" else "the automatic schedule"
    bar = " and the quality bar of the sweep" if command == "hybrid-sweep" else ""
    group.add_argument("--budget", type=float, default=None, help=f"{what}: the largest paired FD ratio to "
                       f"all-global that the planner accepts{bar} (default {DEFAULT_BETA:g}; phasediff plan --beta)")
    group.add_argument("--plan-n", type=int, default=None, help=f"{what}: images per schedule that the planner "
                       f"samples when the plan is not cached (default {PlanOptions.n}; phasediff plan --n)")
    group.add_argument("--plan-cache", type=Path, default=None, help=f"{what}: plan cache folder, shared with "
                       "phasediff plan (default $XDG_CACHE_HOME/phasediff/plans, i.e. ~/.cache/phasediff/plans)")
    if command == "sample":
        group.add_argument("--judge", type=Path, default=None, help="--window auto: classifier checkpoint that "
                           "judges the planner's samples (default: the committed one of the global model's data)")


def _add_sample(commands) -> None:
    from phasediff.sampling import SAMPLERS

    sample = commands.add_parser("sample", parents=[_common(device=True)], help="draw samples from a trained "
                                 "denoiser, a local / global hybrid, or a schedule of several models")
    sample.add_argument("--model", required=True, action="append", help="checkpoint (X, X.safetensors or X.json); "
                        "with --schedule, NAME=PATH, repeated")
    sample.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    sample.add_argument("--steps", type=int, default=32, help="integration steps from t = 1 to 0 (default 32)")
    sample.add_argument("--method", default="euler", choices=tuple(SAMPLERS))
    sample.add_argument("--label", type=int, default=None, help="class label for a conditional model")
    sample.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale of --model "
                        "(default 1: conditional)")
    sample.add_argument("--batch-size", type=int, default=500)
    sample.add_argument("--out", type=Path, required=True, help="output .npz (images (N, C, H, W) in [0, 1]); a "
                        "PNG grid is written beside it")
    hybrid = sample.add_argument_group("hybrid and schedules")
    hybrid.add_argument("--local", type=Path, default=None, help="local checkpoint: sample a hybrid that runs "
                        "the --model inside --window and this one outside it")
    hybrid.add_argument("--window", default=None, help="global window(s): A:B, A:B,C:D, all, none, or auto: the "
                        "planner's cheapest schedule of the two models within --budget, read from the plan cache when "
                        "it is there (phasediff plan --model global=MODEL --model local=LOCAL with the same settings "
                        "shares it)")
    hybrid.add_argument("--schedule", default=None, help=SCHEDULE_HELP)
    _auto_args(hybrid, "sample")
    _precision_arg(sample, "fp32")


def _add_convert(commands) -> None:
    convert = commands.add_parser("convert", parents=[_common()], help="copy a checkpoint, storing its weights as "
                                  "bfloat16 (half the size) or float32")
    convert.add_argument("source", type=Path, help="checkpoint (X, X.safetensors or X.json)")
    convert.add_argument("destination", type=Path, help="new checkpoint path X (writes X.safetensors, X.json)")
    convert.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))


def _add_judge(commands) -> None:
    judge = commands.add_parser("judge", parents=[_common()], help="quality of samples against a dataset's test split")
    judge.add_argument("samples", type=Path, help=".npz with images (N, C, H, W) in [0, 1]")
    judge.add_argument("--data", required=True, help="dataset whose test split is the reference (mnist, ...); "
                       "lattice models (ising:L=..,T=.., grf:..., gmrf:...) are judged by physical observables "
                       "(energy, |m|, C(d), xi; covariance errors) against fresh samples of the model")
    judge.add_argument("--judge", type=Path, default=None, help="classifier checkpoint (default: the committed one; "
                       "not for lattice models)")
    judge.add_argument("--no-memorisation", action="store_true", help="skip the nearest-training-neighbour check")


def _add_diagram(commands) -> None:
    from phasediff.diagnostics.window import DEFAULT_TOLERANCE

    diagram = commands.add_parser("diagram", parents=[_common(device=True)], help="phase diagram of local "
                                  "denoising: recovery error and locality gap over (t, r)")
    diagram.add_argument("--data", required=True, help="dataset whose test split is noised (mnist, ...)")
    diagram.add_argument("--local", required=True, help="local checkpoints, comma-separated (one per radius)")
    diagram.add_argument("--model", type=Path, default=None, help="global checkpoint (for the network gap)")
    diagram.add_argument("--images", type=int, default=256, help="test images (default 256)")
    diagram.add_argument("--t-final", default="0.01:0.99:0.098", help="recovery start times (default 11 from 0.01 "
                         "to 0.99)")
    diagram.add_argument("--steps", type=int, default=32, help="Euler steps per unit time (default 32)")
    diagram.add_argument("--analytic", type=int, default=2000, help="training images of the analytic family "
                         "(patch posterior vs empirical; 0 skips it; default 2000)")
    diagram.add_argument("--cmi", type=Path, default=None, help="results.json of a cmi run, shown beside the gap")
    diagram.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                         help=f"gap level that defines the windows (default {DEFAULT_TOLERANCE:g})")
    _precision_arg(diagram, "fp32", "the networks (the analytic family runs in full precision)")
    diagram.add_argument("--out", type=Path, required=True, help="run directory")
    diagram.add_argument("--force", action="store_true", help="replace a finished run in --out")


def _add_hybrid(commands, name: str, text: str) -> None:
    sub = commands.add_parser(name, parents=[_common(device=True)], help=text)
    sub.add_argument("--model", required=True, type=Path, help="global checkpoint")
    sub.add_argument("--local", required=True, type=Path, help="local checkpoint")
    sub.add_argument("--n", type=int, default=5000 if name == "hybrid" else 1000, help="samples per schedule")
    sub.add_argument("--steps", type=int, default=32, help="Euler steps from t = 1 to 0 (default 32)")
    sub.add_argument("--batch-size", type=int, default=500)
    sub.add_argument("--data", default=None, help="reference dataset (default: the global model's)")
    sub.add_argument("--judge", type=Path, default=None, help="classifier checkpoint (default: committed)")
    _auto_args(sub, name)
    _precision_arg(sub, "auto")
    sub.add_argument("--out", type=Path, required=True, help="run directory")
    sub.add_argument("--force", action="store_true", help="replace a finished run in --out")
    if name == "hybrid-sweep":
        sub.add_argument("--lows", default="0:0.4:0.1", help="window starts, list or A:B:STEP (default 0:0.4:0.1)")
        sub.add_argument("--highs", default="0.3:1:0.1", help="window ends (default 0.3:1:0.1)")


def _add_phases(commands) -> None:
    phases = commands.add_parser("phases", parents=[_common()], help="phases of a family of distributions: "
                                 "all-local generation per radius, r*, locality gap, CMI and correlation length",
                                 description="For each member of FAMILY (one parameter given as a range A:B:STEP "
                                 "or a list a;b;c), sample with each local denoiser alone and judge the samples "
                                 "against the model by its observables; r* is the smallest radius that matches. "
                                 "Gaussian fields and gmm2 use their exact denoisers; Ising uses the checkpoints in "
                                 "--models whose sidecar data is the member's spec. Reruns resume.")
    phases.add_argument("family", help="e.g. 'ising:L=32,T=2.4:3.5:0.3', 'gmrf:L=16,kappa=0.1;0.3;1', "
                        "'gmm2:L=16,sigma=1,mu=0.2:1:0.2'")
    phases.add_argument("--radii", default="1,2,3,4,6,8", help="radii of the local denoisers (default 1,2,3,4,6,8)")
    phases.add_argument("--n", type=int, default=1000, help="generated and reference samples per model "
                        "(default 1000)")
    phases.add_argument("--steps", type=int, default=32, help="sampler steps from t = 1 to 0 (default 32)")
    phases.add_argument("--method", choices=("euler", "heun", "ancestral"), default="ancestral",
                        help="sampler of the generated sets (default ancestral, the stochastic one: it reproduces "
                        "trained Ising networks' energy more closely than the ODE at 32 steps)")
    phases.add_argument("--cmi", choices=("auto", "none"), default="auto", help="the CMI along the path: auto (exact "
                        "where the model has one; on Ising the neural estimator's amortised network, minutes per "
                        "member, biased low at small t and r) or none")
    phases.add_argument("--gap-images", type=int, default=256, help="reference images for the locality gap "
                        "(default 256)")
    phases.add_argument("--models", type=Path, default=None, help="folder of checkpoints (Ising members)")
    phases.add_argument("--out", type=Path, required=True, help="run directory (resumes when rerun)")
    phases.add_argument("--force", action="store_true", help="start afresh, replacing the run in --out")


def _add_plan(commands) -> None:
    from phasediff.diagnostics.planner import DEFAULT_BETA
    from phasediff.sampling import SAMPLERS

    plan = commands.add_parser("plan", parents=[_common(device=True)], help="the cheapest schedule of several "
                               "models whose FD ratio to the reference model meets a budget (cached on disk)",
                               description="Screens every single-block substitution on common noise, predicts "
                               "the cost / quality front and verifies along it (phasediff.diagnostics.planner); "
                               "samples at most a third of the images of the single-window sweep. The schedule "
                               "replays with phasediff sample --schedule.")
    plan.add_argument("--model", required=True, action="append", help="NAME=PATH, repeated: every model the "
                      "schedule may use, named as phasediff sample --schedule names them")
    plan.add_argument("--reference", default=None, help="the model the quality is measured against (default: "
                      "the one with the most FLOPs per image)")
    plan.add_argument("--steps", type=int, default=32, help="sampler steps from t = 1 to 0 (default 32)")
    plan.add_argument("--method", default="euler", choices=tuple(SAMPLERS))
    plan.add_argument("--beta", type=float, default=DEFAULT_BETA, help="budget: the largest paired FD ratio to "
                      f"all-reference (default {DEFAULT_BETA:g})")
    plan.add_argument("--confident", action="store_true", help="the upper end of the ratio's 95%% interval must "
                      "meet the budget (default: the bias-corrected ratio, as hybrid-sweep judges)")
    plan.add_argument("--n", type=int, default=250, help="samples per schedule (default 250; 500 doubles the "
                      "planning cost and confirms on twice the fresh samples, for budgets a cheap plan barely meets)")
    plan.add_argument("--confirm", type=int, default=None, help="samples on which the search's choice is measured "
                      "again from fresh noise, stepping back to dearer schedules that met the budget when it fails "
                      "(default 2 x --n, or fewer so that what the search left of the image cap holds all-reference and two "
                      "schedules; 0: take the search's choice unconfirmed, biased low)")
    plan.add_argument("--grid", default="0:1:0.1", help="block edges from 0 to 1, list or A:B:STEP "
                      "(default 0:1:0.1)")
    plan.add_argument("--cost", default="flops", choices=("flops", "wall"), help="what cheapest means: FLOPs, or "
                      "wall-clock from each model's median seconds per image (default flops)")
    plan.add_argument("--max-images", type=int, default=None, help="images the search may sample (default: a "
                      "third of the single-window sweep's)")
    plan.add_argument("--batch-size", type=int, default=500)
    plan.add_argument("--data", default=None, help="reference dataset (default: the reference model's)")
    plan.add_argument("--judge", type=Path, default=None, help="classifier checkpoint (default: the committed one; "
                      "Ising data is judged by the features of its physical observables instead)")
    _precision_arg(plan, "auto")
    plan.add_argument("--cache", type=Path, default=None, help="plan cache folder (default "
                      "$XDG_CACHE_HOME/phasediff/plans, i.e. ~/.cache/phasediff/plans)")
    plan.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    plan.add_argument("--out", type=Path, default=None, help="also write the plan to this .json")


def _add_speciation(commands) -> None:
    sp = commands.add_parser("speciation", parents=[_common(device=True)], help="symmetry breaking by "
                             "forward-backward: P(class kept | t) for the ODE and SDE samplers, t_sb, spectral t_S",
                             description="Noise test images to each t, sample back to 0 (Euler probability-flow "
                             "ODE and the ancestral sampler), classify (gmm2 and Ising: by a sign; other data: "
                             "the classifier judge) and report the fraction that kept its class, t_sb (where it "
                             "falls halfway to chance) and the spectral t_S. gmm2 adds the exact curves.")
    sp.add_argument("data", help=SPEC_HELP)
    sp.add_argument("--model", required=True, help="denoiser checkpoint, or 'exact' (gmm2: its exact posterior mean)")
    sp.add_argument("--t", default="0.5:0.9:0.1,0.95,0.97,0.99", help="noise levels in (0, 1], list or A:B:STEP "
                    "(default 0.5:0.9:0.1,0.95,0.97,0.99)")
    sp.add_argument("--n", type=int, default=1000, help="test images (default 1000)")
    sp.add_argument("--local-radius", type=int, default=None, help="with --model exact: the exact strictly local "
                    "denoiser of this radius")
    sp.add_argument("--steps-per-unit", type=float, default=32.0, help="sampler steps per unit time from t to 0 "
                    "(default 32; the ancestral curve converges more slowly than the ODE's: on gmm2 it lies a few "
                    "percent high near t_sb at 32)")
    sp.add_argument("--judge", type=Path, default=None, help="classifier checkpoint (default: the committed one)")
    sp.add_argument("--batch-size", type=int, default=500)


def _add_concurrence(commands) -> None:
    co = commands.add_parser("concurrence", parents=[_common(device=True)], help="symmetry breaking and "
                             "nonlocality on one t axis: t_SB and t_NL by every measure, t_SB - t_NL, one figure",
                             description="On one t grid: forward-backward P(kept) (ODE, SDE) and t_SB, the spectral "
                             "t_S; per local radius the locality gap (x0 and score units), the recovery threshold "
                             "and excess, the exact CMI of the centre k x k patch, and the sliding window "
                             "(global inside [a, a + w], local outside); each time with a 95% bootstrap interval "
                             "and t_SB - t_NL with its interval. gmm2 with --model exact (every closed form), or "
                             "trained checkpoints: --model GLOBAL --local-model R=LOCAL ... on labelled images "
                             "(classes and sliding-window Frechet distance by the classifier judge) or on Ising "
                             "below T_c (class: the sign of the magnetisation); the CMI rows there come from "
                             "--cmi-run or are skipped.")
    co.add_argument("data", help=SPEC_HELP)
    co.add_argument("--model", required=True, help="'exact' (gmm2: its exact posterior mean, global and local), or "
                    "a global denoiser checkpoint (a U-Net trained on DATA)")
    co.add_argument("--local-model", action="append", default=None, metavar="[R=]CHECKPOINT", help="with a "
                    "checkpoint --model: a strictly local checkpoint trained on DATA (R, if given, must be its "
                    "radius); repeat for several radii")
    co.add_argument("--local-radius", action="append", default=None, help="with --model exact: radius of a local "
                    "denoiser, or a list (repeatable; default 1,2,4)")
    co.add_argument("--judge", type=Path, default=None, help="classifier checkpoint for labelled data (default: the "
                    "committed one of mnist / fashion-mnist); gmm2 and Ising take none (their class is a sign)")
    co.add_argument("--cmi-run", type=Path, default=None, help="a `phasediff cmi` run directory (or its results.json) "
                    "of DATA: the CMI peaks at the local radii come from its curves (data without an exact CMI; "
                    "without it those rows are skipped)")
    co.add_argument("--conditional-model", type=Path, default=None, help="labelled data: a class-conditional "
                    "U-Net of DATA for the conditioning window (the label, guided, only inside [a, a + w]; "
                    "class accuracy against a; t_cond joins the t_SB rows); without it that test is skipped")
    co.add_argument("--guidance", type=float, default=3.0, help="guidance scale inside the label window "
                    "(default 3)")
    co.add_argument("--conditioning-width", default="0.2", help="label-window widths w, list (default 0.2); "
                    "starts step by --window-step")
    co.add_argument("--t", default="0.05,0.1:0.4:0.1,0.5:0.9:0.02,0.91:0.99:0.01", help="the t grid in (0, 1], "
                    "list or A:B:STEP (default 0.05,0.1:0.4:0.1,0.5:0.9:0.02,0.91:0.99:0.01)")
    co.add_argument("--n", type=int, default=1000, help="test images (default 1000)")
    co.add_argument("--patches", default="1,3,5,7", help="sizes k of the k x k region A of the CMI (default 1,3,5,7)")
    co.add_argument("--window-width", default="0.2", help="sliding-window widths w, list (default 0.2)")
    co.add_argument("--window-step", type=float, default=0.05, help="step of the window starts a (default 0.05)")
    co.add_argument("--samples", type=int, default=1000, help="generated samples per window (default 1000)")
    co.add_argument("--sampler-steps", type=int, default=64, help="Euler steps from t = 1 for the sliding window "
                    "(default 64)")
    co.add_argument("--steps-per-unit", type=float, default=128.0, help="forward-backward steps per unit time "
                    "(default 128)")
    co.add_argument("--recovery-steps-per-unit", type=float, default=32.0, help="recovery Euler steps per unit "
                    "time (default 32, the paper's)")
    co.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    co.add_argument("--batch-size", type=int, default=500)
    _precision_arg(co, "fp32", "the checkpoints (bf16 rounding adds noise to the small locality gaps)")
    co.add_argument("--out", type=Path, default=None, help="run directory: results.json, config.yaml, table.txt, "
                    "concurrence.png")
    co.add_argument("--force", action="store_true", help="replace a finished run in --out")


def _add_reproduce(commands) -> None:
    from phasediff.reproduce.steps.cmi import PROFILES

    rp = commands.add_parser("reproduce", parents=[_common(device=True)], help="the study of one dataset as "
                             "stages cached on disk, and an offline HTML report (DIR/index.html)",
                             description="Data summary, CMI heatmap with Markov lengths, recovery diagram and "
                             "locality gaps, hybrid sampler, speciation and concurrence, and (ising) phases; each "
                             "stage is cached under DIR/stages by a key of its inputs, so a rerun (or a run after a "
                             "kill) reuses the finished stages. Progress per stage on stderr.")
    rp.add_argument("data", help="mnist, fashion-mnist or ising")
    rp.add_argument("--out", type=Path, required=True, help="output folder (new, empty, or an earlier reproduction "
                    "of the same data, whose finished stages are reused)")
    rp.add_argument("--quick", action="store_true", help="committed checkpoints and smaller sample counts (about 10 "
                    "minutes on 2 cores); without it the full study runs, retraining the CMI estimator's networks, "
                    "after printing its expected cost")
    rp.add_argument("--cmi-estimator", default=None, choices=tuple(PROFILES), help="CMI estimator profile (default: "
                    "neural-amortised-quick with --quick, neural-validated otherwise)")
    rp.add_argument("--checkpoints", type=Path, default=None, help="folder of checkpoints (default: the committed "
                    "checkpoints/)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="phasediff", description="Measure where a diffusion model needs global context "
                     "(the CMI I_t(A:C|B_r) along the noise path x_t = (1-t) x_0 + t z).")
    parser.add_argument("--version", action="version", version=f"phasediff {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_data, _add_cmi, _add_study, _add_train, _add_sample, _add_convert, _add_judge, _add_diagram,
                _add_phases, _add_speciation, _add_concurrence, _add_reproduce, _add_plan):
        add(commands)
    _add_hybrid(commands, "hybrid", "the paper's hybrid schedules and the automatic one (the planner's), judged "
                "and timed")
    _add_hybrid(commands, "hybrid-sweep", "a grid of global windows, the exhaustive reference for the automatic "
                "schedule: the speed / quality Pareto front")
    return parser


def resolve_device(name: str) -> str:
    """cpu, cuda, cuda:N or auto (cuda when present)."""
    if name == "cpu":
        return name
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise PhasediffError(f"device {name!r} requested but CUDA is not available here; use --device cpu")
        return name
    raise PhasediffError(f"unknown device {name!r} (cpu, cuda, cuda:N or auto)")


def _load(args):
    from phasediff.data.registry import load_dataset

    if args.n is not None and args.n < 1:
        raise PhasediffError(f"--n must be >= 1, got {args.n}")
    return load_dataset(args.spec, split=args.split, n=args.n, seed=args.seed)


def _emit(args, payload: dict, text: str) -> None:
    print(to_json(payload) if args.json else text)


def cmd_data_info(args) -> None:
    info = _load(args).info()
    text = "\n".join(f"{key:>8}: {value}" for key, value in info.items())
    _emit(args, info, text)


def cmd_data_show(args) -> None:
    from phasediff.report.figures import image_grid

    out = check_output_file(args.out, (".png",))
    if args.count < 1:
        raise PhasediffError(f"--count must be >= 1, got {args.count}")
    data = _load(args)
    write_atomic(out, lambda tmp: image_grid(data.images[: args.count], tmp, title=data.source))
    _emit(args, {"out": str(out), "images": min(args.count, len(data))}, f"wrote {out}")


def cmd_data_export(args) -> None:
    out = check_output_file(args.out, (".npz",))
    data = _load(args)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            arrays = {"images": data.images}
            if data.labels is not None:
                arrays["labels"] = data.labels
            np.savez_compressed(handle, **arrays)

    write_atomic(out, write)
    _emit(args, {"out": str(out), **data.info()}, f"wrote {len(data)} images of {data.shape} to {out}")


def _parse_site(text: str | None):
    if text is None:
        return None
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise PhasediffError(f"--site must be Y,X (two integers), got {text!r}") from None


def _mine_settings(args):
    """MineSettings from the MINE options of ``cmi``."""
    from phasediff.info.mine import MineSettings

    settings = MineSettings(protocol=args.mine_protocol, steps=args.mine_steps, runs=args.mine_runs,
                            batch_size=args.mine_batch)
    settings.check()
    return settings


def _neural_settings(args):
    """NeuralSettings from the neural options of ``cmi``."""
    from phasediff.data.mnist import cache_dir
    from phasediff.info.neural import VALIDATED_EPOCHS, VALIDATED_SPECIALISE, committed_root, settings_with
    from phasediff.info.neural_net import NetConfig

    for name in ("epochs", "budget"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise PhasediffError(f"--{name} must be > 0, got {value}")
    specialise = VALIDATED_SPECIALISE if args.specialise is None else args.specialise
    if specialise < 0:
        raise PhasediffError(f"--specialise must be >= 0, got {specialise}")
    if args.pool < 0:
        raise PhasediffError(f"--pool must be >= 0, got {args.pool}")
    cache = cache_dir() / "neural" if args.cache is None else None if args.cache == "none" else Path(args.cache)
    device = resolve_device(args.device)
    epochs = args.epochs if args.epochs is not None or not specialise else VALIDATED_EPOCHS
    return settings_with(head=args.head, epochs=epochs, budget=args.budget, cache=cache, committed=committed_root(),
                         specialise=specialise, specialise_chain=bool(specialise and args.specialise_chain),
                         precision=resolve_precision(args.train_precision, device.split(":")[0]), device=device,
                         net=NetConfig(pool=args.pool) if args.pool else None,
                         specialise_everywhere=args.specialise_everywhere or None)


def cmd_cmi(args) -> None:
    from phasediff.data.registry import load_model
    from phasediff.info.cmi import measure_cmi
    from phasediff.report.runs import write_cmi_run, cmi_table
    from phasediff.rundir import check_run_dir

    ts = parse_list(args.t, float, "--t")
    rs = parse_list(args.r, int, "--r")
    site = _parse_site(args.site)
    if args.samples < 2:
        raise PhasediffError(f"--samples must be >= 2, got {args.samples}")
    if not args.ridge >= 0:
        raise PhasediffError(f"--ridge must be >= 0, got {args.ridge}")
    if not args.delta > 0:
        raise PhasediffError(f"--delta must be > 0, got {args.delta}")
    if args.out is not None:
        check_run_dir(args.out, args.force)
    from phasediff.data.registry import MODELS, is_file_spec
    from phasediff.specs import parse_spec

    synthetic = not is_file_spec(args.spec) and parse_spec(args.spec)[0] in MODELS
    model = load_model(args.spec) if synthetic and args.estimator in ("auto", "exact") else None  # loaded once
    if args.estimator == "auto":
        from phasediff.info.exact import has_exact_cmi

        args.estimator = "exact" if model is not None and has_exact_cmi(model) else "neural"
    neural = _neural_settings(args)
    if args.save_networks is not None and (args.estimator != "neural" or neural.cache is None):
        raise PhasediffError("--save-networks copies the neural estimator's cached networks: it needs --estimator "
                             "neural and a cache (not --cache none)")
    # the exact estimator needs only the model, so it skips drawing a sample of images
    source = (model if model is not None else load_model(args.spec)) if args.estimator == "exact" else _load(args)
    rank, processes = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if rank:  # under torchrun every process measures; the first alone reports and writes
        set_quiet(True)
    try:
        result = measure_cmi(source, ts, rs, args.estimator, site=site, patch=args.patch, n_samples=args.samples,
                             ridge=args.ridge, seed=args.seed, neural=neural, mine=_mine_settings(args))
    finally:
        if processes > 1:  # the neural estimator's process group, torn down here as `train` does
            from phasediff.info.neural_train import leave_world

            leave_world()
    if rank:
        return
    result.analyse(delta=args.delta, seed=args.seed)
    if args.save_networks is not None:
        from phasediff.info.neural import save_networks

        save_networks(result.details, neural, args.save_networks)
    if args.out is not None:
        write_cmi_run(args.out, result, vars(args), force=args.force)
    _emit(args, result.to_dict(), cmi_table(result) + (f"\nwrote {args.out}" if args.out else ""))


def cmd_study(args) -> None:
    from phasediff.report.study import run_study

    summary = run_study(args.out, seed=args.seed, force=args.force)
    _emit(args, summary, f"wrote {args.out} (open {args.out / 'index.html'})")


def cmd_train(args) -> None:
    from dataclasses import fields

    from phasediff.train.setup import TrainOptions, run_training

    options = TrainOptions(**{f.name: getattr(args, f.name) for f in fields(TrainOptions) if f.name != "device"},
                           device=resolve_device(args.device))
    summary = run_training(options)
    _emit(args, summary, f"trained to step {summary['step']}: loss {summary.get('loss', float('nan')):.4f}, "
          f"validation {summary.get('val_loss', float('nan')):.4f}; wrote {args.out}")


def _named_models(entries: list[str]) -> dict[str, Path]:
    """--model NAME=PATH entries -> {NAME: PATH}."""
    from phasediff.denoisers.schedule import NAME

    models = {}
    for entry in entries:
        name, equals, path = entry.partition("=")
        if not equals or not NAME.fullmatch(name):
            raise PhasediffError(f"with --schedule, name every model: --model NAME=PATH, got {entry!r}")
        if name in models:
            raise PhasediffError(f"two models are named {name!r}")
        models[name] = Path(path)
    return models


def _sample_plan(args, device: str, auto_settings: tuple | None):
    """(models, image shape, schedule, the automatic schedule or None) of ``sample``: one model, a hybrid
    (--local, --window; auto: planned with ``auto_settings``, see `_auto_settings`) or a schedule."""
    from phasediff.denoisers.schedule import Schedule, parse_windows
    from phasediff.diagnostics.planner import PlanOptions
    from phasediff.report.hybrid import auto_schedule, load_pair
    from phasediff.report.samples import load_models

    if args.guidance != 1.0 and args.label is None:
        raise PhasediffError("--guidance needs --label")
    labelled = "" if args.label is None else f"*{float(args.guidance)!r}"  # how the label reaches --model
    if args.schedule is not None:
        if args.local is not None or args.window is not None:
            raise PhasediffError("--schedule replaces --local and --window; name the models with --model NAME=PATH")
        if args.guidance != 1.0:
            raise PhasediffError("with --schedule, write the guidance into it (NAME*S), not --guidance")
        schedule = Schedule.parse(args.schedule)
        models, shape = load_models(_named_models(args.model), device)
        return models, shape, schedule, None
    if len(args.model) != 1:
        raise PhasediffError("several --model need a --schedule that says when each runs")
    if (args.local is None) != (args.window is None):
        raise PhasediffError("--local and --window go together")
    if args.local is None:
        models, shape = load_models({"model": Path(args.model[0])}, device)
        return models, shape, Schedule((), "model" + labelled), None
    windows = None if auto_settings is not None else parse_windows(args.window)
    models, shape = load_pair(Path(args.model[0]), args.local, device)
    if windows is not None:
        return models, shape, Schedule.hybrid(windows, inside="global" + labelled), None
    budget, plan_n, cache = auto_settings
    options = PlanOptions(steps=args.steps, method=args.method, beta=budget, n=plan_n, seed=args.seed,
                          batch_size=args.batch_size, precision=args.precision, device=device)
    auto = auto_schedule(Path(args.model[0]), args.local, options, judge=args.judge, cache=cache)
    planned = Schedule.parse(auto.schedule)
    guided = {"global": "global" + labelled}  # the label reaches the global model, as with a fixed window
    schedule = Schedule(tuple((lo, hi, guided.get(m, m)) for lo, hi, m in planned.pieces),
                        guided.get(planned.default, planned.default))
    return models, shape, schedule, auto


def _is_auto(window: str | None) -> bool:
    return window is not None and window.strip().lower() == "auto"


def _auto_settings(args) -> tuple[float, int, Path]:
    """(budget, images per schedule, plan cache) of the automatic schedule from --budget, --plan-n and
    --plan-cache, checked before anything is loaded or planned."""
    from phasediff.diagnostics.planner import DEFAULT_BETA, PlanOptions, default_cache

    budget = DEFAULT_BETA if args.budget is None else args.budget
    if not (budget >= 1.0 and budget != float("inf")):
        raise PhasediffError(f"--budget is the largest FD ratio to all-global, a finite number >= 1; got {budget}")
    plan_n = PlanOptions.n if args.plan_n is None else args.plan_n
    if plan_n < 2:
        raise PhasediffError(f"--plan-n must be >= 2 (images per schedule), got {plan_n}")
    cache = args.plan_cache or default_cache()
    if cache.exists() and not cache.is_dir():
        raise PhasediffError(f"--plan-cache {cache} is not a folder")
    return budget, plan_n, cache


def cmd_sample(args) -> None:
    from phasediff.report.samples import SampleOptions, clips, sample_to_file

    out = check_output_file(args.out, (".npz",))
    _check_positive(args, "n", "steps", "batch_size")
    given = [f"--{name.replace('_', '-')}" for name in ("budget", "plan_n", "plan_cache", "judge")
             if getattr(args, name) is not None]
    if given and not _is_auto(args.window):
        raise PhasediffError(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --window auto")
    auto_settings = _auto_settings(args) if _is_auto(args.window) else None  # checked before anything is read
    device = resolve_device(args.device)
    models, shape, schedule, auto = _sample_plan(args, device, auto_settings)
    first = Path(args.model[0].partition("=")[2] or args.model[0])
    options = SampleOptions(n=args.n, steps=args.steps, method=args.method, seed=args.seed,
                            batch_size=args.batch_size, device=device, precision=args.precision, clip=clips(first))
    summary = sample_to_file(models, shape, schedule, out, options, label=args.label,
                             title=", ".join(Path(m.partition("=")[2] or m).name for m in args.model))
    text = (f"wrote {summary['n']} samples to {out} and {summary['grid']} ({summary['seconds']:.1f} s; "
            f"{summary['schedule']})")
    if auto is not None:
        summary["auto"] = auto.to_dict()
        text += "\n" + auto.text()
    _emit(args, summary, text)


def _check_positive(args, *names: str) -> None:
    for name in names:
        if getattr(args, name) < 1:
            raise PhasediffError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")


def _check_tolerance(value: float) -> None:
    if not value >= 0 or value == float("inf"):
        raise PhasediffError(f"--tolerance must be a finite number >= 0, got {value}")


def cmd_convert(args) -> None:
    from phasediff.denoisers.checkpoint import checkpoint_paths, convert

    if any(p.exists() for p in checkpoint_paths(args.destination)):
        raise PhasediffError(f"{args.destination} already exists; choose another destination")
    info = convert(args.source, args.destination, args.dtype)
    weights, _ = checkpoint_paths(args.destination)
    _emit(args, info, f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB, {args.dtype})")


def cmd_judge(args) -> None:
    from phasediff.report.samples import judge_file, observables_text

    if not args.samples.is_file():
        raise PhasediffError(f"{args.samples} not found")
    report = judge_file(args.samples, args.data, judge=args.judge, memorisation=not args.no_memorisation,
                        seed=args.seed)
    if "kind" in report:  # lattice data, judged by physical observables
        _emit(args, report, observables_text(report))
        return
    classes = " ".join(f"{f:.3f}" for f in report["class_fractions"])
    _emit(args, report, f"{report['n']} samples against {args.data}: Frechet distance {report['frechet']:.3g} "
          f"[{report['frechet_low']:.3g}, {report['frechet_high']:.3g}], confidence {report['confidence']:.3f}\n"
          f"class fractions: {classes}"
          + ("" if report["memorised_fraction"] is None else f"\nmemorised fraction {report['memorised_fraction']:.4f}"))


def cmd_diagram(args) -> None:
    from phasediff.report.diagram import run_diagram
    from phasediff.rundir import check_run_dir

    _check_positive(args, "images", "steps")
    _check_tolerance(args.tolerance)
    if args.analytic < 0:
        raise PhasediffError(f"--analytic must be >= 0, got {args.analytic}")
    check_run_dir(args.out, args.force)
    local = [Path(p) for p in args.local.split(",") if p.strip()]
    summary = run_diagram(args.data, local, args.out, global_checkpoint=args.model, n_images=args.images,
                          t_final=parse_list(args.t_final, float, "--t-final"), steps=args.steps,
                          analytic_train=args.analytic, cmi=args.cmi, tolerance=args.tolerance, seed=args.seed,
                          precision=args.precision, device=resolve_device(args.device), force=args.force)
    _emit(args, summary, "\n".join(summary["summary"]) + f"\nwrote {args.out}")


def cmd_hybrid(args) -> None:
    from phasediff.report.hybrid import hybrid_comparison, hybrid_sweep
    from phasediff.rundir import check_run_dir

    _check_positive(args, "n", "steps", "batch_size")
    budget, plan_n, cache = _auto_settings(args)
    check_run_dir(args.out, args.force)
    common = dict(data=args.data, judge=args.judge, n=args.n, steps=args.steps, seed=args.seed, budget=budget,
                  plan_n=plan_n, cache=cache, batch_size=args.batch_size, precision=args.precision,
                  device=resolve_device(args.device), force=args.force)
    if args.command == "hybrid":
        summary = hybrid_comparison(args.model, args.local, args.out, **common)
    else:
        lows, highs = parse_list(args.lows, float, "--lows"), parse_list(args.highs, float, "--highs")
        summary = hybrid_sweep(args.model, args.local, args.out, lows, highs, **common)
    _emit(args, summary, (args.out / "table.md").read_text() + f"wrote {args.out}")


def cmd_phases(args) -> None:
    from phasediff.diagnostics.phases import Family, PhasesOptions, phases_table, run_phases

    family = Family.parse(args.family)
    options = PhasesOptions(radii=tuple(parse_list(args.radii, int, "--radii")), n=args.n, steps=args.steps,
                            seed=args.seed, models=None if args.models is None else str(args.models),
                            gap_images=args.gap_images, method=args.method, cmi=args.cmi)
    if args.models is not None and not args.models.is_dir():
        raise PhasediffError(f"--models {args.models} is not a folder")
    if not args.out.parent.is_dir():
        raise PhasediffError(f"folder {args.out.parent} does not exist")
    summary = run_phases(family, options, args.out, force=args.force)
    _emit(args, summary, phases_table(summary["members"], family.parameter) + f"\nwrote {args.out}")


def cmd_plan(args) -> None:
    import time

    from phasediff.denoisers.checkpoint import read_info
    from phasediff.diagnostics.planner import (PlanOptions, cached, default_cache, plan_key, plan_schedule,
                                               plan_settings, plan_text)
    from phasediff.report.samples import judge_and_reference, judge_identity, load_models

    start = time.perf_counter()
    out = None if args.out is None else check_output_file(args.out, (".json",))
    if bad := [entry for entry in args.model if "=" not in entry]:
        raise PhasediffError(f"name every model: --model NAME=PATH, got {bad[0]!r}")
    _check_positive(args, "n", "steps", "batch_size")
    checkpoints = _named_models(args.model)
    if args.reference is not None and args.reference not in checkpoints:
        raise PhasediffError(f"--reference {args.reference!r} is not among the models {', '.join(checkpoints)}")
    options = PlanOptions(steps=args.steps, method=args.method, beta=args.beta, n=args.n,
                          grid=tuple(parse_list(args.grid, float, "--grid")), seed=args.seed,
                          batch_size=args.batch_size, precision=args.precision, device=resolve_device(args.device),
                          cost=args.cost, confident=args.confident, max_images=args.max_images, confirm=args.confirm)
    options.check()
    infos = {name: read_info(path) for name, path in checkpoints.items()}
    data = args.data or infos[args.reference or next(iter(infos))].get("data")
    if not data:
        raise PhasediffError("the checkpoints do not record their data: pass --data")
    settings = plan_settings(infos, args.reference, data, judge_identity(data, args.judge), options)

    def compute() -> dict:
        models, shape = load_models(checkpoints, options.device)
        judge, test_images = judge_and_reference(data, args.judge)
        plan = plan_schedule(models, args.reference, shape, judge, test_images, options, started=start)
        return {**plan.to_dict(), "data": data, "models": {m: str(p) for m, p in checkpoints.items()}}

    summary, hit = cached(None if args.no_cache else (args.cache or default_cache()), plan_key(settings), compute)
    summary.update(cached=hit, key=plan_key(settings), seconds=time.perf_counter() - start)
    if out is not None:
        write_atomic(out, lambda tmp: tmp.write_text(to_json(summary) + "\n"))
    _emit(args, summary, plan_text(summary))


def cmd_speciation(args) -> None:
    from phasediff.data.registry import load_dataset
    from phasediff.diagnostics.speciation import (
        check_ts,
        class_rule,
        load_denoiser,
        speciation,
        speciation_table,
    )

    ts = check_ts(sorted(set(parse_list(args.t, float, "--t"))))
    _check_positive(args, "n", "batch_size")
    if not 0 < args.steps_per_unit < float("inf"):
        raise PhasediffError(f"--steps-per-unit must be a positive number, got {args.steps_per_unit}")
    device = resolve_device(args.device)
    denoiser = load_denoiser(args.data, args.model, args.local_radius, device)
    data = load_dataset(args.data, split="test", n=args.n, seed=args.seed)
    classify, classes, labels = class_rule(args.data, data, args.judge)
    result = speciation(denoiser, data.images, labels, classify, ts, classes=classes, model=data.model,
                        steps_per_unit=args.steps_per_unit, seed=args.seed, batch_size=args.batch_size, device=device)
    _emit(args, result.to_dict(), speciation_table(result))


def cmd_concurrence(args) -> None:
    import torch

    from phasediff.data.registry import load_dataset
    from phasediff.diagnostics.concurrence import (
        FD_SKIPPED_GMM2,
        FD_SKIPPED_ISING,
        check_labels_and_judge,
        classifier_judge,
        concurrence,
        concurrence_table,
        gmm2_judge,
        ising_judge,
        load_checkpoints,
        load_cmi_run,
        parse_local_models,
        same_data,
        without_n,
    )
    from phasediff.diagnostics.speciation import (
        check_ts,
        class_rule,
        data_kind,
        load_denoiser,
    )
    from phasediff.precision import autocast, resolve_precision

    exact, kind = args.model == "exact", data_kind(args.data)
    if exact:
        if kind != "gmm2":
            raise PhasediffError(f"--model exact needs gmm2 data (the exact denoiser of {args.data!r} is not "
                                 "available); give a global checkpoint and --local-model checkpoints")
        if args.local_model:
            raise PhasediffError("--local-model goes with a checkpoint --model; with --model exact give --local-radius")
    elif args.local_radius is not None:
        raise PhasediffError("--local-radius applies to --model exact only (a checkpoint has its own radius): give "
                             "--local-model [R=]CHECKPOINT")
    elif not args.local_model:
        raise PhasediffError("a checkpoint --model needs at least one --local-model [R=]CHECKPOINT to compare with")
    if kind in ("gmm2", "ising") and args.judge is not None:
        raise PhasediffError(f"{kind} takes no --judge: its class is a sign")
    if kind == "gmm2" and args.cmi_run is not None:
        raise PhasediffError("gmm2 has the exact CMI: drop --cmi-run")
    if kind == "ising":
        from phasediff.data.ising import CRITICAL_TEMPERATURE
        from phasediff.data.registry import load_model

        if load_model(args.data).T > CRITICAL_TEMPERATURE:
            raise PhasediffError(f"{args.data} lies above T_c = {CRITICAL_TEMPERATURE:.4f}: no spontaneous "
                                 "magnetisation, so no class to keep; use T below T_c")
    ts = check_ts(sorted(set(parse_list(args.t, float, "--t"))))
    patches = sorted(set(parse_list(args.patches, int, "--patches")))
    widths = sorted(set(parse_list(args.window_width, float, "--window-width")))
    label_widths = sorted(set(parse_list(args.conditioning_width, float, "--conditioning-width")))
    if args.conditional_model is not None and kind in ("gmm2", "ising"):
        raise PhasediffError(f"{kind} has no class label to condition on: drop --conditional-model")
    if not np.isfinite(args.guidance):
        raise PhasediffError(f"--guidance must be a finite number, got {args.guidance}")
    _check_positive(args, "n", "samples", "sampler_steps", "resamples", "batch_size")
    if exact:
        radii = sorted({r for text in (args.local_radius or ["1,2,4"])
                        for r in parse_list(text, int, "--local-radius")})
        if min(radii) < 1:
            raise PhasediffError(f"--local-radius must be >= 1 (the CMI's buffer B_r needs r >= 1), got {min(radii)}")
    local_models = parse_local_models(args.local_model or [])
    if min(patches) < 1:
        raise PhasediffError(f"--patches must be >= 1, got {min(patches)}")
    for name, values in (("--window-width", widths), ("--conditioning-width", label_widths)):
        if any(not 0 < w < 1 for w in values):
            raise PhasediffError(f"{name} must lie in (0, 1), got {values}")
    if not 0 < args.window_step <= 1:
        raise PhasediffError(f"--window-step must lie in (0, 1], got {args.window_step}")
    for name in ("steps_per_unit", "recovery_steps_per_unit"):
        if not 0 < getattr(args, name) < float("inf"):
            raise PhasediffError(f"--{name.replace('_', '-')} must be a positive number, got {getattr(args, name)}")
    if args.out is not None:
        from phasediff.rundir import check_run_dir

        check_run_dir(args.out, args.force)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, torch.device(device).type, warn=True)
    cmi_run = None if args.cmi_run is None else load_cmi_run(args.cmi_run)
    if cmi_run is not None:
        measured = str(cmi_run["dataset"]).split()[0] if str(cmi_run["dataset"]).split() else ""
        try:
            matches = same_data(measured, args.data)
        except PhasediffError:
            matches = False
        if not matches:
            raise PhasediffError(f"--cmi-run {args.cmi_run} measured {cmi_run['dataset']!r:.80}, not {args.data}")
    data = load_dataset(args.data, split="test", n=args.n, seed=args.seed)
    checkpoints: dict = {"precision": precision}
    if exact:
        global_ = load_denoiser(args.data, "exact", None, device)
        local = {r: load_denoiser(args.data, "exact", r, device) for r in radii}
    else:
        from phasediff.train.setup import is_periodic

        global_, local, paths = load_checkpoints(args.data, args.model, local_models, data.shape, is_periodic(data),
                                                 device)
        checkpoints.update({"global": args.model, "local": {str(r): str(path) for r, path in paths.items()}})
    skipped = {}
    if kind == "gmm2":
        judge, skipped["sliding window FD"] = gmm2_judge(data.model), FD_SKIPPED_GMM2
        classify, classes, labels = class_rule(args.data, data)
    elif kind == "ising":
        reference = load_dataset(without_n(args.data), split="test", n=max(args.n, 1000), seed=args.seed).images
        judge, skipped["sliding window FD"] = ising_judge(reference), FD_SKIPPED_ISING
        classify, classes, labels = class_rule(args.data, data)
    else:
        from phasediff.report.samples import default_judge, load_judge

        judge_path = args.judge if args.judge is not None else default_judge(args.data)
        check_labels_and_judge(judge_path, args.data, data)
        classify, classes, labels = class_rule(args.data, data, judge_path)
        judge = classifier_judge(load_judge(judge_path), load_dataset(without_n(args.data), split="test").images)
        checkpoints["judge"] = str(judge_path)
    conditional, conditioning = None, None
    if args.conditional_model is None:
        skipped["conditioning window"] = ("no class label to condition on (its class is a sign)" if kind in
                                          ("gmm2", "ising") else "no class-conditional network (--conditional-model)")
    else:
        from phasediff.diagnostics.conditioning import load_conditional

        conditional = load_conditional(args.conditional_model, args.data, data.shape, classes, device)
        checkpoints["conditional"] = str(args.conditional_model)
    with torch.no_grad(), autocast(precision, torch.device(device).type):
        if conditional is not None:
            from phasediff.diagnostics.conditioning import conditioning_window

            conditioning = conditioning_window(conditional, classify, classes, data.shape, label_widths,
                                               args.window_step, args.guidance, args.samples, args.sampler_steps,
                                               args.seed, args.batch_size, device, args.resamples)
        result = concurrence(global_, local, data.images, labels, classify, ts, classes=classes, model=data.model,
                             patches=patches, widths=widths, window_step=args.window_step, valid=judge,
                             samples=args.samples, sampler_steps=args.sampler_steps,
                             steps_per_unit=args.steps_per_unit, recovery_steps_per_unit=args.recovery_steps_per_unit,
                             seed=args.seed, batch_size=args.batch_size, device=device, resamples=args.resamples,
                             skipped=skipped, cmi_run=cmi_run, conditioning=conditioning)
    result.settings.update(data=args.data, checkpoints=checkpoints)
    payload, text = result.to_dict(), concurrence_table(result)
    if args.out is not None:
        from phasediff.report.concurrence_figures import concurrence_figure
        from phasediff.rundir import run_directory, save_json, save_yaml

        config = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
        with run_directory(args.out, args.force) as work:
            save_json(work / "results.json", payload)
            save_yaml(work / "config.yaml", config)
            (work / "table.txt").write_text(text + "\n")
            concurrence_figure(payload, work / "concurrence.png", title=args.data)
        text += f"\nwrote {args.out}"
    _emit(args, payload, text)


def cmd_reproduce(args) -> None:
    from phasediff.reproduce import Options, dataset_plan, reproduce

    plan = dataset_plan(args.data)
    if args.checkpoints is not None and not args.checkpoints.is_dir():
        raise PhasediffError(f"--checkpoints {args.checkpoints} is not a folder")
    options = Options(quick=args.quick, seed=args.seed, device=resolve_device(args.device),
                      checkpoints=args.checkpoints, cmi_estimator=args.cmi_estimator)
    command = " ".join(["phasediff reproduce", args.data, "--out", str(args.out)] + ["--quick"] * args.quick
                       + [f"--{k.replace('_', '-')} {v}" for k, v in (("seed", args.seed), ("device", args.device),
                          ("cmi_estimator", args.cmi_estimator), ("checkpoints", args.checkpoints))
                          if v not in (None, 0, "cpu")])
    summary = reproduce(plan, args.out, options, quiet=args.quiet, command=command)
    rows = [f"{row['name']:<12} {row['status']:<8} " + (row["reason"] or (f"{row['compute_seconds']:.1f} s" if
            row["compute_seconds"] is not None else "")) for row in summary["stages"]]
    _emit(args, summary, "\n".join(rows) + f"\nwrote {summary['index']} ({summary['wall_seconds']:.1f} s)")
    if summary["failed"]:
        raise PhasediffError(f"stage {', '.join(summary['failed'])} failed (the reason is in {summary['index']}); "
                             "run the command again to retry")


COMMANDS = {"cmi": cmd_cmi, "study": cmd_study, "train": cmd_train, "sample": cmd_sample, "convert": cmd_convert,
            "judge": cmd_judge, "diagram": cmd_diagram,
            "hybrid": cmd_hybrid, "hybrid-sweep": cmd_hybrid, "phases": cmd_phases, "plan": cmd_plan,
            "speciation": cmd_speciation, "concurrence": cmd_concurrence, "reproduce": cmd_reproduce}
DATA_COMMANDS = {"info": cmd_data_info, "show": cmd_data_show, "export": cmd_data_export}


def _os_error(error: OSError) -> str:
    """One line for a failed read or write: what, where, why."""
    where = " -> ".join(str(f) for f in (error.filename, error.filename2) if f is not None)
    reason = error.strerror or str(error) or type(error).__name__
    return f"{where}: {reason}" if where else reason


def _bug_report(error: BaseException) -> str:
    """Write the full trace of an unexpected error to a file; return its path."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="phasediff-bug-", suffix=".txt")
    with os.fdopen(fd, "w") as handle:
        handle.write(f"phasediff {__version__}, argv: {sys.argv}\n")
        handle.write("".join(traceback.format_exception(error)))
    return path


def run(args) -> None:
    """Run one parsed command."""
    device = resolve_device(getattr(args, "device", "cpu"))
    for name in ("precision", "train_precision"):
        if getattr(args, name, None):
            setattr(args, name, resolve_precision(getattr(args, name), device.split(":")[0], warn=True))
    np.random.seed(check_seed(args.seed))
    handler = DATA_COMMANDS[args.data_command] if args.command == "data" else COMMANDS[args.command]
    with _output_lock(args):
        handler(args)


def _output_lock(args):
    """The lock of the command's output (--out, or convert's destination) for the whole command, so that a
    second writer of the same output fails at its start with one line; none where the folder is missing
    (the command's own check says so), and none on the other processes of a torchrun (the first holds it)."""
    from contextlib import nullcontext

    from phasediff.rundir import output_lock

    out = getattr(args, "out", None) or getattr(args, "destination", None)
    if out is None or not Path(out).parent.is_dir() or os.environ.get("RANK", "0") != "0":
        return nullcontext()
    return output_lock(Path(out))


def main(argv: list[str] | None = None) -> int:
    """The error boundary: an expected failure is one line and status 2, an unexpected one (a bug) is one line
    that says where the full trace went, and status 1."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors (status 2, one line)
        return int(exit_.code or 0)
    set_quiet(args.quiet)
    try:
        run(args)
    except PhasediffError as error:
        message = str(error)
    except OSError as error:  # unreadable or unwritable paths, a full disk
        message = _os_error(error)
    except MemoryError:
        message = "not enough memory for this request; ask for fewer images, samples or a smaller grid"
    except KeyboardInterrupt:
        print("phasediff: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the boundary: anything else is a bug
        print(f"phasediff: internal error ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
              f"; this is a bug, the full trace is in {_bug_report(error)}", file=sys.stderr)
        return 1
    else:
        return 0
    print(f"phasediff: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
