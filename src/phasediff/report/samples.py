"""Sample files and their judging.

    load_models      named checkpoints -> (models, image shape), checking that the shapes agree
    sample_to_file   a schedule of named models (one model, a hybrid, any `Schedule`) -> .npz + PNG grid
    judge_file       quality of a .npz of samples against the test split, by the project's classifier, or by
                     physical observables for lattice data (ising, grf, gmrf: judge_observables)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from phasediff.denoisers.checkpoint import load, read_info
from phasediff.denoisers.schedule import Schedule
from phasediff.errors import PhasediffError
from phasediff.precision import autocast
from phasediff.report.figures import image_grid
from phasediff.rundir import write_atomic
from phasediff.sampling import sample

CHECKPOINTS = Path(__file__).resolve().parents[3] / "checkpoints"


def checkpoint_shape(checkpoint) -> tuple[int, int, int]:
    """The (C, H, W) a checkpoint was trained on, from its sidecar."""
    shape = tuple(read_info(checkpoint).get("image_shape") or ())
    if len(shape) != 3:
        raise PhasediffError(f"checkpoint {checkpoint} does not record the image shape it was trained on")
    return shape


def load_models(checkpoints: Mapping[str, Path], device: str = "cpu") -> tuple[dict[str, object], tuple[int, ...]]:
    """({name: model on ``device``}, the image shape they share)."""
    shapes = {name: checkpoint_shape(path) for name, path in checkpoints.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise PhasediffError(f"the models were trained on different image shapes: {listed}")
    models = {name: load(path, device) for name, path in checkpoints.items()}
    return models, next(iter(shapes.values()))


@dataclass(frozen=True)
class SampleOptions:
    """How to sample: n images, Euler or Heun steps from t = 1 to 0, seeded, in batches, at a precision."""

    n: int = 64
    steps: int = 32
    method: str = "euler"
    seed: int = 0
    batch_size: int = 500
    device: str = "cpu"
    precision: str = "fp32"
    clip: bool = True  # images in [0, 1]; False for unbounded data (Gaussian fields, gmm2)


def sample_to_file(models: Mapping[str, object], shape: tuple[int, ...], schedule: Schedule, out: Path,
                   options: SampleOptions, label: int | str | None = None, title: str = "") -> dict:
    """Sample the schedule's denoiser of the named ``models`` into ``out`` (.npz, images (N, C, H, W) clipped to
    [0, 1] unless ``options.clip`` is off) and a PNG grid beside it. ``label`` reaches the members written
    NAME*S: one class for every sample, or "cycle" (sample i: class i mod classes)."""
    guided = [member for member in schedule.members() if "*" in member]
    if label is None and guided:
        raise PhasediffError(f"{', '.join(guided)} take the class label: pass --label")
    if label is not None and not guided:
        raise PhasediffError("--label reaches only members written NAME*S (guided; *1: conditional)")
    denoiser = schedule.build(models)
    classes = {models[member.split("*")[0]].num_classes for member in guided}
    for member in guided:
        count = models[member.split("*")[0]].num_classes
        if label != "cycle" and not 0 <= label < count:
            raise PhasediffError(f"label {label} is not a class of {member} (0..{count - 1})")
    if label == "cycle" and len(classes) != 1:
        raise PhasediffError("label cycle needs every guided member to have the same classes")
    labels = (None if label is None else torch.arange(options.n) % classes.pop() if label == "cycle" else
              torch.full((options.n,), label, dtype=torch.long))
    start = time.perf_counter()
    with autocast(options.precision, torch.device(options.device).type):
        images = sample(denoiser, options.n, shape, steps=options.steps, method=options.method, seed=options.seed,
                        label=labels, batch_size=options.batch_size, device=options.device)
    seconds = time.perf_counter() - start
    images = (images.clamp(0, 1) if options.clip else images).numpy().astype(np.float32)
    out = Path(out)
    grid = out.with_suffix(".png")

    def write_both(tmp: Path) -> None:  # the grid first: a failed grid leaves neither file
        np.savez_compressed(tmp, images=images)
        write_atomic(grid, lambda png: image_grid(images[:64], png, title=f"{title}: {options.steps} "
                                                                          f"{options.method} steps"))

    write_atomic(out, write_both)
    return {"out": str(out), "grid": str(grid), "n": options.n, "steps": options.steps, "method": options.method,
            "schedule": schedule.text(), "seconds": seconds, "images_per_second": options.n / seconds,
            "evaluations": dict(denoiser.evaluations)}


UNBOUNDED = ("grf", "gmrf", "gmm2")  # data specs whose values are not confined to [0, 1]


def clips(checkpoint) -> bool:
    """Whether samples of this checkpoint's data are clipped to [0, 1] (not for Gaussian fields and gmm2)."""
    return not str(read_info(checkpoint).get("data") or "").startswith(UNBOUNDED)


