"""Per-sample noise model of replicate LIBS shots, fitted from data, and draws from it.

Model of one shot of sample s in channel c (counts):
    x_c = g * Poisson(f * e_c / g) + N(0, r^2),   f ~ N(1, beta) or log-normal with mean 1,
so var_c = g*m_c + r^2 + beta^2*m_c^2 when e = m, the mean spectrum (the average of the replicates).
The gain g (counts per photo-electron) and read noise r come from how the per-channel variance of
shots divided by their total-intensity factor grows with the mean (robust fit on the log scale);
beta comes from the spread of the replicates' total intensity. Channels saturated or clipped at the
detector floor in any replicate are left out of the fit, and draws are clipped the same way.

Beyond that core (the paper's model), shot-to-shot changes of spectral *shape* (plasma temperature)
are estimated from the data: the leading principal components of the whitened residuals that stand
above the pure-noise (Marchenko-Pastur) edge become modes L_j, and e = m + sum_j a_j L_j with unit-
variance coefficients a_j correlated with f as measured. Data without such structure (the toy
campaign) get no modes; ``max_shape_modes=0`` switches them off.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

import numpy as np
import xarray as xr
from scipy import optimize, special
from scipy.ndimage import gaussian_filter1d

from libs_pipeline.spectra.dataset import label_names, sample_ids

MODEL_FORMAT = "libs-pipeline/noise-model/1"
ShotFactor = Literal["normal", "lognormal"]
Detector = Literal["per_sample", "pooled"]
SHOT_FACTORS = ("normal", "lognormal")
DETECTORS = ("per_sample", "pooled")
MIN_SHOTS = 3
MIN_FIT_CHANNELS = 16
MIN_MEAN_RANGE = 2.0  # the fitted channels' means must span at least this factor
SATURATION_MARGIN = 0.95  # channels with any replicate above margin * saturation are left out of the fit
MODE_MARGIN = 1.5  # a shape mode must exceed the pure-noise eigenvalue edge by this factor
MAX_SHAPE_MODES = 4
MAX_HIGH_FRACTION = 0.2  # saturation detection: at most this share of values in the top 20 % of the range
MAX_FIT_ROUNDS = 8
MAX_MODE_CORRELATION = 0.99
_HUBER_C = 1.345


@dataclass(frozen=True)
class SampleNoise:
    """Fitted noise parameters of one (reference or interpolated) sample."""

    sample_id: str
    mean: np.ndarray  # (n_channels,) float64, counts: average of the replicate shots
    gain: float  # counts per photo-electron
    read_noise: float  # counts (standard deviation of the additive Gaussian)
    shot_sigma: float  # normal: sd of the shot factor; lognormal: sd of its logarithm
    n_shots: int
    labels: Mapping[str, float]
    n_fit_channels: int = 0  # channels used in the variance fit (0 for interpolated samples)
    parents: tuple[str, ...] = ()  # interpolated: the two reference samples
    weight: float = 0.0  # interpolated: fraction of the second parent
    modes: np.ndarray | None = None  # (r, n_channels) shape-fluctuation loadings, counts (None: r = 0)
    mode_correlation: np.ndarray | None = None  # (r,) correlation of mode coefficients with the shot factor

    def __post_init__(self) -> None:
        n = self.mean.shape[0]
        modes = np.zeros((0, n)) if self.modes is None else np.asarray(self.modes, dtype=np.float64).reshape(-1, n)
        rho = np.zeros(modes.shape[0]) if self.mode_correlation is None else np.asarray(self.mode_correlation, float)
        if rho.shape != (modes.shape[0],):
            raise ValueError(f"sample {self.sample_id!r}: {modes.shape[0]} modes but {rho.size} mode correlations")
        if float(np.sum(rho**2)) >= 1.0:
            raise ValueError(f"sample {self.sample_id!r}: mode correlations must have norm < 1, got {rho}")
        object.__setattr__(self, "modes", modes)
        object.__setattr__(self, "mode_correlation", rho)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sample_id": self.sample_id,
            "mean": [float(v) for v in self.mean],
            "gain": float(self.gain),
            "read_noise": float(self.read_noise),
            "shot_sigma": float(self.shot_sigma),
            "n_shots": int(self.n_shots),
            "labels": {k: _json_float(v) for k, v in self.labels.items()},
            "n_fit_channels": int(self.n_fit_channels),
            "parents": list(self.parents),
            "weight": float(self.weight),
            "modes": [[float(v) for v in row] for row in self.modes],
            "mode_correlation": [float(v) for v in self.mode_correlation],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SampleNoise:
        return cls(
            sample_id=str(data["sample_id"]),
            mean=np.asarray(data["mean"], dtype=np.float64),
            gain=float(data["gain"]),
            read_noise=float(data["read_noise"]),
            shot_sigma=float(data["shot_sigma"]),
            n_shots=int(data["n_shots"]),
            labels={k: (math.nan if v is None else float(v)) for k, v in data["labels"].items()},
            n_fit_channels=int(data.get("n_fit_channels", 0)),
            parents=tuple(data.get("parents", ())),
            weight=float(data.get("weight", 0.0)),
            modes=np.asarray(data.get("modes", []), dtype=np.float64),
            mode_correlation=np.asarray(data.get("mode_correlation", []), dtype=np.float64),
        )


@dataclass(frozen=True)
class NoiseModel:
    """Noise parameters of every sample of a campaign plus the detector facts shared by all draws."""

    wavelength: np.ndarray  # (n_channels,) float64, nm
    samples: Mapping[str, SampleNoise]  # in dataset order; interpolated samples follow the references
    label_units: Mapping[str, str]
    shot_factor: ShotFactor = "normal"
    detector: Detector = "per_sample"
    floor: float | None = None  # draws are clipped below at this value (data clipped at 0)
    saturation: float | None = None  # draws are clipped above at this value (saturated detector)
    integer: bool = False  # the measured counts are integers, so draws are rounded
    instrument_fwhm_nm: float | None = None  # optional Gaussian instrument function applied to the means
    _sampling_means: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def sample_ids(self) -> list[str]:
        return list(self.samples)

    @property
    def n_channels(self) -> int:
        return int(self.wavelength.shape[0])

    def sample(self, sample_id: str) -> SampleNoise:
        try:
            return self.samples[sample_id]
        except KeyError:
            raise KeyError(f"noise model has no sample {sample_id!r}; samples: {self.sample_ids}") from None

    def with_samples(self, samples: Mapping[str, SampleNoise]) -> NoiseModel:
        """The same detector facts with another set of samples."""
        return replace(self, samples=dict(samples), _sampling_means={})

    def sampling_mean(self, sample_id: str) -> np.ndarray:
        """Mean spectrum the draws are centred on: the sample mean, convolved with the instrument function if set."""
        cached = self._sampling_means.get(sample_id)
        if cached is None:
            mean = self.sample(sample_id).mean
            if self.instrument_fwhm_nm:
                step = float(np.median(np.diff(self.wavelength)))
                sigma_channels = self.instrument_fwhm_nm / (2.0 * math.sqrt(2.0 * math.log(2.0))) / step
                mean = gaussian_filter1d(mean, sigma_channels, mode="nearest")
            cached = self._sampling_means[sample_id] = np.ascontiguousarray(mean, dtype=np.float64)
        return cached

    def parameters(self) -> dict[str, dict[str, float]]:
        """Scalar parameters per sample (gain, read_noise, shot_sigma): small enough for store attrs."""
        return {
            s.sample_id: {"gain": s.gain, "read_noise": s.read_noise, "shot_sigma": s.shot_sigma}
            for s in self.samples.values()
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "wavelength": [float(v) for v in self.wavelength],
            "label_units": dict(self.label_units),
            "shot_factor": self.shot_factor,
            "detector": self.detector,
            "floor": self.floor,
            "saturation": self.saturation,
            "integer": self.integer,
            "instrument_fwhm_nm": self.instrument_fwhm_nm,
            "samples": [s.to_dict() for s in self.samples.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NoiseModel:
        if data.get("format") != MODEL_FORMAT:
            raise ValueError(f"noise model: format {data.get('format')!r} is not {MODEL_FORMAT!r}")
        samples = [SampleNoise.from_dict(s) for s in data["samples"]]
        return cls(
            wavelength=np.asarray(data["wavelength"], dtype=np.float64),
            samples={s.sample_id: s for s in samples},
            label_units=dict(data["label_units"]),
            shot_factor=data["shot_factor"],
            detector=data["detector"],
            floor=None if data["floor"] is None else float(data["floor"]),
            saturation=None if data["saturation"] is None else float(data["saturation"]),
            integer=bool(data["integer"]),
            instrument_fwhm_nm=None if data["instrument_fwhm_nm"] is None else float(data["instrument_fwhm_nm"]),
        )


def as_str_array(values) -> np.ndarray:
    """A numpy unicode array from str-like values (also numpy StringDType, which zarr 3 strings read as)."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "U":
        arr = arr.astype(object).astype(str)
    return arr


