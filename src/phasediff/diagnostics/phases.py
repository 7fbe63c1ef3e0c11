"""Phases of a family of distributions: can local denoisers alone generate each member, and from which radius?

For each member of a family (one parameter varied: ``ising:L=32,T=1.8:3.5:0.3``, ``gmrf:L=16,kappa=0.1;0.5;2``,
``gmm2:L=16,mu=0.2:1:0.2``) and each radius r:

- all-local generation: n samples drawn with the radius-r denoiser alone from t = 1 to 0 (the ancestral sampler
  unless told otherwise), judged against fresh reference samples by the member's observables
  (`phasediff.observables`); r* is the smallest radius whose samples match. The global denoiser is judged the
  same way: it must match, or a local failure means nothing;
- the locality gap Delta(t, r) = E||D_r(x_t) - D_global(x_t)||^2 / pixels on the forward process;
- the CMI I_t(A:C|B_r) at the centre where the model has an exact one, with its Markov lengths xi(t);
- the correlation length of the data itself (second moment, from the reference samples).

Denoisers: the exact ones where the model has them (Wiener and local Wiener for Gaussian fields, which are the
best linear and so the best denoisers of Gaussian data; the exact mixture denoiser for ``gmm2``), trained
checkpoints otherwise (``models``: a folder of checkpoints whose sidecar ``data`` is the member's spec).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from phasediff.errors import PhasediffError
from phasediff.sampling import SAMPLERS
from phasediff.specs import parse_list, parse_spec, spec_key

FAMILIES = ("ising", "gmrf", "grf", "gmm2")


@dataclass(frozen=True)
class Family:
    """The member specs of a family and the parameter that varies."""

    name: str
    parameter: str
    values: tuple[float, ...]
    members: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Family:
        """'NAME:k=v,...,p=A:B:STEP' (or p=a;b;c): one parameter given as a range or a list."""
        name, params = parse_spec(text)
        if name not in FAMILIES:
            raise PhasediffError(f"phases: a family is one of {', '.join(FAMILIES)} with one parameter varied, "
                                 f"got {name!r}")
        varied = [key for key, value in params.items() if ":" in value or ";" in value]
        if len(varied) != 1:
            raise PhasediffError(f"phases: give exactly one parameter as a range A:B:STEP or a list a;b;c, got "
                                 f"{text!r}")
        key = varied[0]
        values = tuple(parse_list(params[key].replace(";", ","), float, f"values of {key}"))
        fixed = ",".join(f"{k}={v}" for k, v in params.items() if k != key)
        members = tuple(f"{name}:{fixed + ',' if fixed else ''}{key}={format(v, '.6g')}" for v in values)
        return cls(name, key, values, members)


def _ising_models(folder: Path | None) -> dict[tuple[str, int | None], Path]:
    """{(spec_key of the data, radius or None for global): checkpoint} of the checkpoints in ``folder``."""
    from phasediff.denoisers.checkpoint import read_info

    found = {}
    for sidecar in sorted(Path(folder).glob("*.json")) if folder else []:
        info = read_info(sidecar.with_suffix(""))
        kind = info.get("model_kind")
        if kind == "local":
            found[(spec_key(info["data"]), int(info["model"]["radius"]))] = sidecar.with_suffix("")
        elif kind == "global":
            found[(spec_key(info["data"]), None)] = sidecar.with_suffix("")
    return found


def denoisers(spec: str, model, radii: Sequence[int], models: Path | None = None) -> tuple[object, dict[int, object]]:
    """(the global denoiser, {r: the radius-r denoiser}) of a member and its exact ``model``; radii without a
    model are left out."""
    name = spec.split(":")[0]
    if name == "gmm2":
        from phasediff.denoisers.mixture2 import TwoComponentDenoiser

        return TwoComponentDenoiser.of(model), {r: TwoComponentDenoiser.of(model, r) for r in radii}
    if name in ("gmrf", "grf"):
        from phasediff.denoisers.analytic import LocalWienerDenoiser, WienerDenoiser

        mean = np.zeros(len(model.covariance))
        return (WienerDenoiser(mean, model.covariance, model.shape),
                {r: LocalWienerDenoiser(mean, model.covariance, model.shape, r) for r in radii})
    from phasediff.denoisers.checkpoint import load

    found, key = _ising_models(models), spec_key(spec)
    if (key, None) not in found:
        raise PhasediffError(f"no global checkpoint for {spec} in {models} (sidecar data must be {spec!r})")
    return load(found[(key, None)]), {r: load(found[(key, r)]) for r in radii if (key, r) in found}


@dataclass
class MemberResult:
    """One member of the family: verdicts per radius, r*, the global model's verdict, gap, CMI, xi."""

    spec: str
    value: float
    radii: list[int]
    matches: dict[str, bool]
    observables: dict[str, dict]
    r_star: int | None
    global_matches: bool
    data_correlation_length: dict
    gap: dict
    cmi: dict | None
    seconds: float
    missing: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


