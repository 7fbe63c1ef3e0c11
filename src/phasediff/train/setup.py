"""From the ``phasediff train`` options to a network, an objective and data, then the loop."""

from __future__ import annotations

import shlex
import sys

import torch

from phasediff.data.registry import load_dataset
from phasediff.errors import PhasediffError
from phasediff.train.loop import TrainSettings, train
from phasediff.train.objectives import ClassificationObjective, DenoisingObjective

DEFAULT_LR = {"local": 1e-3, "wiener-local": 1e-3, "global": 5e-4, "classifier": 1e-3}


def build_network(kind: str, shape: tuple[int, int, int], num_classes: int | None, radius: int | None = None,
                  width: int | None = None, conditional: bool = False, position_channels: bool = False):
    """A fresh network of the requested kind for images of ``shape`` (C, H, W) (a "wiener-local" one still
    needs ``fit_linear`` on the training images)."""
    channels, height, width_px = shape
    if kind == "local":
        from phasediff.denoisers.local import LocalDenoiser

        if radius is None:
            raise PhasediffError("a local model needs --radius")
        return LocalDenoiser(radius, channels=channels, width=width or 64, position_channels=position_channels,
                             image_size=(height, width_px) if position_channels else None)
    if kind == "wiener-local":
        from phasediff.denoisers.wiener_local import WienerLocalDenoiser

        if radius is None:
            raise PhasediffError("a wiener-local model needs --radius")
        return WienerLocalDenoiser(radius, (height, width_px), channels=channels, width=width or 64,
                                   position_channels=position_channels)
    if radius is not None:
        raise PhasediffError(f"--radius applies to local models only, not {kind}")
    if kind == "global":
        from phasediff.denoisers.unet import UNet

        if conditional and not num_classes:
            raise PhasediffError("a conditional model needs a dataset with labels")
        return UNet(channels=channels, base=width or 32, image_size=height,
                    num_classes=num_classes if conditional else None)
    from phasediff.classifier import Classifier

    if not num_classes:
        raise PhasediffError("training a classifier needs a dataset with labels")
    return Classifier(channels=channels, num_classes=num_classes, width=width or 16)


def _initialise(net, checkpoint, resume: bool) -> dict:
    """Load the weights of ``checkpoint`` (same architecture) into ``net``; what the sidecar records of it."""
    import json

    from phasediff.denoisers.checkpoint import load, read_info

    if resume:
        raise PhasediffError("--init starts a new run from a checkpoint; --resume continues one: choose one")
    info = read_info(checkpoint)
    if json.dumps(info["model"], sort_keys=True) != json.dumps(net.config(), sort_keys=True):
        raise PhasediffError(f"{checkpoint} holds another architecture than the one requested")
    net.load_state_dict(load(checkpoint).state_dict())
    before = info.get("init", {}).get("steps_before", 0) + int(info.get("step") or 0)
    return {"checkpoint": str(checkpoint), "weights_sha256": info["weights_sha256"], "steps_before": before}


def train_from_args(args, device: str) -> dict:
    """Run ``phasediff train`` (see the command's help for the options)."""
    if args.model not in ("local", "wiener-local") and args.position_channels:
        raise PhasediffError("--position-channels applies to local models only")
    if args.model != "local" and args.crop is not None:
        raise PhasediffError("--crop applies to local models only (a wiener-local model takes whole images)")
    if args.conditional and args.model != "global":
        raise PhasediffError("--conditional applies to the global model only")
    data = load_dataset(args.spec, split="train", seed=args.seed)
    validation = load_dataset(args.spec, split="test", seed=args.seed)
    classes = None if data.labels is None else int(data.labels.max()) + 1
    torch.manual_seed(args.seed)  # the initial weights
    net = build_network(args.model, data.shape, classes, args.radius, args.width, args.conditional,
                        args.position_channels)
    info = {"data": args.spec, "image_shape": list(data.shape), "model_kind": args.model,
            "command": "phasediff " + shlex.join(sys.argv[1:]) if sys.argv[0].endswith("phasediff") else None}
    if args.model == "wiener-local":
        net.fit_linear(data.images)
    if args.init is not None:
        info["init"] = _initialise(net, args.init, args.resume)
    if args.model == "classifier":
        objective = ClassificationObjective()
    else:
        objective = DenoisingObjective(args.t_min, args.t_max, crop=args.crop, conditional=args.conditional)
    settings = TrainSettings(steps=args.steps, batch_size=args.batch_size, lr=args.lr or DEFAULT_LR[args.model],
                             warmup=args.warmup, ema_decay=args.ema_decay, checkpoint_every=args.checkpoint_every, seed=args.seed,
                             precision=args.precision, device=device)
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
