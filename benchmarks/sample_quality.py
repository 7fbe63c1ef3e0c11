"""Sample quality of the committed global models: 32 Euler steps, 5,000 samples, judged by the committed classifier.

    python benchmarks/sample_quality.py [--data mnist,fashion-mnist] [--n 5000] [--steps 32]
        [--precision auto|fp32|bf16] [--model-name global] [--guidance S] [--out runs/bench-quality] [--threads N]

Prints JSON per dataset: Frechet distance to the test split in the judge's features (bootstrap bias-corrected,
95% interval), mean top-class confidence, class fractions (and whether each lies in [5%, 15%]), memorised
fraction, sampling seconds. The samples are written to OUT/DATA.npz with a PNG grid. With --guidance S the model
is class-conditional: sample i gets label i mod classes, guided with scale S at every step, and the report adds
``label_accuracy``, the fraction the judge assigns to their label (Wilson 95% interval).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from phasediff.precision import PRECISIONS, resolve_precision
from phasediff.denoisers.schedule import Schedule
from phasediff.report.samples import CHECKPOINTS, SampleOptions, judge_file, load_models, sample_to_file


def label_accuracy(samples: Path, data: str, classes: int) -> dict:
    """The fraction of samples the judge assigns to their label (sample i: label i mod classes), Wilson 95%."""
    import numpy as np

    from phasediff.data.images import load_file
    from phasediff.diagnostics.speciation import judge_classes
    from phasediff.report.samples import default_judge, load_judge
    from phasediff.stats import wilson_interval

    images = load_file(samples)[0]
    predicted = np.asarray(judge_classes(load_judge(default_judge(data)))(images))
    hits = int((predicted == np.arange(len(images)) % classes).sum())
    low, high = wilson_interval(np.array([hits]), len(images))
    return {"value": hits / len(images), "low": float(low[0]), "high": float(high[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist,fashion-mnist")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help="auto: bf16 where native")
    parser.add_argument("--model-name", default="global")
    parser.add_argument("--guidance", type=float, default=None, help="class-conditional model: guidance scale")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-quality"))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    args.precision = resolve_precision(args.precision)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"n": args.n, "steps": args.steps, "precision": args.precision, "threads": args.threads,
              "datasets": {}}
    for data in args.data.split(","):
        samples = args.out / f"{data}-{args.model_name}.npz"
        models, shape = load_models({"model": CHECKPOINTS / data / args.model_name})
        member = "model" if args.guidance is None else f"model*{args.guidance:g}"
        run = sample_to_file(models, shape, Schedule((), member), samples,
                             SampleOptions(n=args.n, steps=args.steps, precision=args.precision), title=data,
                             label=None if args.guidance is None else "cycle")
        quality = judge_file(samples, data)
        fractions = quality["class_fractions"]
        report["datasets"][data] = {**quality, "sampling_seconds": run["seconds"],
                                    "classes_within_5_15_percent": all(0.05 <= f <= 0.15 for f in fractions),
                                    "confidence_at_least_0_9": quality["confidence"] >= 0.9}
        if args.guidance is not None:
            report["datasets"][data]["label_accuracy"] = label_accuracy(samples, data, models["model"].num_classes)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