def _json_float(v: float) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


# ----------------------------------------------------------------------------------------- fit


def detect_saturation(values: np.ndarray, min_count: int = 20, contrast: float = 5.0) -> float | None:
    """Saturation level of a detector from a pile-up of values just below the maximum, or None.

    Histogram the top 20 % of the range in 1 %-wide bins; a detector that saturates piles values up in
    a bin in the top 10 % far above the typical bin, while most values lie well below the maximum; the
    level returned is the median of the piled-up values (what a saturated channel reads).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    top = float(values.max())
    if top <= 0:
        return None
    edges = np.linspace(0.8 * top, top, 21)
    high = values[values >= edges[0]]
    if high.size > MAX_HIGH_FRACTION * values.size:  # most values near the maximum: nothing stands out
        return None
    counts, _ = np.histogram(high, edges)
    peak = int(np.argmax(counts))
    background = max(float(np.median(counts)), 1.0)
    if counts[peak] < min_count or counts[peak] < contrast * background or edges[peak] < 0.9 * top:
        return None
    lo = peak
    while lo > 0 and counts[lo - 1] >= contrast * background:
        lo -= 1
    piled = values[values >= edges[lo]]
    return float(np.median(piled))


def _shot_factors(x: np.ndarray, valid: np.ndarray, sample_id: str) -> np.ndarray:
    totals = x[:, valid].sum(axis=1, dtype=np.float64)
    if np.any(totals <= 0):
        bad = int(np.flatnonzero(totals <= 0)[0])
        raise ValueError(f"sample {sample_id!r}: shot {bad} has total intensity <= 0 over the fitted channels")
    return totals / totals.mean()


@dataclass
class _SampleShots:
    """One sample's shots on its fitted channels, divided by their total-intensity factors."""

    sample_id: str
    mean: np.ndarray  # raw mean spectrum (all channels)
    valid: np.ndarray  # (n_channels,) bool: channels used in the fit
    factors: np.ndarray  # (k,) total-intensity factors, mean 1
    y: np.ndarray  # (k, n_valid) normalised shots
    total_mean: float  # mean total intensity over fitted channels

    @property
    def k(self) -> int:
        return int(self.y.shape[0])

    @cached_property
    def m(self) -> np.ndarray:
        return self.y.mean(axis=0)

    @cached_property
    def a(self) -> float:
        return float(np.mean(1.0 / self.factors))

    @cached_property
    def b(self) -> float:
        return float(np.mean(1.0 / self.factors**2))

    def counting_variance(self, gain: float, read_noise: float) -> np.ndarray:
        """Expected variance of the normalised shots from counting and read noise alone."""
        return np.maximum(gain * np.maximum(self.m, 0.0) * self.a + read_noise**2 * self.b, 1e-12)

    def fit_points(self, gain: float | None, read_noise: float, max_modes: int) -> _FitPoints:
        """Points (x, u, df) for the gain fit, after removing the significant shape-fluctuation modes.

        Residuals are whitened by the counting variance of the current (gain, read_noise); pure noise then
        has Gram eigenvalues below the Marchenko-Pastur edge (sqrt(C) + sqrt(k-1))^2. Leading modes above
        MODE_MARGIN times the edge are shot-to-shot changes of spectral shape (e.g. plasma temperature):
        they are kept as loadings (variance shrunk by the noise share C) and projected out of the residuals.
        """
        resid = self.y - self.m
        n_valid = self.y.shape[1]
        loadings = np.empty((0, n_valid))
        correlation = np.empty(0)
        limit = min(max_modes, self.k - 2)
        if gain is not None and limit > 0:
            noise = self.counting_variance(gain, read_noise)
            w = resid / np.sqrt(noise)
            # eigen-decomposition of the small k x k Gram matrix (much cheaper than an SVD of k x C)
            eig, vecs = np.linalg.eigh(w @ w.T)
            order = np.argsort(eig)[::-1]
            sv2, vecs = np.maximum(eig[order], 0.0), vecs[:, order]
            edge = (math.sqrt(n_valid) + math.sqrt(self.k - 1)) ** 2
            above = sv2 > MODE_MARGIN * edge
            r = min(int(np.argmin(above)) if not above.all() else int(above.size), limit)
            if r:
                directions = (vecs[:, :r].T @ w) / np.sqrt(sv2[:r])[:, None]  # orthonormal rows in channel space
                w = w - (w @ directions.T) @ directions
                resid = w * np.sqrt(noise)
                scale = np.sqrt(np.maximum(sv2[:r] - n_valid, 0.0) / (self.k - 1))
                loadings = scale[:, None] * directions * np.sqrt(noise)[None, :]
                correlation = _mode_correlation(self.factors, vecs[:, :r], sv2[:r], n_valid)
        df = self.k - 1 - loadings.shape[0]
        v = (resid**2).sum(axis=0) / df
        keep = self.m > 0
        return _FitPoints(
            x=self.m[keep] * self.a / self.b,
            u=v[keep] / self.b,
            df=np.full(int(keep.sum()), float(df)),
            loadings=loadings,
            correlation=correlation,
        )