FROBENIUS_MARGIN = 1.25  # a Gaussian member matches when its covariance error is within 1.25x the exact floor


def judge(spec: str, model, samples: np.ndarray, reference: np.ndarray, seed: int = 0) -> tuple[bool, dict]:
    """(whether the samples match the reference, the observables) for one member and its exact ``model``.

    Ising: `observables.matches` (energy per spin, the |m| distribution and C(d) up to L/4). Gaussian fields: relative
    Frobenius error of the covariance within FROBENIUS_MARGIN of that of as many exact samples. gmm2: W1 of the
    distributions of |mean pixel| <= 0.05 (the sign commitment of the whole image).
    """
    from phasediff import observables

    name = spec.split(":")[0]
    if name == "ising":
        report = observables.ising_observables(samples, reference, seed=seed)
        return observables.matches(report), report.to_dict()
    if name in ("gmrf", "grf"):
        report = observables.gaussian_observables(samples, model.covariance, reference, seed=seed)
        ok = report.relative_frobenius.low <= FROBENIUS_MARGIN * report.relative_frobenius_floor
        return bool(ok), report.to_dict()
    m, m_ref = np.abs(samples.mean(axis=(1, 2, 3))), np.abs(reference.mean(axis=(1, 2, 3)))
    w1 = float(observables.wasserstein1(m, m_ref))
    return w1 <= observables.W1_TOLERANCE, {"abs_mean": float(m.mean()), "abs_mean_reference": float(m_ref.mean()),
                                            "w1": w1}


def _correlation_length(spec: str, model, reference: np.ndarray, global_observables: dict) -> dict:
    """The data's correlation length. Ising above T_c: the exact exponential length of the infinite lattice
    (`data.ising.exact_correlation_length`); at or below T_c, xi_2 of the reference, already measured with its
    interval by the global model's judge. Otherwise xi_2 (`observables.correlation_length`): for a Gaussian field from its exact covariance,
    S(k) = (1/N) sum_ij S_ij cos(k.(x_i - x_j)); for gmm2 from the reference samples,
    S(k) = <|sum_x x_x exp(-i k.x)|^2> / N (k_min averaged over the two axes)."""
    from phasediff.observables import correlation_length

    if spec.startswith("ising"):
        from phasediff.data.ising import exact_correlation_length

        exact = exact_correlation_length(model.T)
        if exact is None:
            return {**global_observables["correlation_length_reference"], "kind": "xi_2 of the reference samples"}
        return {"value": exact, "low": exact, "high": exact, "kind": "exact (infinite lattice, Onsager)"}
    L = reference.shape[-1]
    if spec.startswith(("gmrf", "grf")):
        ys, xs = np.divmod(np.arange(L * L), L)
        k = 2 * np.pi / L
        structure = lambda phase: float((model.covariance * np.cos(phase[:, None] - phase[None, :])).sum()) / L**2  # noqa: E731
        zero, kmin = structure(0 * ys), (structure(k * ys) + structure(k * xs)) / 2
    else:
        spectrum = (np.abs(np.fft.fft2(reference[:, 0].astype(np.float64))) ** 2).mean(axis=0) / L**2
        zero, kmin = spectrum[0, 0], (spectrum[1, 0] + spectrum[0, 1]) / 2
    return {"value": float(correlation_length(zero, kmin, L)), "low": None, "high": None, "kind": "xi_2"}


def run_member(spec: str, value: float, radii: Sequence[int], n: int = 1000, steps: int = 32, seed: int = 0,
               models: Path | None = None, gap_images: int = 256, ts: Sequence[float] | None = None,
               method: str = "ancestral", cmi: str = "auto") -> MemberResult:
    """All-local generation at each radius, the global model's own verdict, the gap, the exact CMI (if any)."""
    import time

    from phasediff.data.registry import load_dataset, load_model
    from phasediff.diagnostics.gap import forward_gap
    from phasediff.sampling import sample

    start = time.perf_counter()
    model = load_model(spec)
    global_, local = denoisers(spec, model, radii, models)
    reference = load_dataset(spec, split="test", n=n, seed=seed).images
    shape = tuple(reference.shape[1:])
    draw = lambda d: sample(d, n, shape, steps=steps, method=method, seed=seed).numpy()  # noqa: E731
    with torch.no_grad():
        global_ok, global_obs = judge(spec, model, draw(global_), reference, seed)
        verdicts = {r: judge(spec, model, draw(d), reference, seed) for r, d in local.items()}
        gap = forward_gap(local, global_, torch.from_numpy(reference[:gap_images]), steps=steps, seed=seed) \
            if local else None
    matched = [r for r in sorted(verdicts) if verdicts[r][0]]
    return MemberResult(
        spec=spec, value=value, radii=sorted(local), matches={str(r): v[0] for r, v in verdicts.items()},
        observables={"global": global_obs, **{str(r): v[1] for r, v in verdicts.items()}},
        r_star=matched[0] if matched else None, global_matches=global_ok,
        data_correlation_length=_correlation_length(spec, model, reference, global_obs),
        gap=None if gap is None else gap.to_dict(), cmi=_path_cmi(model, spec, radii, ts, seed, cmi),
        seconds=time.perf_counter() - start, missing=[r for r in radii if r not in local])