def default_judge(data: str) -> Path:
    """The committed classifier for a named dataset (mnist, fashion-mnist)."""
    path = CHECKPOINTS / data.split(":")[0] / "classifier"
    if not path.with_suffix(".json").is_file():
        raise PhasediffError(f"no committed classifier for {data!r}; pass --judge CHECKPOINT")
    return path


def load_judge(judge) -> object:
    """The classifier at ``judge``, refusing any other network."""
    path = judge
    if read_info(path).get("model", {}).get("arch") != "classifier":
        raise PhasediffError(f"{path} is not a classifier checkpoint (train one with phasediff train DATA "
                             "--model classifier)")
    return load(path)


def judge_and_reference(data: str, judge=None):
    """(the judge, the test images of ``data``): the classifier (default: the committed one), or for Ising data
    its physical observables (`observables.IsingFeatures`)."""
    from phasediff.data.registry import load_dataset

    if _feature_judged(data, judge):
        from phasediff.observables import IsingFeatures

        return IsingFeatures(), load_dataset(data, split="test").images
    return load_judge(judge or default_judge(data)), load_dataset(data, split="test").images


def judge_identity(data: str, judge=None) -> str:
    """What a judge's verdicts depend on: the classifier's weights digest, or the observables' name on Ising data."""
    if _feature_judged(data, judge):
        from phasediff.observables import IsingFeatures

        return IsingFeatures.identity
    return read_info(judge or default_judge(data))["weights_sha256"]


def _feature_judged(data: str, judge) -> bool:
    """Whether ``data`` is judged by observables' features rather than a classifier (Ising; no --judge allowed)."""
    if observable_kind(data) != "ising":
        return False
    if judge is not None:
        raise PhasediffError(f"{data} is judged by its physical observables, not by a classifier: drop --judge")
    return True


OBSERVABLE_KINDS = {"ising": "ising", "grf": "gaussian", "gmrf": "gaussian"}  # spec name -> how judge_file judges


def observable_kind(data: str) -> str | None:
    """"ising" or "gaussian" when ``data`` names a lattice model judged by its physical observables, else None."""
    from phasediff.data.registry import is_file_spec
    from phasediff.specs import parse_spec

    return None if is_file_spec(data) else OBSERVABLE_KINDS.get(parse_spec(data)[0])


def judge_file(samples, data: str, judge=None, memorisation: bool = True, rounds: int = 50, seed: int = 0) -> dict:
    """Quality of the images in a .npz (key ``images``) against the test split of ``data``: by the project's
    classifier, or by physical observables for Ising and Gaussian-field specs (see `judge_observables`, which
    takes its own bootstrap rounds; ``rounds`` and ``memorisation`` are the classifier's)."""
    if observable_kind(data) is not None:
        if judge is not None:
            raise PhasediffError(f"{data} is judged by its physical observables, not by a classifier: drop --judge")
        return judge_observables(samples, data, seed=seed)
    from phasediff.data.images import load_file
    from phasediff.data.registry import load_dataset
    from phasediff.metrics import quality

    classifier = load_judge(judge or default_judge(data))
    images = load_file(Path(samples))[0]
    reference = load_dataset(data, split="test").images
    if tuple(images.shape[1:]) != tuple(reference.shape[1:]):
        raise PhasediffError(f"samples of shape {tuple(images.shape[1:])} do not match {data} "
                             f"{tuple(reference.shape[1:])}")
    training = load_dataset(data, split="train").images if memorisation else None
    report = quality(classifier, images, reference, training=training, rounds=rounds, seed=seed)
    return {"samples": str(samples), "data": data, **report.to_dict()}


MIN_REFERENCE = 1000  # reference configurations drawn at least, whatever the number of samples


