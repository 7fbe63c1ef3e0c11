"""The stages of ``phasediff reproduce``: what each one asks, what it depends on, and the key of its inputs.

A `Stage` is plain data: a name, the question it answers, its settings, the checkpoints it reads, the stages
whose results it uses, and the step module that runs it (``phasediff.reproduce.steps.NAME``, with
``run(stage, ctx, work) -> dict`` and ``present(stage, record, ctx) -> dict``). A stage that the dataset cannot
serve carries a ``skip`` reason instead of running.

The cache key of a stage is the SHA-256 of a canonical JSON (sorted keys, no whitespace) of its inputs:

- the data: the spec and, for a named dataset, a SHA-256 of its train and test arrays (a synthetic model's
  draws follow from its spec, the seed and the code);
- the checkpoints, by the ``weights_sha256`` of their sidecars (`denoisers.load` checks the weights against it);
- the settings (which hold the seed, the device and the resolved precision);
- the keys of the stages it depends on;
- the code: ``phasediff.__version__`` and a SHA-256 of the source of the step module and of the library modules
  it calls (``code``).

`build_stages` turns a `DatasetPlan` and `Options` into the ordered list of stages of one dataset.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from phasediff import __version__
from phasediff.errors import PhasediffError

STEP_PACKAGE = "phasediff.reproduce.steps"
VIEW_PACKAGE = "phasediff.reproduce.views"
STAGE_ORDER = ("data", "cmi", "diagram", "hybrid", "concurrence", "phases")
KEY_LENGTH = 12  # hex digits of the key in a stage folder's name


@dataclass(frozen=True)
class DatasetPlan:
    """One dataset the reproduction serves: its spec for the denoisers (``spec``) and for the CMI (``cmi_spec``:
    MNIST is cropped to 27 x 27 as in the paper, so that a centre pixel exists), the folder of its checkpoints
    under the checkpoints root, whether it is a lattice model (judged by physical observables, with a family of
    temperatures for the phases stage), and per-stage settings that replace the mode's defaults."""

    name: str
    title: str
    spec: str
    cmi_spec: str
    folder: str
    prefix: str = ""  # of the checkpoint names in the folder: PREFIX + "global", PREFIX + "local-r3"
    lattice: bool = False
    family: dict | None = None  # lattice: {"name": "ising", "parameter": "T", "fixed": "L=32", "values": [...],
    #                                       optionally "quick_values": [...], the members of the quick mode}
    overrides: dict = field(default_factory=dict)  # {stage name: {setting: value}} in both modes
    quick_overrides: dict = field(default_factory=dict)  # {stage name: {setting: value}} in --quick only

    def settings_for(self, stage: str, defaults: dict, quick: bool) -> dict:
        out = {**defaults, **self.overrides.get(stage, {})}
        return {**out, **self.quick_overrides.get(stage, {})} if quick else out


DATASETS = {
    "mnist": DatasetPlan("mnist", "MNIST", "mnist", "mnist:crop=27", "mnist"),
    "fashion-mnist": DatasetPlan("fashion-mnist", "Fashion-MNIST", "fashion-mnist", "fashion-mnist", "fashion-mnist"),
    "ising": DatasetPlan(
        "ising", "2D Ising model, L = 32, T = 3.0", "ising:L=32,T=3.0", "ising:L=32,T=3.0", "ising",
        prefix="L32-T3.0-", lattice=True,
        # the temperatures with committed networks (docs/phases-study.md); the quick mode runs three of them
        family={"name": "ising", "parameter": "T", "fixed": "L=32", "values": [1.8, 2.269, 2.75, 3.0, 3.5, 4.0, 5.0],
                "quick_values": [1.8, 3.0, 4.0]},
        # the neural CMI estimator needs more passes over the smaller synthetic draw
        quick_overrides={"data": {"n": 2000}, "cmi": {"n": 5000, "epochs": 8}},
        # radii without a committed network at T = 3.0 are listed as missing
        overrides={"data": {"n": 10000}, "diagram": {"radii": [1, 2, 4]}, "concurrence": {"radii": [2]}}),
}


@dataclass(frozen=True)
class Options:
    """How to reproduce: quick (committed checkpoints, small sample counts) or full, the seed, the device, where
    the checkpoints live, and an optional CMI estimator profile that replaces the mode's default."""

    quick: bool = False
    seed: int = 0
    device: str = "cpu"
    checkpoints: Path | None = None
    cmi_estimator: str | None = None

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"


@dataclass(frozen=True)
class Stage:
    """One stage: see the module's docstring. ``checkpoints`` maps a role ("global", "local-r3", "judge") to a
    checkpoint path."""

    name: str
    title: str
    question: str
    settings: dict
    checkpoints: dict = field(default_factory=dict)
    depends: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    skip: str | None = None

    @property
    def module(self) -> str:
        return f"{STEP_PACKAGE}.{self.name}"

    def step(self):
        """The step module: plan, run, workload (its source is part of the key)."""
        return importlib.import_module(self.module)

    def view(self):
        """The view module: title, question, command, present (not part of the key)."""
        return importlib.import_module(f"{VIEW_PACKAGE}.{self.name}")

    @property
    def command(self) -> str:
        """The ``phasediff`` command line that computes the same thing by hand."""
        return self.view().command(self)

    def skipped(self, reason: str) -> Stage:
        return replace(self, skip=reason)


# --- the key ---------------------------------------------------------------------------------------------------

def canonical_json(value) -> str:
    """Sorted keys, no whitespace, paths as strings: the same inputs always give the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, allow_nan=False)


def source_sha256(module: str) -> str:
    """SHA-256 of the source file of a module (found without importing it)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise PhasediffError(f"cannot find the source of {module}")
    return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()


