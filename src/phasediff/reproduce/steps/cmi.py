"""Stage "cmi": the CMI heatmap I_t(A:C|B_r) on the paper's grid, with its Markov lengths, peak and window.

The estimator is a named profile (`PROFILES`); ``ESTIMATOR`` picks the profile of each mode, and ``--cmi-estimator``
overrides it: switching the estimator is one setting. `views.cmi.PROFILE_TEXT` holds each profile's label and the
caveat that README's estimator table states for it, which the report prints beside the numbers. The neural
profiles read the committed estimator networks under the checkpoints root (`info.neural.committed_root`'s layout,
DATA/cmi/) before training any, and train the rest into DIR/cache/neural, where a rerun finds them; the quick mode
takes the validated profile where the dataset has committed networks, the quick amortised one elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from phasediff.errors import PhasediffError
from phasediff.reproduce.stages import Context, DatasetPlan, Options, Stage
from phasediff.reproduce.views.cmi import QUESTION, TITLE

T_GRID = [round(0.1 * i, 1) for i in range(11)]
R_GRID = list(range(1, 13))
DELTA = 0.005
# What each estimator profile computes (its label and caveat, for the page: views.cmi.PROFILE_TEXT).
PROFILES = {
    "neural-amortised-quick": {"estimator": "neural", "epochs": 2.0, "test": 3000, "val": 1000, "specialise": 0,
                               "chain": False, "precision": "fp32"},
    "neural-amortised": {"estimator": "neural", "epochs": 4.0, "test": 10000, "val": 2000, "specialise": 0,
                         "chain": False, "precision": "fp32"},
    "neural-validated": {"estimator": "neural", "epochs": 4.0, "test": 10000, "val": 2000, "specialise": 5000,
                         "chain": True, "precision": "auto"},
    "gaussian": {"estimator": "gaussian", "ridge": 1e-4},
}
# the one setting to switch; quick: the validated profile where committed networks serve it (`has_committed`)
ESTIMATOR = {"quick": "neural-amortised-quick", "full": "neural-validated"}
PROFILE_KEYS = ("epochs", "test", "val", "specialise", "chain", "precision", "ridge")


def has_committed(root: Path, dataset: str) -> bool:
    """Whether the checkpoints root holds committed estimator networks of the dataset (root/DATASET/cmi/)."""
    return any((Path(root) / dataset / "cmi").glob("*.safetensors"))


def plan(dataset: DatasetPlan, options: Options, folder: Path) -> Stage:
    from phasediff.precision import resolve_precision

    from phasediff.reproduce.stages import checkpoints_root

    quick = "neural-validated" if has_committed(checkpoints_root(options), dataset.folder) else ESTIMATOR["quick"]
    name = options.cmi_estimator or (quick if options.quick else ESTIMATOR[options.mode])
    if name not in PROFILES:
        raise PhasediffError(f"unknown CMI estimator profile {name!r} (choose from {', '.join(PROFILES)})")
    settings = dataset.settings_for("cmi", {"spec": dataset.cmi_spec, "n": None, "t": T_GRID, "r": R_GRID,
                                            "delta": DELTA}, options.quick)
    profile = {**PROFILES[name], **{k: settings.pop(k) for k in PROFILE_KEYS if k in settings}}
    if profile["estimator"] != "neural":
        profile = {k: v for k, v in profile.items() if k not in PROFILE_KEYS or k in PROFILES[name]}
    if "precision" in profile:
        profile["precision"] = resolve_precision(profile["precision"], options.device.split(":")[0])
    settings.update(estimator=name, profile=profile)
    return Stage("cmi", TITLE, QUESTION, settings, code=("phasediff.info.cmi", "phasediff.info.neural",
                                                         "phasediff.info.markov", "phasediff.report.runs"))


def run(stage: Stage, ctx: Context, work: Path) -> dict:
    from phasediff.data.registry import load_dataset
    from phasediff.info.cmi import measure_cmi
    from phasediff.report.runs import write_cmi_run

    s, p = stage.settings, stage.settings["profile"]
    data = load_dataset(s["spec"], n=s["n"], seed=s["seed"])
    neural = None
    if p["estimator"] == "neural":
        from phasediff.info.neural import settings_with
        from phasediff.reproduce.stages import checkpoints_root

        neural = settings_with(epochs=p["epochs"], test=p["test"], val=p["val"], specialise=p["specialise"] or None,
                               specialise_chain=p["chain"] or None, precision=p["precision"], cache=ctx.cache / "neural",
                               committed=checkpoints_root(ctx.options), device=s["device"])
    result = measure_cmi(data, s["t"], s["r"], p["estimator"], ridge=p.get("ridge", 1e-4), seed=s["seed"],
                         neural=neural)
    result.analyse(delta=s["delta"], seed=s["seed"])
    write_cmi_run(work / "cmi", result, {"spec": s["spec"], "estimator": p["estimator"], "profile": s["estimator"],
                                         "t": s["t"], "r": s["r"], "seed": s["seed"], "delta": s["delta"]})
    return {"cmi": result.to_dict(), "files": ["cmi/results.json", "cmi/arrays.npz", "cmi/heatmap.png",
                                               "cmi/cmi_vs_r.png", "cmi/markov_length.png", "cmi/log.txt"]}


def workload(stage: Stage) -> dict:
    """Training steps and held-out evaluations (image x t) of the neural estimator; nothing for the others. Links
    are counted at every t < 1 whose estimates are not lower bounds (`needless_links` may skip more: an upper
    estimate), each evaluated twice (the amortised network first)."""
    s, p = stage.settings, stage.settings["profile"]
    if p["estimator"] != "neural":
        return {}
    from phasediff.data.registry import load_dataset
    from phasediff.info.neural import lower_bound_times

    data = load_dataset(s["spec"], n=s["n"], seed=s["seed"])
    n = len(data)
    test, val = min(p["test"], n // 5), min(p["val"], n // 10)
    bounds = lower_bound_times(s["t"], float(data.images.std()), specialised=True)
    links = sum(t < 1 and not bound for t, bound in zip(s["t"], bounds)) if p["specialise"] else 0
    steps = p["epochs"] * max(1, (n - test - val) // 128) + p["specialise"] * links
    return {"cmi": {"steps": steps, "evaluations": (test + val) * (len(s["t"]) + links)}}
