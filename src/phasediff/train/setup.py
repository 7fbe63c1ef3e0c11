"""From the ``phasediff train`` options to a network, an objective and data, then the loop."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from phasediff.data.registry import is_file_spec, load_dataset
from phasediff.errors import PhasediffError
from phasediff.specs import check_seed
from phasediff.train.loop import TrainSettings, check_out, train
from phasediff.train.objectives import ClassificationObjective, DenoisingObjective

DEFAULT_LR = {"local": 1e-3, "wiener-local": 1e-3, "global": 5e-4, "classifier": 1e-3}
DEFAULT_WIDTH = {"local": 64, "wiener-local": 64, "global": 32, "classifier": 16}  # channels (global: base)


def build_network(kind: str, shape: tuple[int, int, int], num_classes: int | None, radius: int | None = None,
                  width: int | None = None, conditional: bool = False, position_channels: bool = False,
                  periodic: bool = False):
    """A fresh network of the requested kind for images of ``shape`` (C, H, W) (a "wiener-local" one still
    needs ``fit_linear`` on the training images); ``periodic`` denoisers treat the image as a torus."""
    channels, height, width_px = shape
    if width is not None and width < 1:
        raise PhasediffError(f"--width must be >= 1, got {width}")
    width = DEFAULT_WIDTH.get(kind) if width is None else width
    if kind == "local":
        from phasediff.denoisers.local import LocalDenoiser

        if radius is None:
            raise PhasediffError("a local model needs --radius")
        return LocalDenoiser(radius, channels=channels, width=width, position_channels=position_channels,
                             image_size=(height, width_px) if position_channels else None, periodic=periodic)
    if kind == "wiener-local":
        from phasediff.denoisers.wiener_local import WienerPlusLocalDenoiser

        if radius is None:
            raise PhasediffError("a wiener-local model needs --radius")
        return WienerPlusLocalDenoiser(radius, (height, width_px), channels=channels, width=width,
                                       position_channels=position_channels)
    if radius is not None:
        raise PhasediffError(f"--radius applies to local models only, not {kind}")
    if kind == "global":
        from phasediff.denoisers.unet import UNet

        if conditional and not num_classes:
            raise PhasediffError("a conditional model needs a dataset with labels")
        return UNet(channels=channels, base=width, image_size=height,
                    num_classes=num_classes if conditional else None, periodic=periodic)
    from phasediff.classifier import Classifier

    if not num_classes:
        raise PhasediffError("training a classifier needs a dataset with labels")
    return Classifier(channels=channels, num_classes=num_classes, width=width)


@dataclass(frozen=True)
class TrainOptions:
    """What ``phasediff train`` is asked for: the data, the network, the schedule of the optimiser, the run."""

    spec: str
    model: str
    out: Path
    radius: int | None = None
    width: int | None = None
    conditional: bool = False
    position_channels: bool = False
    crop: int | None = None
    t_min: float = 0.0
    t_max: float = 1.0
    steps: int = 10_000
    batch_size: int = 128
    lr: float | None = None
    warmup: int = 200
    ema_decay: float = 0.999
    checkpoint_every: int = 1000
    precision: str = "fp32"
    resume: bool = False
    init: Path | None = None
    seed: int = 0
    device: str = "cpu"


def is_periodic(data) -> bool:
    """Whether the data live on a torus (the Ising model's periodic lattice)."""
    from phasediff.data.ising import IsingModel

    return isinstance(data.model, IsingModel)


def _initialise(net, checkpoint, info: dict) -> dict:
    """Load the weights of ``checkpoint`` (same architecture, sidecar ``info``) into ``net``; what the new
    sidecar records of it. An unconditional checkpoint may start a conditional network of otherwise the same
    architecture: its class embedding starts at zero, so the new network begins as the old one, E[label] = 0."""
    import json

    from phasediff.denoisers.checkpoint import load

    config, wanted = dict(info["model"]), net.config()
    adds_classes = config.get("num_classes") is None and wanted.get("num_classes") is not None
    if adds_classes:
        config.update(num_classes=wanted["num_classes"], label_dropout=wanted["label_dropout"])
    if json.dumps(config, sort_keys=True) != json.dumps(wanted, sort_keys=True):
        raise PhasediffError(f"{checkpoint} holds another architecture than the one requested")
    missing, unexpected = net.load_state_dict(load(checkpoint).state_dict(), strict=not adds_classes)
    if adds_classes:
        classes = [name for name, _ in net.named_parameters() if ".classes." in f".{name}"]
        if unexpected or sorted(missing) != sorted(classes):
            raise PhasediffError(f"{checkpoint}: weights do not fit the conditional network ({missing + unexpected})")
        with torch.no_grad():
            for name in classes:
                net.get_parameter(name).zero_()
    before = info.get("init", {}).get("steps_before", 0) + int(info.get("step") or 0)
    recorded = {"checkpoint": str(checkpoint), "weights_sha256": info["weights_sha256"], "steps_before": before}
    return recorded | ({"added": "class embedding, zero at the start"} if adds_classes else {})


def _check_options(args: TrainOptions) -> None:
    """The options that can be checked without the data: before anything is loaded or written."""
    if args.model not in ("local", "wiener-local") and args.position_channels:
        raise PhasediffError("--position-channels applies to local models only")
    if args.model != "local" and args.crop is not None:
        raise PhasediffError("--crop applies to local models only (a wiener-local model takes whole images)")
    if args.conditional and args.model != "global":
        raise PhasediffError("--conditional applies to the global model only")
    if args.init is not None and args.resume:
        raise PhasediffError("--init starts a new run from a checkpoint; --resume continues one: choose one")
    for name in ("radius", "width", "crop"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise PhasediffError(f"--{name} must be >= 1, got {value}")
    check_seed(args.seed)
    check_out(args.out, args.resume)


def _check_crop(crop: int | None, radius: int | None, shape: tuple[int, int, int]) -> None:
    """A training crop must fit the images and leave outputs that see their whole context (side > 2 radius)."""
    if crop is None:
        return
    _, height, width = shape
    if crop > min(height, width):
        raise PhasediffError(f"--crop {crop} exceeds the {height} x {width} images")
    if crop <= 2 * radius:
        raise PhasediffError(f"--crop {crop} is too small for radius {radius}: it must exceed 2 x radius")


def run_training(args: TrainOptions) -> dict:
    """Run ``phasediff train`` (see the command's help for the options); every option is checked before the
    data are loaded and before anything is written."""
    _check_options(args)
    settings = TrainSettings(steps=args.steps, batch_size=args.batch_size,
                             lr=DEFAULT_LR[args.model] if args.lr is None else args.lr, warmup=args.warmup,
                             ema_decay=args.ema_decay, checkpoint_every=args.checkpoint_every, seed=args.seed,
                             precision=args.precision, device=args.device)
    settings.check()
    if args.model == "classifier":
        objective = ClassificationObjective()
    else:
        objective = DenoisingObjective(args.t_min, args.t_max, crop=args.crop, conditional=args.conditional)
    init = None
    if args.init is not None:
        from phasediff.denoisers.checkpoint import read_info

        init = read_info(args.init)
    data = load_dataset(args.spec, split="train", seed=args.seed)
    periodic = is_periodic(data) and args.model in ("local", "global")
    if periodic and args.crop is not None:
        raise PhasediffError(f"{args.spec} lives on a torus: its periodic models train on whole images (no --crop)")
    _check_crop(args.crop, args.radius, data.shape)
    # a file has no test split: its run validates on the training images
    validation = data if is_file_spec(args.spec) else load_dataset(args.spec, split="test", seed=args.seed)
    classes = None if data.labels is None else int(data.labels.max()) + 1
    torch.manual_seed(args.seed)  # the initial weights
    net = build_network(args.model, data.shape, classes, args.radius, args.width, args.conditional,
                        args.position_channels, periodic)
    info = {"data": args.spec, "image_shape": list(data.shape), "model_kind": args.model,
            "command": "phasediff " + shlex.join(sys.argv[1:]) if sys.argv[0].endswith("phasediff") else None}
    if args.model == "wiener-local":
        net.fit_linear(data.images)
    if init is not None:
        info["init"] = _initialise(net, args.init, init)
    summary = train(net, objective, data, settings, args.out, resume=args.resume, validation=validation,
                    info=info)
    if args.model == "classifier":
        from phasediff.classifier import accuracy
        from phasediff.denoisers.checkpoint import load, update_info

        judge = load(args.out / "model")
        summary["test_accuracy"] = accuracy(judge, torch.from_numpy(validation.images),
                                            torch.from_numpy(validation.labels))
        update_info(args.out / "model", test_accuracy=summary["test_accuracy"])
    return summary
