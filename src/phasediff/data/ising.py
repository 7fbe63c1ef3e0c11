"""The 2D Ising model on an L x L torus (J = 1, no field), sampled with the Swendsen-Wang cluster algorithm.

Many independent chains run at once as one big graph of disjoint lattices: in each sweep every bond between
aligned nearest neighbours is activated with probability 1 - exp(-2/T), the clusters of active bonds are found
with ``scipy.sparse.csgraph.connected_components``, and each cluster is flipped with probability 1/2. There is
no Python loop over sites, only over sweeps and chunks of chains.

By default every sample is the final state of its own chain (hot start, ``burn_in`` sweeps), so the samples are
independent draws from the Gibbs state. With ``thin=k`` each chain instead yields several samples, ``k`` sweeps
apart after the burn-in (cheaper, but neighbouring samples of one chain are correlated).

Images hold spins mapped to {0, 1} (spin +1 -> 1, spin -1 -> 0), float32, shape (n, 1, L, L). The observables
(`magnetisation`, `energy_per_spin`) take either that image convention or spins in {-1, +1}; see `to_spins`.

Exact quantities: `CRITICAL_TEMPERATURE`, the Onsager spontaneous magnetisation of the infinite lattice
(`onsager_magnetisation`), its correlation length above T_c (`exact_correlation_length`), and the exact energy per spin of the finite L x L torus from Kaufman's partition
function (`exact_energy_per_spin`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from phasediff.errors import PhasediffError

CRITICAL_TEMPERATURE = 2.0 / math.log(1.0 + math.sqrt(2.0))  # ~2.269185

# Sweeps before a chain's first sample. Measured from a hot start at T_c (2048 chains at L = 32, 512 at L = 64):
# the bias of <E>/N and <|m|> decays with a time of ~5 sweeps and is below the standard error (0.002) after ~30.
DEFAULT_BURN_IN = 100
MAX_SITES_PER_CHUNK = 1 << 20  # sites (over all chains of a chunk) updated together; bounds memory to ~100 MB


def exact_correlation_length(T: float) -> float | None:
    """The infinite lattice's exponential correlation length along an axis, above T_c (Onsager; McCoy and Wu):
    1 / xi = 2 (K* - K), K = 1 / T, K* = -ln(tanh K) / 2 the dual coupling, so C(d) ~ d^(-1/2) exp(-d / xi).
    It diverges at T_c and tends to -1 / ln(tanh K) (the high-temperature series) as T grows. None at or below
    T_c, where the order that matters is long-range, not this length."""
    if T <= CRITICAL_TEMPERATURE:
        return None
    K = 1.0 / T
    return 1.0 / (2.0 * (-0.5 * math.log(math.tanh(K)) - K))


class IsingModel:
    """2D Ising model, J = 1, periodic L x L lattice, temperature T (k_B = 1), Swendsen-Wang sampler.

    ``burn_in``: sweeps from the hot (random) start before the first sample of a chain (default 100).
    ``thin``: None (default) takes one sample per chain, so all samples are independent; an integer k lets each
    chain give several samples k sweeps apart, using at most ``chains`` chains (default: as many as fit in one
    chunk, ``MAX_SITES_PER_CHUNK // L**2``).
    """

    def __init__(self, L: int, T: float, burn_in: int | None = None, thin: int | None = None,
                 chains: int | None = None) -> None:
        if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 2:
            raise PhasediffError(f"ising: L must be an integer >= 2, got {L!r}")
        try:
            T_value = float(T)
        except (TypeError, ValueError):
            raise PhasediffError(f"ising: T must be a positive number, got {T!r}") from None
        if not (math.isfinite(T_value) and T_value > 0):
            raise PhasediffError(f"ising: T must be a positive finite number, got {T!r}")
        burn_in = DEFAULT_BURN_IN if burn_in is None else burn_in
        if isinstance(burn_in, bool) or not isinstance(burn_in, (int, np.integer)) or burn_in < 0:
            raise PhasediffError(f"ising: burn_in must be an integer >= 0, got {burn_in!r}")
        if thin is not None and (isinstance(thin, bool) or not isinstance(thin, (int, np.integer)) or thin < 1):
            raise PhasediffError(f"ising: thin must be an integer >= 1 or None, got {thin!r}")
        if chains is not None and (isinstance(chains, bool) or not isinstance(chains, (int, np.integer)) or chains < 1):
            raise PhasediffError(f"ising: chains must be an integer >= 1 or None, got {chains!r}")
        self.L = int(L)
        self.T = T_value
        self.burn_in = int(burn_in)
        self.thin = None if thin is None else int(thin)
        self.chunk = max(1, MAX_SITES_PER_CHUNK // (self.L * self.L))
        self.chains = self.chunk if chains is None else int(chains)
        self.p_bond = -math.expm1(-2.0 / self.T)  # 1 - exp(-2 J / T)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1, self.L, self.L)

    def describe(self) -> str:
        how = "" if self.thin is None else f", thin={self.thin}"
        return f"2D Ising L={self.L} T={self.T:.4g} (Swendsen-Wang, periodic, J=1, burn-in {self.burn_in}{how})"

    def __repr__(self) -> str:
        return f"IsingModel(L={self.L}, T={self.T!r}, burn_in={self.burn_in}, thin={self.thin})"

    # ------------------------------------------------------------------ sampling

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, None]:
        """``n`` samples as float32 images (n, 1, L, L) in {0, 1} (spin +1 -> 1), and no labels."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise PhasediffError(f"ising: number of samples must be an integer >= 1, got {n!r}")
        if not isinstance(rng, np.random.Generator):
            raise PhasediffError(f"ising: rng must be a numpy.random.Generator, got {type(rng).__name__}")
        n = int(n)
        out = np.empty((n, 1, self.L, self.L), dtype=np.float32)
        if self.thin is None:
            for start in range(0, n, self.chunk):
                count = min(self.chunk, n - start)
                spins = self.run_chains(count, self.burn_in, rng)
                out[start:start + count, 0] = spins > 0
            return out, None
        # several samples per chain, k sweeps apart; time-major within a chunk, so a prefix spreads over its chains
        chains = min(n, self.chains)
        per_chain = -(-n // chains)
        filled = 0
        for start in range(0, chains, self.chunk):
            count = min(self.chunk, chains - start)
            sampler = _SwendsenWang(self.L, count, self.p_bond)
            spins = sampler.hot_start(rng)
            spins = sampler.sweeps(spins, self.burn_in, rng)
            block = np.empty((per_chain, count, self.L, self.L), dtype=np.float32)
            for j in range(per_chain):
                if j:
                    spins = sampler.sweeps(spins, self.thin, rng)
                block[j] = spins > 0
            take = min(per_chain * count, n - filled)
            out[filled:filled + take, 0] = block.reshape(-1, self.L, self.L)[:take]
            filled += take
        return out, None

    def run_chains(self, count: int, sweeps: int, rng: np.random.Generator,
                   start: np.ndarray | None = None) -> np.ndarray:
        """Run ``count`` independent chains for ``sweeps`` sweeps; int8 spins in {-1, +1}, shape (count, L, L).

        ``start``: initial spins (count, L, L) in {-1, +1}; default a hot (uniformly random) start.
        """
        sampler = _SwendsenWang(self.L, count, self.p_bond)
        if start is None:
            spins = sampler.hot_start(rng)
        else:
            spins = to_spins(start).reshape(count, self.L, self.L)
        return sampler.sweeps(spins, sweeps, rng)


class _SwendsenWang:
    """Vectorised SW sweeps for ``count`` disjoint L x L tori: one graph, one connected_components per sweep."""

    def __init__(self, L: int, count: int, p_bond: float) -> None:
        self.L, self.count, self.p_bond = L, count, p_bond
        self.n_sites = count * L * L
        self.index_dtype = np.int32 if self.n_sites < 2**31 - 1 else np.int64
        index = np.arange(self.n_sites, dtype=self.index_dtype).reshape(count, L, L)
        # per site, in this order: its right and its lower neighbour (periodic within each lattice)
        self.neighbours = np.stack([np.roll(index, -1, axis=2), np.roll(index, -1, axis=1)], axis=-1).ravel()
        self.data = np.ones(2 * self.n_sites)  # edge weights (any nonzero value); sliced, never reallocated

    def hot_start(self, rng: np.random.Generator) -> np.ndarray:
        """Independent uniformly random spins in {-1, +1}, int8 (count, L, L)."""
        return (2 * rng.integers(0, 2, size=(self.count, self.L, self.L), dtype=np.int8) - 1).astype(np.int8)

    def sweeps(self, spins: np.ndarray, sweeps: int, rng: np.random.Generator) -> np.ndarray:
        for _ in range(sweeps):
            spins = self.sweep(spins, rng)
        return spins

    def sweep(self, spins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One Swendsen-Wang update of every lattice (int8 spins in {-1, +1}, shape (count, L, L))."""
        accept = rng.random((2, *spins.shape), dtype=np.float32) < self.p_bond
        right = spins == np.roll(spins, -1, axis=2)
        right &= accept[0]
        down = spins == np.roll(spins, -1, axis=1)
        down &= accept[1]
        # the graph of active bonds in CSR form, built directly (row i: its active right and down bonds);
        # connected_components(directed=False) adds the reverse edges itself
        indptr = np.zeros(self.n_sites + 1, dtype=self.index_dtype)
        np.cumsum(right.view(np.uint8).ravel() + down.view(np.uint8).ravel(), out=indptr[1:])
        indices = np.compress(np.stack([right, down], axis=-1).ravel(), self.neighbours)
        graph = csr_matrix((self.data[:indices.size], indices, indptr), shape=(self.n_sites, self.n_sites))
        n_clusters, labels = connected_components(graph, directed=False)
        sign = 1 - 2 * rng.integers(0, 2, size=n_clusters, dtype=np.int8)  # each cluster flipped with probability 1/2
        return spins * sign[labels].reshape(spins.shape)


# ---------------------------------------------------------------------- observables


def to_spins(x, threshold: float | None = None) -> np.ndarray:
    """Spins in {-1, +1} (int8) from an array in {0, 1} (0 -> -1, 1 -> +1) or already in {-1, +1}.

    An array of only 1s reads as all +1 in both conventions. A mixture of 0 and -1, or any other value, is an
    error unless ``threshold`` is given: then x > threshold -> +1, else -1 (e.g. 0.5 for generated images).
    """
    x = np.asarray(x)
    if threshold is not None:
        return np.where(x > threshold, 1, -1).astype(np.int8)
    values = np.unique(x)
    if np.all(np.isin(values, (0, 1))):
        return (2 * x.astype(np.int8) - 1).astype(np.int8)
    if np.all(np.isin(values, (-1, 1))):
        return x.astype(np.int8)
    raise PhasediffError("ising: spins must be all in {0, 1} or all in {-1, +1} "
                         "(pass threshold= for real-valued images)")


def _lattices(spins, threshold: float | None) -> np.ndarray:
    """(n, L, L) int8 spins in {-1, +1} from (L, L), (n, L, L) or (n, 1, L, L) input."""
    s = to_spins(spins, threshold)
    if s.ndim == 4:
        if s.shape[1] != 1:
            raise PhasediffError(f"ising: spin images must have one channel, got shape {s.shape}")
        s = s[:, 0]
    elif s.ndim == 2:
        s = s[None]
    if s.ndim != 3 or s.size == 0:
        raise PhasediffError(f"ising: spins must have shape (L, L), (n, L, L) or (n, 1, L, L), got {np.shape(spins)}")
    return s


def magnetisation(spins, threshold: float | None = None) -> np.ndarray:
    """Mean spin per sample, in [-1, 1]; input in {0, 1} (image convention) or {-1, +1} (see `to_spins`)."""
    s = _lattices(spins, threshold)
    return s.reshape(s.shape[0], -1).mean(axis=1, dtype=np.float64)


def energy_per_spin(spins, threshold: float | None = None) -> np.ndarray:
    """-(1/N) sum over nearest-neighbour pairs s_i s_j on the torus (J = 1), per sample, in [-2, 2]."""
    s = _lattices(spins, threshold).astype(np.int32)
    bonds = s * np.roll(s, -1, axis=2) + s * np.roll(s, -1, axis=1)
    return -bonds.reshape(s.shape[0], -1).mean(axis=1, dtype=np.float64)


def onsager_magnetisation(T):
    """Spontaneous magnetisation of the infinite lattice: (1 - sinh(2/T)^-4)^(1/8) below T_c, 0 at and above."""
    T_arr = np.asarray(T, dtype=np.float64)
    if not np.all(np.isfinite(T_arr) & (T_arr > 0)):
        raise PhasediffError(f"ising: temperature must be positive and finite, got {T!r}")
    with np.errstate(over="ignore"):
        inv = np.sinh(2.0 / T_arr) ** -4.0
    m = np.where(T_arr < CRITICAL_TEMPERATURE, np.clip(1.0 - inv, 0.0, None) ** 0.125, 0.0)
    return float(m) if m.ndim == 0 else m


def _log_z_kaufman(L: int, K: float) -> float:
    """log Z of the L x L periodic Ising model at coupling K = J / T (Kaufman 1949), stable in log space."""
    k = np.arange(2 * L)
    # gamma_k >= 0 from cosh(gamma_k) = cosh(2K) coth(2K) - cos(pi k / L); gamma_0 = 2K + log tanh K (signed)
    c = math.cosh(2 * K) / math.tanh(2 * K) - np.cos(np.pi * k / L)
    gamma = np.arccosh(np.maximum(c, 1.0))
    gamma[0] = 2 * K + math.log(math.tanh(K))
    odd, even = gamma[1::2], gamma[0::2]

    def log_2cosh(x):
        x = np.abs(x)
        return x + np.log1p(np.exp(-2 * x))

    def log_abs_2sinh(x):
        x = np.abs(x)
        return x + np.log(-np.expm1(-2 * x)) if np.all(x > 0) else np.full_like(x, -np.inf)

    h = L / 2.0
    terms = [
        (np.sum(log_2cosh(h * odd)), 1.0),
        (np.sum(log_abs_2sinh(h * odd)), 1.0),
        (np.sum(log_2cosh(h * even)), 1.0),
        (np.sum(log_abs_2sinh(h * even)), float(np.sign(even[0]))),
    ]
    top = max(t for t, _ in terms)
    total = sum(sign * math.exp(t - top) for t, sign in terms if np.isfinite(t))
    return math.log(0.5) + 0.5 * L * L * math.log(2 * math.sinh(2 * K)) + top + math.log(total)


def exact_energy_per_spin(L: int, T: float) -> float:
    """Exact <E>/N of the finite L x L torus (J = 1), -d log Z / dK / N from Kaufman's partition function."""
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 2:
        raise PhasediffError(f"ising: L must be an integer >= 2, got {L!r}")
    if not (math.isfinite(T) and T > 0):
        raise PhasediffError(f"ising: T must be a positive finite number, got {T!r}")
    K = 1.0 / T
    h = 1e-4 * K
    # fourth-order central difference of log Z in K
    f = [_log_z_kaufman(int(L), K + j * h) for j in (-2, -1, 1, 2)]
    dlogz = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)
    return -dlogz / (L * L)