def _mode_correlation(factors: np.ndarray, scores: np.ndarray, sv2: np.ndarray, n_channels: int) -> np.ndarray:
    """Correlation of each mode's coefficient with the shot factor (a brighter plasma is also a hotter one).

    Scores are the unit-norm shot loadings of the Gram eigenvectors; their noise share (n_channels of sv2)
    is uncorrelated with the factor, so the signal correlation is the raw one divided by sqrt(1 - C/sv2).
    The vector is shrunk, if needed, so that the joint covariance of (factor, modes) stays positive definite.
    """
    z = factors - factors.mean()
    if not np.any(z):
        return np.zeros(scores.shape[1])
    raw = (z @ scores) / np.linalg.norm(z) / np.linalg.norm(scores, axis=0)
    signal = raw / np.sqrt(np.clip(1.0 - n_channels / sv2, 1e-6, 1.0))
    signal = np.clip(signal, -1.0, 1.0)
    norm = float(np.linalg.norm(signal))
    return signal * (MAX_MODE_CORRELATION / norm) if norm > MAX_MODE_CORRELATION else signal


@dataclass
class _FitPoints:
    x: np.ndarray  # regressor m_c * mean(1/f) / mean(1/f^2)
    u: np.ndarray  # residual variance / mean(1/f^2)
    df: np.ndarray  # degrees of freedom of each u
    loadings: np.ndarray  # (r, n_valid) shape-fluctuation modes, counts
    correlation: np.ndarray  # (r,) correlation of each mode coefficient with the shot factor