def judge_observables(samples, data: str, seed: int = 0) -> dict:
    """Physical observables of the samples in a .npz against the model of ``data`` (`phasediff.observables`).

    Ising: energy, |m|, C(d) and xi_2 against max(n, 1000) fresh configurations (the test draw of ``seed``), the
    verdict `matches`, and how many samples copy a configuration of the training draw of ``seed``. Gaussian fields (grf, gmrf): the covariance errors against the exact covariance, with
    the noise floor of n exact samples (the first n of that test draw).
    """
    from phasediff.data.images import load_file
    from phasediff.data.registry import load_dataset, load_model
    from phasediff.observables import gaussian_observables, ising_observables, lattice_copies, matches
    from phasediff.specs import parse_spec

    if "crop" in parse_spec(data)[1]:
        raise PhasediffError(f"{data}: the observables need the whole lattice; drop crop=")
    kind, model = observable_kind(data), load_model(data)
    images = load_file(Path(samples))[0]
    if tuple(images.shape[1:]) != tuple(model.shape):
        raise PhasediffError(f"samples of shape {tuple(images.shape[1:])} do not match {data} {tuple(model.shape)}")
    reference = load_dataset(data, split="test", n=max(len(images), MIN_REFERENCE), seed=seed).images
    head = {"samples": str(samples), "data": data, "kind": kind, "n": len(images), "n_reference": len(reference)}
    if kind == "ising":
        report = ising_observables(images, reference, seed=seed)
        training = load_dataset(data, split="train", seed=seed).images  # the draw `phasediff train` uses
        return {**head, "matches": matches(report), **report.to_dict(),
                "memorisation": lattice_copies(images, training)}
    report = gaussian_observables(images, model.covariance, reference=reference, seed=seed)
    return {**head, "reference": "exact covariance", **report.to_dict()}


def observables_text(report: dict, first: int = 6) -> str:
    """The text of `judge_observables`: the observables, generated against reference, with their intervals
    (C(d) and the covariance errors for the ``first`` distances)."""
    from phasediff.observables import CORRELATION_TOLERANCE, ENERGY_TOLERANCE, W1_TOLERANCE

    def show(entry: dict, index: int | None = None) -> str:
        value, low, high = (entry[k] if index is None else entry[k][index] for k in ("value", "low", "high"))
        return f"{value:.4g} [{low:.4g}, {high:.4g}]"

    def row(label: str, key: str, index: int | None = None) -> str:
        return f"{label:<16} {show(report[key], index)}  reference {show(report[key + '_reference'], index)}"

    if report["kind"] == "ising":
        distances = range(min(first, len(report["correlation"]["value"])))
        return "\n".join([
            (f"{report['n']} samples against {report['data']} (reference: {report['n_reference']} fresh samples of "
             "the model; spins: image > 0.5)"),
            row("energy per spin", "energy") + f"  difference {show(report['energy_difference'])}",
            row("mean |m|", "abs_magnetisation") + f"  W1(|m|) {show(report['w1_abs_magnetisation'])}",
            row("xi_2", "correlation_length"),
            *(row(f"C({d})", "correlation", d) for d in distances),
            f"max |C(d) - C_ref(d)|, 1 <= d <= L/4: {show(report['correlation_difference'])}",
            (f"verdict: {'match' if report['matches'] else 'no match'} (|energy difference| <= {ENERGY_TOLERANCE:g}, "
             f"W1(|m|) <= {W1_TOLERANCE:g}, max |C(d) - C_ref(d)| <= {CORRELATION_TOLERANCE:g})"),
            (f"copies of a training configuration: {report['memorisation']['copied_fraction']:.3f} (median nearest "
             f"Hamming distance {report['memorisation']['nearest_hamming_median']:.3f} of the sites, "
             f"{report['memorisation']['n_training']} training configurations)"),
        ])
    floor = report["covariance_error_floor"]
    return "\n".join([
        (f"{report['n']} samples against {report['data']} (reference: the exact covariance; floor: the same errors "
         "of n exact samples)"),
        *(f"mean |S_hat - S| at Chebyshev distance {d}: {show(report['covariance_error'], d)}  floor {floor[d]:.4g}"
          for d in range(min(first, len(floor)))),
        (f"relative Frobenius error {show(report['relative_frobenius'])}  "
         f"floor {report['relative_frobenius_floor']:.4g}"),
    ])