def checkpoint_sha256(path: Path) -> str:
    """The ``weights_sha256`` recorded in a checkpoint's sidecar."""
    from phasediff.denoisers.checkpoint import read_info

    return str(read_info(path)["weights_sha256"])


def key_inputs(stage: Stage, data: dict, depends: dict[str, str | None]) -> dict:
    """Everything the key of ``stage`` is the hash of (stored beside the results, so a key can be explained)."""
    return {
        "stage": stage.name,
        "data": data,
        "settings": stage.settings,
        "checkpoints": {role: checkpoint_sha256(path) for role, path in sorted(stage.checkpoints.items())},
        "depends": {name: depends.get(name) for name in stage.depends},
        "version": __version__,
        "code": {module: source_sha256(module) for module in (stage.module, *stage.code)},
    }


def stage_key(inputs: dict) -> str:
    return hashlib.sha256(canonical_json(inputs).encode()).hexdigest()


# --- the data's identity ---------------------------------------------------------------------------------------

def data_identity(spec: str) -> dict:
    """The spec and, for data read from disk (named datasets, files), the SHA-256 of the images and labels it
    is read from (all of both splits; crop= and n= are in the spec): the same spec served by another copy of
    the files gives another key. A synthetic model's draws follow from its spec, the seed and the code."""
    from phasediff.data.registry import MODELS, is_file_spec
    from phasediff.specs import parse_spec

    if is_file_spec(spec):
        return {"spec": spec, "sha256": _files_sha256(spec.split(":")[0])}
    name = parse_spec(spec)[0]
    return {"spec": spec, "sha256": None if name in MODELS else _named_sha256(name)}


@functools.lru_cache(maxsize=8)
def _named_sha256(name: str) -> str:
    from phasediff.data.registry import load_dataset

    digest = hashlib.sha256()
    for split in ("train", "test"):
        data = load_dataset(name, split=split)
        digest.update(split.encode())
        digest.update(data.images.tobytes())
        if data.labels is not None:
            digest.update(data.labels.tobytes())
    return digest.hexdigest()


def _files_sha256(path: str) -> str:
    """SHA-256 of a file, or of the names and bytes of the files in a folder."""
    path = Path(path)
    digest = hashlib.sha256()
    for item in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if item.is_file():
            digest.update(item.relative_to(path).as_posix().encode() if path.is_dir() else b"")
            digest.update(item.read_bytes())
    return digest.hexdigest()


# --- building the stages ---------------------------------------------------------------------------------------

def checkpoints_root(options: Options) -> Path:
    from phasediff.report.samples import CHECKPOINTS

    return Path(options.checkpoints) if options.checkpoints is not None else CHECKPOINTS


def find_checkpoint(folder: Path, name: str) -> Path | None:
    """``folder/name`` if both its weights and its sidecar are there."""
    path = Path(folder) / name  # names may hold dots (L32-T3.0-global): append the suffixes, never replace
    return path if all((path.parent / f"{path.name}{suffix}").is_file() for suffix in (".json", ".safetensors")) \
        else None


def local_and_global(dataset: DatasetPlan, folder: Path, settings: dict) -> dict[str, Path]:
    """{"local-rR": path, "global": path} of the committed checkpoints for ``settings["radii"]``; radii without
    one move from ``settings["radii"]`` to ``settings["missing"]`` (in place)."""
    found = {r: find_checkpoint(folder, f"{dataset.prefix}local-r{r}") for r in settings["radii"]}
    settings["missing"] = [r for r, path in found.items() if path is None]
    settings["radii"] = [r for r, path in found.items() if path is not None]
    checkpoints = {f"local-r{r}": found[r] for r in settings["radii"]}
    global_ = find_checkpoint(folder, f"{dataset.prefix}global")
    if global_ is not None:
        checkpoints["global"] = global_
    return checkpoints


def build_stages(plan: DatasetPlan, options: Options) -> list[Stage]:
    """The stages of ``plan`` in order; each step module's ``plan(dataset, options, folder)`` builds its stage
    (with a skip reason where the dataset cannot serve it)."""
    folder = checkpoints_root(options) / plan.folder
    stages = []
    for name in STAGE_ORDER:
        stage = importlib.import_module(f"{STEP_PACKAGE}.{name}").plan(plan, options, folder)
        stages.append(replace(stage, settings={**stage.settings, "seed": options.seed, "device": options.device}))
    return stages


@dataclass
class Context:
    """What a running stage may read: the dataset, the options, the output folder and the records of the stages
    before it in this run (``records[name]``: status, key, result)."""

    dataset: DatasetPlan
    options: Options
    out: Path
    records: dict = field(default_factory=dict)

    @property
    def cache(self) -> Path:
        """DIR/cache: networks that a stage trains and can reuse when it is run again (the neural estimator's)."""
        return Path(self.out) / "cache"

    def done(self, name: str) -> dict | None:
        record = self.records.get(name)
        return record if record is not None and record.get("status") == "done" else None

    def folder(self, name: str) -> Path | None:
        """The folder of the finished stage ``name`` in this run, None if it did not finish."""
        record = self.done(name)
        return None if record is None else Path(self.out) / "stages" / f"{name}-{record['key'][:KEY_LENGTH]}"

    def relative(self, name: str, *parts: str) -> str:
        """A path inside a finished stage's folder, relative to DIR (as the report links it)."""
        folder = self.folder(name)
        if folder is None:
            raise PhasediffError(f"stage {name} has not finished")
        return Path(folder.relative_to(self.out), *parts).as_posix()