def _sample_shots(x: np.ndarray, sample_id: str, floor: float | None, saturation: float | None) -> _SampleShots:
    k = x.shape[0]
    if k < MIN_SHOTS:
        raise ValueError(f"sample {sample_id!r}: {k} shot(s); the noise fit needs at least {MIN_SHOTS} replicates")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"sample {sample_id!r}: intensity holds NaN or infinite values")
    valid = np.ones(x.shape[1], dtype=bool)
    if saturation is not None:
        valid &= x.max(axis=0) < SATURATION_MARGIN * saturation
    if floor is not None:
        valid &= x.min(axis=0) > floor  # a channel at the floor in any shot was clipped there
    if valid.sum() < MIN_FIT_CHANNELS:
        raise ValueError(
            f"sample {sample_id!r}: only {int(valid.sum())} channels are free of saturation and clipping; "
            f"the noise fit needs at least {MIN_FIT_CHANNELS}"
        )
    f = _shot_factors(x, valid, sample_id)
    return _SampleShots(
        sample_id=sample_id,
        mean=x.mean(axis=0, dtype=np.float64),
        valid=valid,
        factors=f,
        y=x[:, valid] / f[:, None],
        total_mean=float(x[:, valid].sum(axis=1).mean()),
    )


def _fit_gain_read(xs: np.ndarray, us: np.ndarray, dfs: np.ndarray, where: str) -> tuple[float, float]:
    """Robust fit of var = g*x + r^2 over channels, on the log scale with a Huber loss.

    A sample variance with df degrees of freedom is var * chi2(df)/df, so log(u) - log(g*x + r^2) has a
    known mean and spread; standardising by them makes channels comparable and the Huber loss keeps
    channels with excess variance (line flanks, spikes) from pulling the fit. g > 0 and r^2 >= 0 by
    construction; raises when the variance does not grow with the mean.
    """
    keep = (us > 0) & (xs > 0) & np.isfinite(us) & np.isfinite(xs)
    xs, us, dfs = xs[keep], us[keep], dfs[keep]
    if xs.size < MIN_FIT_CHANNELS:
        raise ValueError(f"{where}: {xs.size} channels with a positive mean and variance; need {MIN_FIT_CHANNELS}")
    if xs.max() < MIN_MEAN_RANGE * xs.min():
        raise ValueError(
            f"{where}: channel means span too narrow a range ({xs.min():.4g}-{xs.max():.4g}, need a factor "
            f"{MIN_MEAN_RANGE:g}) to separate the gain from the read noise"
        )
    half = dfs / 2.0
    offset = special.digamma(half) - np.log(half)  # E[log(chi2_df / df)]
    spread = np.sqrt(special.polygamma(1, half))  # sd of log(chi2_df)
    target = np.log(us) - offset

    def residuals(theta: np.ndarray) -> np.ndarray:
        return (target - np.log(np.exp(theta[0]) * xs + theta[1] ** 2)) / spread

    slope, intercept = np.polyfit(xs, us, 1, w=1.0 / us)
    theta0 = np.array([math.log(max(slope, 1e-6 * float(np.median(us / xs)))), math.sqrt(max(intercept, 0.0))])
    fit = optimize.least_squares(residuals, theta0, loss="huber", f_scale=_HUBER_C, x_scale="jac")
    gain, read_noise = float(np.exp(fit.x[0])), abs(float(fit.x[1]))
    if not fit.success or not math.isfinite(gain) or not math.isfinite(read_noise):
        raise ValueError(f"{where}: the gain / read-noise fit did not converge ({fit.message})")
    # Counting noise must explain a tenth of the variance at the largest means, else no gain is measurable.
    top = xs >= np.quantile(xs, 0.9)
    if gain * float(np.median(xs[top])) < 0.1 * read_noise**2:
        raise ValueError(
            f"{where}: the per-channel variance does not grow with the mean (fitted gain {gain:.4g}, "
            f"read noise {read_noise:.4g}); cannot estimate the detector gain"
        )
    return gain, read_noise