def _path_cmi(model, spec: str, radii: Sequence[int], ts: Sequence[float] | None, seed: int,
              estimator: str) -> dict | None:
    """The CMI at the centre over (t, r) with its Markov lengths: exact where the model has one, the neural
    estimator (amortised network, `info.neural`) on Ising; None with ``estimator`` "none"."""
    from phasediff.data.registry import load_dataset
    from phasediff.info.cmi import measure_cmi

    if estimator == "none":
        return None
    rs = [r for r in radii if 2 * r + 1 < model.shape[-1]]
    ts = list(np.round(np.linspace(0.05, 0.95, 19), 6)) if ts is None else list(ts)
    if spec.startswith("ising"):
        result = measure_cmi(load_dataset(spec, seed=seed), ts, rs, "neural", seed=seed)
    else:
        result = measure_cmi(model, ts, rs, "exact", seed=seed)
    result.analyse(seed=seed)
    return {"t": result.t, "r": result.r, "estimator": result.estimator, "cmi": np.asarray(result.cmi).tolist(),
            "stderr": None if result.stderr is None else np.asarray(result.stderr).tolist(),
            "analysis": result.analysis}


@dataclass(frozen=True)
class PhasesOptions:
    """What ``phasediff phases`` measures: the radii, samples per model, sampler and its steps, the models' folder.

    The default sampler is the stochastic one: with trained Ising networks at 32 steps it reproduces the energy
    per spin about 2.5x more closely than the probability-flow ODE (docs/phases-study.md)."""

    radii: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
    n: int = 1000
    steps: int = 32
    seed: int = 0
    models: str | None = None
    gap_images: int = 256
    method: str = "ancestral"
    cmi: str = "auto"

    def check(self) -> None:
        if not self.radii or min(self.radii) < 1:
            raise PhasediffError(f"radii must be integers >= 1, got {list(self.radii)}")
        if self.cmi not in ("auto", "none"):
            raise PhasediffError(f"cmi must be auto or none, got {self.cmi!r}")
        if self.method not in SAMPLERS:
            raise PhasediffError(f"unknown sampler {self.method!r} (choose from {', '.join(SAMPLERS)})")
        for name in ("n", "steps", "gap_images"):
            if getattr(self, name) < 1:
                raise PhasediffError(f"{name} must be >= 1, got {getattr(self, name)}")


def member_file(spec: str) -> str:
    """The file name of a member's result in a run folder: its spec with every non-name character replaced."""
    return "".join(c if c.isalnum() or c in "=.-" else "_" for c in spec) + ".json"


def member_checkpoints(spec: str, radii: Sequence[int], models: Path | None) -> dict[str, str]:
    """{"global" or "r=R": weights_sha256} of the checkpoints an Ising member uses ({} for exact denoisers)."""
    from phasediff.denoisers.checkpoint import read_info

    if not spec.startswith("ising"):
        return {}
    found, key = _ising_models(models), spec_key(spec)
    chosen = {"global": found.get((key, None)), **{f"r={r}": found.get((key, r)) for r in radii}}
    return {label: str(read_info(path)["weights_sha256"]) for label, path in chosen.items() if path is not None}


