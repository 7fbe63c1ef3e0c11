"""The "neural" estimator: I_t(A:C|B_r) as a difference of held-out cross-entropies of one amortised network.

    I_t(A:C|B_r) = H_t(A|B_r) - H_t(A|B_r C),   H_t(A|R) = E[-log q(x_t,A | x_t,R)],

with q(x_t,A | context) the learned posterior of x_0,A convolved with the known noise (neural_density) and
the chain rule over the elements of A. One network (neural_net.RingNet) gives q_r for every radius r and t
at once. A model of A given a subset of B_r is also a model given B_r, so H_t(A|B_r) is estimated by the
cross-entropy of q_s with s = argmin_{s <= r} of the validation cross-entropy (and H_t(A|BC) by the best of
all radii): the estimated entropies never increase with r, and a far field that the network fits worse than
it ignores does not bias the CMI. The images are split into train / validation / test; the choice uses the
validation images only, and both cross-entropies are evaluated on the same test images and noise draws
(common random numbers across t too), so the CMI is the mean of per-image differences d_i:
stderr = std(d) / sqrt(n), and a percentile-bootstrap 95% interval over images. A point is flagged below
the resolution when it is smaller than max(2 stderr, RESOLUTION_FLOOR); its reported interval is widened to
[min(low, 0), max(high, resolution)], an upper limit rather than a measurement.

With ``specialise`` steps (TrainConfig), both cross-entropies at each t come instead from a copy of the
network trained further at that t alone: dearer (steps per t), and closer to the exact values where the
amortised network is still short of them (benchmarks/neural_cmi_validation.py, docs/cmi-study.md). With
``specialise_chain`` each copy starts from the one at the next larger t instead of the amortised network,
unless it then validates no better at its t than the amortised network itself (the chain has learnt to
ignore context that matters at lower t), or it memorises the training images (its validation cross-entropy
ends more than MEMORISATION_GAP above its training loss, as at t <= 0.1 on 48,000 MNIST images). Then a copy
is also trained from the amortised network, and it replaces the chained one unless it validates worse.

Specialisation is spent only where it can change what is reported (unless ``specialise_everywhere``): not at
t = 1 (pure noise), not where the estimates are lower bounds anyway (`lower_bound_times`: the amortised
network's bound serves), and not where the amortised network puts every radius so far below the resolution
that even AMORTISED_SHORTFALL times its upper reading, max_r (mean + 2 stderr) of I_t(A:C|B_r), stays under
RESOLUTION_FLOOR (the amortised network reads at least 43% of the exact CMI in the validation runs).

Under ``torchrun`` the amortised network and the links of the chain (sequential in t) train data-parallel on
every process (neural_train), while independent links (no chain, or no specialisation) split the t grid: process k
takes the t indices k, k + world, ..., and the cross-entropies are gathered on every process. A network in the cache
is read by the first process of those that train it, which sends it to the others, and written by that process
alone.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from phasediff.data.dataset import Dataset
from phasediff.errors import PhasediffError
from phasediff.info.neural_density import CategoricalHead, MixtureHead, hermite_rule
from phasediff.info.neural_net import Geometry, NetConfig, RingNet
from phasediff.info.neural_train import (ALONE, Standardiser, TrainConfig, gathered_objects, image_nll, shared, train,
                                         validation_loss_at, world)
from phasediff.progress import progress
from phasediff.rundir import write_atomic

HEADS = ("auto", "categorical", "mixture")
MAX_LEVELS = 256
EVAL_NODES = 24
# the validated mode (benchmarks/neural_cmi_validation.py): the amortised network's epochs, then steps per t, chained
VALIDATED_EPOCHS = 4.0
VALIDATED_SPECIALISE = 5000
RESOLUTION_FLOOR = 0.005  # nats: the absolute tolerance of benchmarks/neural_cmi_validation.py
# Where the clean image's spread exceeds the noise, (1 - t) sigma / t > SHARP_SNR (sigma: the pixels' std), the
# validated mode reads 49-66% of the exact CMI at r <= 2 on the MNIST-fitted mixture at 60,000 images (t = 0.1, 0.2;
# 84-98% at t >= 0.3: docs/data/validation-gmm-chain5000-n60000.json): there its estimates are lower bounds.
SHARP_SNR = 1.0
AMORTISED_SHORTFALL = 2.5  # exact / amortised estimate, at most: 1 / 0.43, the lowest ratio measured, rounded up
MEMORISATION_GAP = 0.02  # nats of validation cross-entropy above the training loss at a link's best step
TEST_NOISE_SEED = 1  # offset from the run's seed of the generator of the test images' noise draws
CACHE_VERSION = 2
# not in the amortised network's cache key: how long, and at which precision, it trained
UNKEYED_TRAINING = ("budget", "specialise", "specialise_lr", "specialise_chain", "precision")


@dataclass(frozen=True)
class NeuralSettings:
    """What the estimator does besides the network and the optimiser: head, splits, noise draws, cache."""

    head: str = "auto"
    components: int = 8
    test: int = 10_000
    val: int = 2_000
    draws: int = 1
    bootstrap: int = 1000
    net: NetConfig = field(default_factory=NetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cache: Path | None = None
    device: str = "cpu"
    committed: Path | None = None  # committed networks (`committed_root`), read before training; None: never
    specialise_everywhere: bool = False  # also at lower-bound t and where the amortised CMI is far below resolution


def choose_head(images: np.ndarray, head: str, components: int):
    """8-bit data (every value a multiple of 1/255 in [0, 1]) -> categorical over k/255; data with at most
    MAX_LEVELS distinct values -> categorical over those; anything else -> a Gaussian mixture."""
    if head not in HEADS:
        raise PhasediffError(f"unknown head {head!r} (choose from {', '.join(HEADS)})")
    if head == "mixture":
        return MixtureHead(components)
    scaled = images * 255.0
    if images.min() >= 0 and images.max() <= 1 and np.abs(scaled - np.round(scaled)).max() < 1e-3:
        return CategoricalHead(np.arange(256) / 255.0)
    levels = np.unique(images)
    if len(levels) <= MAX_LEVELS:
        return CategoricalHead(levels)
    if head == "categorical":
        raise PhasediffError(f"the categorical head needs at most {MAX_LEVELS} distinct values, the data has more")
    return MixtureHead(components)


def split_indices(n: int, settings: NeuralSettings, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices of a seeded permutation: test min(settings.test, n / 5), val min(settings.val,
    n / 10), the rest to train."""
    n_test, n_val = min(settings.test, n // 5), min(settings.val, n // 10)
    if n - n_test - n_val < 100 or n_val < 20:
        raise PhasediffError(f"the neural estimator needs at least 200 images, got {n}")
    order = np.random.default_rng([seed, 17]).permutation(n)
    return order[n_test + n_val:], order[n_test: n_test + n_val], order[:n_test]


def _cache_key(images: np.ndarray, geometry: Geometry, head, settings: NeuralSettings, seed: int) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    spec = {"version": CACHE_VERSION, "shape": list(images.shape), "site": list(geometry.site), "patch": geometry.patch,
            "head": head.kind, "levels": len(head.levels) if head.kind == "categorical" else head.k,
            "split": [settings.test, settings.val], "net": settings.net.to_dict(),
            "train": {k: v for k, v in settings.train.to_dict().items() if k not in UNKEYED_TRAINING},
            "seed": seed}
    digest.update(json.dumps(spec, sort_keys=True).encode())
    return digest.hexdigest()[:24]


def _files(path: Path) -> tuple[Path, Path]:
    """The weights and sidecar of a cached network (names may hold dots: "t0.2-...-lr0.001")."""
    return path.parent / f"{path.name}.safetensors", path.parent / f"{path.name}.json"


def _load_cached(path: Path, net: RingNet) -> dict | None:
    """The sidecar of the cached network ``path``, its weights loaded into ``net``; None if not cached. A damaged
    entry (unreadable weights or JSON, weights of another shape) is a miss with a warning on stderr: ``net``
    stays untouched, and the retrained network overwrites the entry."""
    import sys

    from safetensors.torch import load_file

    weights, sidecar = _files(path)
    if not (weights.exists() and sidecar.exists()):
        return None
    expected = net.state_dict()
    try:
        state, meta = load_file(weights), json.loads(sidecar.read_text())
        intact = (isinstance(meta, dict) and {"cached", "history"} <= meta.keys() and state.keys() == expected.keys()
                  and all(state[k].shape == v.shape for k, v in expected.items()))
    except Exception:  # noqa: BLE001 - safetensors and json fail in many ways on a damaged file
        intact = False
    if not intact:
        print(f"phasediff: warning: the cached network {path} is damaged; training it again", file=sys.stderr)
        return None
    net.load_state_dict(state)
    return meta


def committed_root() -> Path:
    """The project's committed networks: checkpoints/DATA/cmi/, files named as in the cache."""
    from phasediff.report.samples import CHECKPOINTS

    return CHECKPOINTS


def _committed(root: Path | None, stem: str, any_chain: bool = False) -> list[Path]:
    """Committed networks named ``stem`` (with ``any_chain``: also ``stem``-after..., a link reached through any
    chain) in any folder checkpoints/*/cmi/ under ``root``."""
    if root is None:
        return []
    patterns = [f"*/cmi/{stem}.safetensors"] + ([f"*/cmi/{stem}-after*.safetensors"] if any_chain else [])
    return sorted(path.with_suffix("") for pattern in patterns for path in Path(root).glob(pattern))


def _save_cached(path: Path, net: RingNet, meta: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    weights, sidecar = _files(path)
    write_atomic(weights, lambda tmp: save_file(state, str(tmp)))
    write_atomic(sidecar, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))


def _stored(net: RingNet, path: Path | None, committed: list[Path], team: tuple[int, int]) -> dict | None:
    """The sidecar of the cached network ``path`` or else of the first of ``committed`` that loads, its weights loaded
    into ``net``; None if none does. The team's first member reads, and sends its answer and weights to the others."""
    meta = None
    if team[0] == 0:
        meta = None if path is None else _load_cached(path, net)
        for stem in committed:
            if meta is None:
                meta = _load_cached(stem, net)
                meta = None if meta is None else {**meta, "committed": str(stem)}
    meta, state = shared((meta, None if meta is None else net.state_dict()), team)
    if meta is not None and team[0]:
        net.load_state_dict(state)
    return meta


def fit_network(data: Dataset, geometry: Geometry, settings: NeuralSettings, seed: int = 0):
    """(net, head, standardiser, (train, validation, test) images, meta): trained on the train split, or read
    from the cache."""
    images = data.images
    head = choose_head(images, settings.head, settings.components)
    train_idx, val_idx, test_idx = split_indices(len(images), settings, seed)
    x = torch.as_tensor(images)
    standardise = Standardiser(float(images[train_idx].mean()), float(images[train_idx].std()) or 1.0)
    torch.manual_seed(seed)
    net = RingNet(geometry, head.n_outputs, settings.net)
    key, team = _cache_key(images, geometry, head, settings, seed), world()
    path = None if settings.cache is None else Path(settings.cache) / f"ringnet-{key}"
    committed = _committed(settings.committed, f"ringnet-{key}")
    meta = _stored(net, path, committed, team)
    if meta is None:
        history = train(net, head, standardise, x[train_idx], x[val_idx], settings.train, seed=seed, team=team)
        meta = {"key": key, "source": data.source, "net": settings.net.to_dict(), "train": settings.train.to_dict(),
                "head": head.kind, "history": history, "cached": False}
        if path is not None and team[0] == 0:
            _save_cached(path, net, {**meta, "cached": True})
    net.to(settings.device).eval()
    meta.update(n_train=len(train_idx), n_val=len(val_idx), n_test=len(test_idx))
    return net, head, standardise, (x[train_idx], x[val_idx], x[test_idx]), meta


def link_name(key: str, t: float, config: TrainConfig, chain: tuple[float, ...] = ()) -> str:
    """File stem of the specialisation at t of the amortised network ``key``, after the links ``chain``."""
    name = f"ringnet-{key}-t{float(t):.6g}-s{config.specialise}-lr{config.specialise_lr:g}"
    if chain:
        name += "-after" + hashlib.sha256(json.dumps([float(c) for c in chain]).encode()).hexdigest()[:8]
    return name


def save_networks(details: dict, settings: NeuralSettings, dest: Path) -> list[Path]:
    """Copy the networks a run used (its amortised network and the link kept at each t) into ``dest``, named as
    in the cache: the layout of the committed networks (checkpoints/DATA/cmi/, `committed_root`)."""
    import shutil

    key = details["cache_key"]
    stems = [Path(details["committed"]) if details.get("committed") else
             Path(settings.cache) / f"ringnet-{key}"]
    for link in details["specialised"]:
        if link.get("specialised", True):
            stems.append(Path(link["committed"]) if link.get("committed") else
                         Path(settings.cache) / link_name(key, link["t"], settings.train, tuple(link["after"])))
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for stem in stems:
        for source in _files(stem):
            if not source.is_file():
                raise PhasediffError(f"{source} is missing: the run's networks are not all in the cache")
            target = dest / source.name
            if source.resolve() != target.resolve():
                write_atomic(target, lambda tmp, source=source: shutil.copyfile(source, tmp))
            written.append(target)
    return written


def specialised_network(start, head, standardise, splits, t: float, settings: NeuralSettings, key: str,
                        seed: int, chain: tuple[float, ...] = ()):
    """(copy of ``start`` trained further at t alone, its training history); cached beside the amortised
    network. ``chain``: the t of the specialisations ``start`` already went through (part of the cache tag).
    In the chained mode a committed link at t serves whatever chain led to it (its sidecar says which: "after"):
    it is the validated network at t. Under torchrun a link of the chain trains on every process together, an
    independent one on the process that measures its t alone (`cross_entropies`)."""
    special = copy.deepcopy(start).cpu()
    config = settings.train
    team = world() if config.specialise_chain else ALONE
    path = None if settings.cache is None else Path(settings.cache) / link_name(key, t, config, chain)
    links = _committed(settings.committed, link_name(key, t, config), any_chain=True) if config.specialise_chain else []
    meta = _stored(special, path, links, team)
    if meta is None:
        history = train(special, head, standardise, splits[0], splits[1], config, seed=seed + 5, fixed_t=t, team=team)
        meta = {"t": float(t), "after": list(chain), "history": history, "cached": False}
        if path is not None and team[0] == 0:
            _save_cached(path, special, {**meta, "cached": True})
    return special.to(settings.device).eval(), meta


def generalisation_gap(history: dict) -> float | None:
    """Validation cross-entropy minus the running training loss at the best step (None at step 0, the start)."""
    if not history["best_step"]:
        return None
    k = history["step"].index(history["best_step"])
    return float(history["val"][k] - history["train"][k])


def cross_entropies(net, head, standardise, splits, ts, settings: NeuralSettings, key: str,
                    seed: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Validation (T, D + 1) and per-image test (n, T, D + 1) cross-entropies, from the amortised network or,
    with settings.train.specialise, from its specialisation at each t (the same noise draws at every t;
    with specialise_chain, from the largest t down, each copy starting from the previous one; a copy that
    ends no better than the amortised network at its t, on the validation images, or that memorises, is
    trained again from the amortised network, the retrained copy is kept unless it validates worse, and the
    chain goes on from the one kept). Where a link cannot change the report (`needless_links`: t = 1, lower-bound
    t, t far below the resolution) the amortised network serves: the chain starts at the largest t that needs
    one. Under torchrun every process trains every link of the chain together; without the chain process k
    takes the t indices k, k + world, ..., and the results are gathered on every process."""
    x_val, x_test = splits[1], splits[2]
    config, (rank, size) = settings.train, world()
    chained = bool(config.specialise and config.specialise_chain)
    order = sorted(range(len(ts)), key=lambda k: -float(ts[k])) if chained else range(rank, len(ts), size)
    needless = needless_links(net, head, standardise, splits, ts, settings, seed) if config.specialise else {}
    found, start, chain = {}, net, ()
    for k in order:
        t = float(ts[k])
        special, history = net, None
        if k in needless:
            reason, amortised = needless[k]
            history = {"t": t, "specialised": False, "reason": reason}
            if amortised is not None:
                found[k] = (*amortised, history)
                continue
        elif config.specialise:
            special, meta = specialised_network(start, head, standardise, splits, t, settings, key, seed, chain)
            restart = {}
            if chain and "committed" not in meta:  # a committed link was validated when it was committed
                amortised_val = validation_loss_at(net, head, standardise, x_val, t, seed + 5, (rank, size))
                chain_val, gap = meta["history"]["best_val"], generalisation_gap(meta["history"])
                reason = ("no better than the amortised network" if chain_val >= amortised_val
                          else "memorises" if gap is not None and gap > MEMORISATION_GAP else None)
                restart = {"amortised_val": amortised_val, "chain_val": chain_val, "generalisation_gap": gap,
                           "reason": reason, "restarted": False}
                if reason:
                    fresh, fresh_meta = specialised_network(net, head, standardise, splits, t, settings, key, seed)
                    restart.update(retrained_val=fresh_meta["history"]["best_val"],
                                   restarted=fresh_meta["history"]["best_val"] <= chain_val)
                    if restart["restarted"]:
                        special, meta = fresh, fresh_meta
            if chained:
                start, chain = special, tuple(meta["after"]) + (t,)
            history = {"t": t, "cached": meta["cached"], "committed": meta.get("committed"),
                       "after": list(meta.get("after", [])),
                       "restart": restart, "generalisation_gap": generalisation_gap(meta["history"]),
                       **{name: meta["history"][name] for name in ("steps", "best_step", "best_val", "seconds")}}
        found[k] = (test_nll(special, head, standardise, x_val, [t], 1, seed + 2).mean(0),
                    test_nll(special, head, standardise, x_test, [t], settings.draws, seed + TEST_NOISE_SEED), history)
    if not chained:
        found = {k: part[k] for part in gathered_objects(found, (rank, size)) for k in part}
    val, test, histories = zip(*(found[k] for k in range(len(ts))))
    return np.concatenate(val), np.concatenate(test, 1), list(histories) if config.specialise else []


def needless_links(net, head, standardise, splits, ts, settings: NeuralSettings, seed: int) -> dict:
    """{t index: (why the amortised network serves there, its (validation, test) cross-entropies or None)} for the
    t where specialising cannot change what is reported (module docstring): t = 1, lower-bound t, and t where
    AMORTISED_SHORTFALL x max_r (mean + 2 stderr) of the amortised CMI < RESOLUTION_FLOOR."""
    out = {k: ("pure noise", None) for k, t in enumerate(ts) if float(t) >= 1}
    if settings.specialise_everywhere:
        return out
    bounds = lower_bound_times(ts, standardise.sigma, specialised=True)
    out.update({k: ("a lower bound anyway", None) for k in range(len(ts))
                if bounds[k] and k not in out})
    rest = [k for k in range(len(ts)) if k not in out]
    if not rest:
        return out
    picked = [float(ts[k]) for k in rest]
    val = test_nll(net, head, standardise, splits[1], picked, 1, seed + 2).mean(0)
    test = test_nll(net, head, standardise, splits[2], picked, settings.draws, seed + TEST_NOISE_SEED)
    _, nll = nested_cross_entropies(val, test)
    stats = paired_statistics(nll[:, :, 1:-1] - nll[:, :, -1:], 1, seed)  # radii 1 .. n_rings - 1 against B u C
    ceilings = (stats["mean"] + 2 * stats["stderr"]).max(1)
    for j, k in enumerate(rest):
        ceiling = float(ceilings[j])
        if AMORTISED_SHORTFALL * ceiling < RESOLUTION_FLOOR:
            out[k] = (f"far below the resolution ({AMORTISED_SHORTFALL:g} x {ceiling:.2g} < {RESOLUTION_FLOOR:g})",
                      (val[j][None], test[:, j:j + 1]))
    return out


def held_out_draw(images: np.ndarray, settings: NeuralSettings, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x_0, z) of the test images and their first noise draw, (n_test, C, H, W) each: the pairs on which every
    held-out cross-entropy of a run with ``seed`` is evaluated (so exact entropies on them are paired with it)."""
    x0 = torch.as_tensor(images)[split_indices(len(images), settings, seed)[2]]
    z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed + TEST_NOISE_SEED))
    return x0.numpy(), z.numpy()