def _shot_sigma(shots: _SampleShots, gain: float, read_noise: float, shot_factor: ShotFactor) -> float:
    """Spread of the shot factor: variance of the total-intensity factors minus their counting noise."""
    counting = (gain * shots.total_mean + int(shots.valid.sum()) * read_noise**2) / shots.total_mean**2
    beta2 = max(float(np.var(shots.factors, ddof=1)) - counting, 0.0)
    return math.sqrt(math.log1p(beta2)) if shot_factor == "lognormal" else math.sqrt(beta2)


def _detector_fits(shots: list[_SampleShots], points: list[_FitPoints], detector: Detector) -> list[tuple[float, float]]:
    if detector == "pooled":
        pooled = _fit_gain_read(
            np.concatenate([p.x for p in points]),
            np.concatenate([p.u for p in points]),
            np.concatenate([p.df for p in points]),
            "all samples (pooled)",
        )
        return [pooled] * len(points)
    return [_fit_gain_read(p.x, p.u, p.df, f"sample {sh.sample_id!r}") for sh, p in zip(shots, points)]


def fit_noise_model(
    ds: xr.Dataset,
    *,
    detector: Detector = "per_sample",
    shot_factor: ShotFactor = "normal",
    saturation: float | Literal["auto"] | None = "auto",
    instrument_fwhm_nm: float | None = None,
    max_shape_modes: int | None = None,
) -> NoiseModel:
    """Fit the mean spectrum and noise parameters of every sample from its replicate shots.

    ``detector="pooled"`` fits one gain and read noise for all samples (same detector), ``"per_sample"``
    one per sample. ``saturation``: counts at which the detector saturates, ``"auto"`` to detect a pile-up
    near the maximum, or None. Integer-valued data give rounded draws; non-negative data are clipped at 0.
    ``max_shape_modes``: at most this many shape-fluctuation modes per sample (0 = the paper's model:
    Poisson + shot factor + read noise only; None = as many as are significant, up to MAX_SHAPE_MODES).
    """
    if detector not in DETECTORS:
        raise ValueError(f"detector {detector!r} is not one of {DETECTORS}")
    if shot_factor not in SHOT_FACTORS:
        raise ValueError(f"shot_factor {shot_factor!r} is not one of {SHOT_FACTORS}")
    if instrument_fwhm_nm is not None and not instrument_fwhm_nm > 0:
        raise ValueError(f"instrument_fwhm_nm must be > 0 or None, got {instrument_fwhm_nm}")
    for var in ("intensity", "sample_id", "wavelength"):
        if var not in ds.variables:
            raise ValueError(f"dataset has no {var!r} variable (canonical layout: see DESIGN.md)")
    intensity = np.asarray(ds["intensity"].values, dtype=np.float64)
    if intensity.ndim != 2 or intensity.shape[0] == 0:
        raise ValueError(f"intensity: expected a non-empty (spectrum, wavelength) array, got shape {intensity.shape}")
    wavelength = np.asarray(ds["wavelength"].values, dtype=np.float64)
    sids = as_str_array(ds["sample_id"].values)

    if saturation == "auto":
        sat = detect_saturation(intensity)
    elif saturation is None:
        sat = None
    else:
        sat = float(saturation)
        if not sat > 0:
            raise ValueError(f"saturation must be > 0, 'auto' or None, got {saturation}")
    finite = intensity[np.isfinite(intensity)]
    floor = 0.0 if finite.size and finite.min() >= 0 else None
    integer = bool(finite.size and np.all(finite == np.round(finite)))

    labels = label_names(ds)
    label_units = {name: str(ds[name].attrs.get("units", "")) for name in labels}
    label_values = {name: np.asarray(ds[name].values, dtype=np.float64) for name in labels}

    shots: list[_SampleShots] = []
    sample_labels: list[dict[str, float]] = []
    for sid in sample_ids(ds):
        rows = np.flatnonzero(sids == sid)
        shots.append(_sample_shots(intensity[rows], sid, floor, sat))
        sample_labels.append({name: float(label_values[name][rows[0]]) for name in labels})

    max_modes = MAX_SHAPE_MODES if max_shape_modes is None else int(max_shape_modes)
    if max_modes < 0:
        raise ValueError(f"max_shape_modes must be >= 0 or None, got {max_shape_modes}")
    # Alternate: fit (gain, read noise) on the variance left after the shape modes found with the previous fit.
    fits: list[tuple[float, float]] | None = None
    for _ in range(MAX_FIT_ROUNDS):
        points = [
            sh.fit_points(None if fits is None else fits[i][0], 0.0 if fits is None else fits[i][1], max_modes)
            for i, sh in enumerate(shots)
        ]
        new_fits = _detector_fits(shots, points, detector)
        converged = fits is not None and all(
            abs(g1 - g0) <= 1e-4 * g0 and abs(r1 - r0) <= 1e-4 * max(r0, 1e-3)
            for (g0, r0), (g1, r1) in zip(fits, new_fits)
        )
        fits = new_fits
        if converged or max_modes == 0:
            break
    final = [sh.fit_points(g, r, max_modes) for sh, (g, r) in zip(shots, fits)]

    samples: dict[str, SampleNoise] = {}
    for sh, pts, (gain, read_noise), lab in zip(shots, final, fits, sample_labels):
        modes = np.zeros((pts.loadings.shape[0], intensity.shape[1]))
        modes[:, sh.valid] = pts.loadings
        samples[sh.sample_id] = SampleNoise(
            sample_id=sh.sample_id,
            mean=sh.mean,
            gain=gain,
            read_noise=read_noise,
            shot_sigma=_shot_sigma(sh, gain, read_noise, shot_factor),
            n_shots=sh.k,
            labels=lab,
            n_fit_channels=int(sh.valid.sum()),
            modes=modes,
            mode_correlation=pts.correlation,
        )
    return NoiseModel(
        wavelength=wavelength,
        samples=samples,
        label_units=label_units,
        shot_factor=shot_factor,
        detector=detector,
        floor=floor,
        saturation=sat,
        integer=integer,
        instrument_fwhm_nm=instrument_fwhm_nm,
    )