def run_phases(family: Family, options: PhasesOptions, out: Path, force: bool = False) -> dict:
    """Every member into ``out/members/SPEC.json`` as it finishes, then results.json, table.md,
    phase_diagram.png and r_star.png.

    A rerun with the same settings reuses every finished member whose checkpoints (by their weights' sha256)
    are unchanged, whatever family it belongs to: adding a temperature, or a checkpoint at one temperature,
    measures only what is new. Other settings need ``force``."""
    from phasediff.progress import progress
    from phasediff.rundir import output_lock, save_json

    options.check()
    out = Path(out)
    settings = json.loads(json.dumps({"family": family.name, "parameter": family.parameter, **asdict(options)}))
    models = Path(options.models) if options.models else None
    with output_lock(out):
        replaced = _prepare(out, settings, force)
        members = []
        for spec, value in progress(list(zip(family.members, family.values)), desc="phases"):
            done, checkpoints = out / "members" / member_file(spec), member_checkpoints(spec, options.radii, models)
            member = json.loads(done.read_text()) if done.exists() else None
            if member is None or member.get("checkpoints") != checkpoints:
                result = run_member(spec, value, options.radii, options.n, options.steps, options.seed, models,
                                    options.gap_images, method=options.method, cmi=options.cmi)
                member = json.loads(json.dumps({**result.to_dict(), "checkpoints": checkpoints}))
                save_json(done, member)
            members.append(member)
        summary = {"settings": {**settings, "members": list(family.members)}, "members": members}
        from phasediff.report.phase_figures import phases_figure, r_star_figure

        phases_figure(members, family.parameter, out / "phase_diagram.png")
        r_star_figure(members, family.parameter, max(options.radii), out / "r_star.png")
        (out / "table.md").write_text(phases_table(members, family.parameter) + "\n")
        save_json(out / "results.json", summary)
        if replaced is not None:
            shutil.rmtree(replaced)
    return summary


def _prepare(out: Path, settings: dict, force: bool) -> Path | None:
    """A new run folder, or the same settings' unfinished one. With ``force`` an existing one is renamed aside
    (returned, to be deleted once the new run is whole)."""
    import tempfile

    from phasediff.rundir import save_json

    config, replaced = out / "config.json", None
    if out.exists() and force:
        replaced = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, replaced)
    if out.exists():
        if not config.exists() or json.loads(config.read_text()) != settings:
            raise PhasediffError(f"{out} holds another run (other settings); choose another --out or pass --force")
    else:
        (out / "members").mkdir(parents=True)
        save_json(config, settings)
    return replaced


HEADLINES = {"ising": (("energy difference", "energy_difference"), ("W1 of |m|", "w1_abs_magnetisation"),
                       ("max |C(d) - C_ref(d)|", "correlation_difference")),
             "gmrf": (("relative Frobenius error", "relative_frobenius"),),
             "grf": (("relative Frobenius error", "relative_frobenius"),),
             "gmm2": (("W1 of |mean pixel|", "w1"),)}


def _interval(entry) -> str:
    """'v [lo, hi]' of an interval dict, 'v' of a number."""
    if isinstance(entry, dict):
        return f"{entry['value']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"
    return f"{entry:.3f}"


def phases_table(members: Sequence[dict], parameter: str) -> str:
    """Two Markdown tables: per member its data's correlation length, the global model's verdict, the all-local
    verdict per radius and r*; then per model the numbers behind each verdict with their 95% intervals."""
    radii = sorted({int(r) for m in members for r in m["matches"]})
    lines = [f"| {parameter} | xi (data) | global | " + " | ".join(f"r = {r}" for r in radii) + " | r* |",
             "|---" * (len(radii) + 4) + "|"]
    for m in members:
        xi = m["data_correlation_length"]
        span = ("" if xi["low"] is None else " (exact)" if xi["low"] == xi["high"]
                else f" [{xi['low']:.2f}, {xi['high']:.2f}]")
        cells = ["match" if m["matches"].get(str(r)) else ("not measured" if str(r) not in m["matches"] else "fails")
                 for r in radii]
        lines.append(f"| {m['value']:g} | {xi['value']:.2f}{span} | {'match' if m['global_matches'] else 'FAILS'} | "
                     + " | ".join(cells) + f" | {_r_star_text(m)} |")
    headlines = HEADLINES[members[0]["spec"].split(":")[0]] if members else ()
    lines += ["", f"| {parameter} | model | " + " | ".join(name for name, _ in headlines) + " | verdict |",
              "|---" * (len(headlines) + 3) + "|"]
    for m in members:
        for model, observed in m["observables"].items():
            verdict = m["global_matches"] if model == "global" else m["matches"][model]
            lines.append(f"| {m['value']:g} | {'global' if model == 'global' else 'local r = ' + model} | "
                         + " | ".join(_interval(observed[key]) for _, key in headlines)
                         + f" | {'match' if verdict else 'fails'} |")
    return "\n".join(lines)


def r_star_bracket(member: dict) -> tuple[int, int | None]:
    """(largest measured radius below r* that fails, or 0; r*, None where no measured radius matches): the
    threshold radius lies in (low, r*]."""
    failing = [int(r) for r, ok in member["matches"].items() if not ok
               and (member["r_star"] is None or int(r) < member["r_star"])]
    return max(failing, default=0), member["r_star"]


def _r_star_text(member: dict) -> str:
    low, star = r_star_bracket(member)
    if star is None:
        return f"> {low}" if low else "no local model"
    return f"{star}" + (f" (r = {low} fails)" if low == star - 1 else f" (in ({low}, {star}])")