def test_nll(net, head, standardise, x0: torch.Tensor, ts, draws: int, seed: int, batch: int = 500) -> np.ndarray:
    """Per-image held-out cross-entropy (n, T, D + 1) of the whole of A (chain rule), averaged over ``draws``
    noise draws; the same draws serve every t and radius."""
    rule, device = hermite_rule(EVAL_NODES), next(net.parameters()).device
    g = torch.Generator().manual_seed(seed)
    out = np.zeros((len(x0), len(ts), net.radius.num_embeddings))
    with torch.no_grad():
        for _ in progress(range(draws), desc="held-out cross-entropy", unit="draw"):
            z = torch.randn(x0.shape, generator=g)
            for start in range(0, len(x0), batch):
                xb, zb = x0[start: start + batch].to(device), z[start: start + batch].to(device)
                for k, t in enumerate(ts):
                    tb = torch.full((len(xb),), float(t), device=device)
                    nll = image_nll(net, head, standardise, xb, tb, zb, rule).sum(-1)
                    out[start: start + batch, k] += nll.double().cpu().numpy() / draws
    return out


def best_nested(val_nll: np.ndarray) -> np.ndarray:
    """(T, D + 1) index s(t, r) = argmin_{s <= r} val_nll[t, s]: the best model among those that see no more
    than the context of radius r."""
    chosen = np.zeros(val_nll.shape, dtype=int)
    for r in range(1, val_nll.shape[1]):
        prev = chosen[:, r - 1]
        better = val_nll[:, r] < val_nll[np.arange(len(val_nll)), prev]
        chosen[:, r] = np.where(better, r, prev)
    return chosen