# ------------------------------------------------------------------------------------- sample


def _factors_from_z(model: NoiseModel, sigma: float, z: np.ndarray) -> np.ndarray:
    """Multiplicative shot factors with mean 1 from standard normal draws."""
    if model.shot_factor == "lognormal":
        return np.exp(sigma * z - 0.5 * sigma**2)
    return np.maximum(1.0 + sigma * z, 0.0)


def _mode_coefficients(rho: np.ndarray, z: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Unit-variance mode coefficients with correlation ``rho`` to ``z``: a = z*rho + e @ B, B B^T = I - rho rho^T."""
    norm2 = float(rho @ rho)
    if norm2 == 0.0:
        return e
    unit = rho / math.sqrt(norm2)
    shrink = 1.0 - math.sqrt(1.0 - norm2)
    b = np.eye(rho.size) - shrink * np.outer(unit, unit)
    return np.outer(z, rho) + e @ b


def standard_normal_f32(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 draws by the Box-Muller transform: about half the time of
    ``rng.standard_normal(shape, dtype=np.float32)`` (ziggurat; measured on one core of a 2-core VM: 4.6 vs
    9.1 ns per value), which is most of the read noise's cost.

    The radius sqrt(-2 ln(1 - u)) uses float64 uniforms (u in [0, 1) with 2^-53 resolution, so the tails reach
    8.5 standard deviations); the angle uses float32 uniforms (2^-24 of a turn). Pairs (r cos t, r sin t) fill
    the first and second half of the flat output. Draw order: all radius uniforms, then all angle uniforms."""
    size = math.prod(shape)
    half = (size + 1) // 2
    radius = rng.random(half)
    np.subtract(1.0, radius, out=radius)
    np.log(radius, out=radius)
    radius *= -2.0
    np.sqrt(radius, out=radius)
    radius32 = radius.astype(np.float32)
    del radius
    angle = rng.random(half, dtype=np.float32)
    angle *= np.float32(2.0 * math.pi)
    out = np.empty(2 * half, dtype=np.float32)
    np.cos(angle, out=out[:half])
    np.sin(angle, out=out[half:])
    out[:half] *= radius32
    out[half:] *= radius32
    return out[:size].reshape(shape)


def sample_spectra(model: NoiseModel, sample_id: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` synthetic shots of one sample, float32 (n, n_channels): shot factor, Poisson, read noise, clipping.

    Draw order (fixed, so bytes depend only on the generator state): shot factors, shape-mode coefficients
    (if the sample has modes), photo-electrons, read noise (``standard_normal_f32``; only when the sample's read
    noise is above zero: a zero-width Gaussian adds nothing).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    params = model.sample(sample_id)
    mean = model.sampling_mean(sample_id)
    z = rng.standard_normal(n)
    f = _factors_from_z(model, params.shot_sigma, z)
    if params.modes.shape[0]:  # shape fluctuations: a different expected spectrum for every shot
        coefficients = _mode_coefficients(params.mode_correlation, z, rng.standard_normal((n, params.modes.shape[0])))
        # E[f * a_j] = shot_sigma * rho_j (Stein's lemma, both factor laws): subtract it so that the mean of
        # f * expected stays the measured mean spectrum
        coefficients -= params.shot_sigma * params.mode_correlation
        expected = mean + coefficients @ params.modes
    else:
        expected = mean[None, :]
    lam = np.maximum(expected, 0.0) * (f[:, None] / params.gain)
    out = rng.poisson(lam).astype(np.float32)
    del lam
    out *= np.float32(params.gain)
    negative = np.minimum(expected, 0.0)
    if negative.any():  # channels expected below zero (dark-subtracted): only read noise around that level
        out += (negative * f[:, None]).astype(np.float32)
    del expected, negative
    if params.read_noise > 0:
        noise = standard_normal_f32(rng, out.shape)
        noise *= np.float32(params.read_noise)
        out += noise
        del noise
    if model.integer:
        np.rint(out, out=out)
    if model.floor is not None or model.saturation is not None:
        np.clip(out, model.floor, model.saturation, out=out)
    return out