def nested_cross_entropies(val_nll: np.ndarray, nll: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(s(t, r) of `best_nested` (T, D + 1), the per-image test cross-entropies (n, T, D + 1) of those models):
    the estimates of H_t(A|B_r) at index r and of H_t(A|B u C) at the last."""
    chosen = best_nested(val_nll)
    return chosen, np.take_along_axis(nll, chosen[None], 2)


def paired_statistics(diff: np.ndarray, resamples: int, seed: int) -> dict:
    """Mean, stderr and percentile-bootstrap 95% interval of per-image differences diff (n, ...)."""
    n = len(diff)
    flat = diff.reshape(n, -1)
    counts = np.random.default_rng([seed, 23]).multinomial(n, np.full(n, 1 / n), size=resamples)
    boot = counts @ flat / n
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    shape = diff.shape[1:]
    return {"mean": flat.mean(0).reshape(shape), "stderr": (flat.std(0, ddof=1) / np.sqrt(n)).reshape(shape),
            "low": low.reshape(shape), "high": high.reshape(shape)}


def lower_bound_times(ts, sigma: float, specialised: bool) -> np.ndarray:
    """(T,) whether the estimates at each t are lower bounds rather than estimates.

    A network's cross-entropy bounds the true conditional entropy from above, and its excess grows with the
    context it must read, so a shortfall lowers H(A|B u C) less than H(A|B_r): the CMI reads low, never high.
    The amortised network (``specialised`` False) falls short at every t < 1; the validated mode where
    (1 - t) sigma / t > SHARP_SNR (at t = 0 always)."""
    t = np.asarray(ts, dtype=float)
    if not specialised:
        return t < 1
    return (1 - t) * sigma > SHARP_SNR * t


def reported_interval(stats: dict, resolution: np.ndarray, lower_bound: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap interval, or [min(low, 0), max(high, resolution)] where the mean is below the resolution;
    open above (high = inf) where the estimate is a lower bound (``lower_bound``, broadcast to the grid)."""
    unresolved = stats["mean"] < resolution
    high = np.where(unresolved, np.maximum(stats["high"], resolution), stats["high"])
    if lower_bound is not None:
        high = np.where(lower_bound, np.inf, high)
    return np.where(unresolved, np.minimum(stats["low"], 0.0), stats["low"]), high


def neural_cmi(data: Dataset, ts, radii, site: tuple[int, int], patch: int, settings: NeuralSettings,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """(values (T, R), stderr (T, R), details) of I_t(A:C|B_r) for the images of ``data``."""
    geometry = Geometry(tuple(data.shape), tuple(site), patch)
    start = time.perf_counter()
    net, head, standardise, splits, meta = fit_network(data, geometry, settings, seed)
    fitted = time.perf_counter() - start
    val_nll, nll, specialised = cross_entropies(net, head, standardise, splits, ts, settings, meta["key"], seed)
    chosen, nll = nested_cross_entropies(val_nll, nll)
    full = geometry.n_rings
    diff = nll[:, :, list(radii)] - nll[:, :, full:]
    stats = paired_statistics(diff, settings.bootstrap, seed)
    total = paired_statistics(nll[:, :, 0] - nll[:, :, full], settings.bootstrap, seed)
    resolution = np.maximum(2 * stats["stderr"], RESOLUTION_FLOOR)
    unresolved = stats["mean"] < resolution
    bound_times = lower_bound_times(ts, standardise.sigma, bool(settings.train.specialise))
    lower_bound = np.broadcast_to(bound_times[:, None], stats["mean"].shape)
    details = {
        "head": head.kind, "levels" if head.kind == "categorical" else "components":
            len(head.levels) if head.kind == "categorical" else head.k,
        **dict(zip(("interval_low", "interval_high"), reported_interval(stats, resolution, lower_bound))),
        "interval": "percentile bootstrap 95%, widened to [0, resolution] below the resolution; open above "
                    "(interval_high inf) where the estimate is a lower bound",
        "lower_bound": lower_bound.copy(),
        "lower_bound_rule": ("amortised network: every t < 1" if not settings.train.specialise else
                             f"validated mode: (1 - t) sigma / t > {SHARP_SNR:g}, sigma = {standardise.sigma:.4g}"),
        "bootstrap_low": stats["low"], "bootstrap_high": stats["high"],
        "resolution": resolution, "below_resolution": unresolved,
        "mutual_information_A_BC": total["mean"], "mutual_information_A_BC_stderr": total["stderr"],
        "cross_entropy": nll[:, :, list(radii)].mean(0), "cross_entropy_global": nll[:, :, full].mean(0),
        "stderr_method": "std of paired per-image differences / sqrt(n)",
        "images": {"train": meta["n_train"], "val": meta["n_val"], "test": meta["n_test"]}, "draws": settings.draws,
        "network": meta["net"], "training": {k: meta["history"][k] for k in
                                             ("steps", "best_step", "best_val", "stop", "seconds")},
        "specialised": specialised, "cached": meta["cached"], "committed": meta.get("committed"),
        "fit_seconds": fitted, "cache_key": meta["key"],
        "model_radius": chosen[:, list(radii)], "model_radius_global": chosen[:, full],
    }
    return stats["mean"], stats["stderr"], details


def settings_with(**changes) -> NeuralSettings:
    """NeuralSettings with some fields (including the training's ``epochs``, ``budget``, ``precision``,
    ``specialise`` and ``specialise_chain``) replaced."""
    train_keys = {k: changes.pop(k) for k in ("epochs", "budget", "precision", "specialise", "specialise_chain")
                  if k in changes and changes[k] is not None}
    settings = replace(NeuralSettings(), **{k: v for k, v in changes.items() if v is not None})
    return replace(settings, train=replace(settings.train, **train_keys)) if train_keys else settings
