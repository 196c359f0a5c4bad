"""Per-sample noise model of replicate LIBS shots, fitted from data, and draws from it.

Model of one shot of sample s in channel c (counts):
    x_c = g * Poisson(f * m_c / g) + N(0, r^2),   f ~ N(1, beta) or log-normal with mean 1,
so var_c = g*m_c + r^2 + beta^2*m_c^2. The mean spectrum m is the average of the replicate shots;
the gain g (counts per photo-electron) and read noise r come from how the per-channel variance of
shots normalised by their total intensity grows with the mean (robust binned-median fit); beta comes
from the spread of the replicates' total intensity. Channels that are saturated or clipped at the
detector floor in any replicate are left out of the fit, and draws are clipped the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
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
SATURATION_MARGIN = 0.95  # channels with any replicate above margin * saturation are left out of the fit
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


def _json_float(v: float) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


# ----------------------------------------------------------------------------------------- fit


def detect_saturation(values: np.ndarray, min_count: int = 20, contrast: float = 5.0) -> float | None:
    """Saturation level of a detector from a pile-up of values just below the maximum, or None.

    Histogram the top 20 % of the range in 1 %-wide bins; a detector that saturates piles values up in
    a bin in the top 10 % far above the typical bin; the level returned is the median of the piled-up
    values (what a saturated channel reads).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    top = float(values.max())
    if top <= 0:
        return None
    edges = np.linspace(0.8 * top, top, 21)
    counts, _ = np.histogram(values[values >= edges[0]], edges)
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
class _SamplePoints:
    """Per-channel statistics of one sample's shots after removing the shot factor."""

    sample_id: str
    mean: np.ndarray  # raw mean spectrum (all channels)
    factors: np.ndarray  # (k,) total-intensity factors
    x: np.ndarray  # regressor m_c * mean(1/f) / mean(1/f^2) on fitted channels
    u: np.ndarray  # var_c / mean(1/f^2)
    total_mean: float  # mean total intensity over fitted channels
    n_valid: int


def _sample_points(x: np.ndarray, sample_id: str, floor: float | None, saturation: float | None) -> _SamplePoints:
    k = x.shape[0]
    if k < MIN_SHOTS:
        raise ValueError(f"sample {sample_id!r}: {k} shot(s); the noise fit needs at least {MIN_SHOTS} replicates")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"sample {sample_id!r}: intensity holds NaN or infinite values")
    valid = np.ones(x.shape[1], dtype=bool)
    if saturation is not None:
        valid &= x.max(axis=0) < SATURATION_MARGIN * saturation
    if floor is not None:
        # a channel that touches the floor in any shot, or whose mean is within 3 sd of it, is clipped
        valid &= (x.min(axis=0) > floor) & (x.mean(axis=0) - 3.0 * x.std(axis=0, ddof=1) > floor)
    if valid.sum() < MIN_FIT_CHANNELS:
        raise ValueError(
            f"sample {sample_id!r}: only {int(valid.sum())} channels are free of saturation and clipping; "
            f"the noise fit needs at least {MIN_FIT_CHANNELS}"
        )
    f = _shot_factors(x, valid, sample_id)
    y = x[:, valid] / f[:, None]
    m = y.mean(axis=0)
    v = y.var(axis=0, ddof=1)
    a, b = float(np.mean(1.0 / f)), float(np.mean(1.0 / f**2))
    keep = m > 0
    return _SamplePoints(
        sample_id=sample_id,
        mean=x.mean(axis=0, dtype=np.float64),
        factors=f,
        x=m[keep] * a / b,
        u=v[keep] / b,
        total_mean=float(x[:, valid].sum(axis=1).mean()),
        n_valid=int(valid.sum()),
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
    if xs.size < MIN_FIT_CHANNELS or xs.max() <= xs.min() * (1 + 1e-9):
        raise ValueError(f"{where}: too few channels with distinct positive means to fit gain and read noise")
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
    # A gain that explains almost none of the variance at the largest means: variance does not grow with mean.
    top = xs >= np.quantile(xs, 0.9)
    if gain * float(np.median(xs[top])) < 0.01 * read_noise**2:
        raise ValueError(
            f"{where}: the per-channel variance does not grow with the mean (fitted gain {gain:.4g}, "
            f"read noise {read_noise:.4g}); cannot estimate the detector gain"
        )
    return gain, read_noise


def _shot_sigma(points: _SamplePoints, gain: float, read_noise: float, shot_factor: ShotFactor) -> float:
    """Spread of the shot factor: variance of the total-intensity factors minus their counting noise."""
    counting = (gain * points.total_mean + points.n_valid * read_noise**2) / points.total_mean**2
    beta2 = max(float(np.var(points.factors, ddof=1)) - counting, 0.0)
    return math.sqrt(math.log1p(beta2)) if shot_factor == "lognormal" else math.sqrt(beta2)


def fit_noise_model(
    ds: xr.Dataset,
    *,
    detector: Detector = "per_sample",
    shot_factor: ShotFactor = "normal",
    saturation: float | Literal["auto"] | None = "auto",
    instrument_fwhm_nm: float | None = None,
) -> NoiseModel:
    """Fit the mean spectrum and noise parameters of every sample from its replicate shots.

    ``detector="pooled"`` fits one gain and read noise for all samples (same detector), ``"per_sample"``
    one per sample. ``saturation``: counts at which the detector saturates, ``"auto"`` to detect a pile-up
    near the maximum, or None. Integer-valued data give rounded draws; non-negative data are clipped at 0.
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
    sids = np.asarray(ds["sample_id"].values).astype(str)

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

    points: list[_SamplePoints] = []
    sample_labels: list[dict[str, float]] = []
    for sid in sample_ids(ds):
        rows = np.flatnonzero(sids == sid)
        points.append(_sample_points(intensity[rows], sid, floor, sat))
        sample_labels.append({name: float(label_values[name][rows[0]]) for name in labels})

    if detector == "pooled":
        pooled = _fit_gain_read(
            np.concatenate([p.x for p in points]),
            np.concatenate([p.u for p in points]),
            np.concatenate([np.full(p.x.size, p.factors.size - 1.0) for p in points]),
            "all samples (pooled)",
        )
        detector_fits = [pooled] * len(points)
    else:
        detector_fits = [
            _fit_gain_read(p.x, p.u, np.full(p.x.size, p.factors.size - 1.0), f"sample {p.sample_id!r}")
            for p in points
        ]

    samples: dict[str, SampleNoise] = {}
    for p, (gain, read_noise), lab in zip(points, detector_fits, sample_labels):
        samples[p.sample_id] = SampleNoise(
            sample_id=p.sample_id,
            mean=p.mean,
            gain=gain,
            read_noise=read_noise,
            shot_sigma=_shot_sigma(p, gain, read_noise, shot_factor),
            n_shots=int(p.factors.size),
            labels=lab,
            n_fit_channels=p.n_valid,
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


def shot_factors(model: NoiseModel, sample_id: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` multiplicative shot factors (mean 1) of one sample."""
    sigma = model.sample(sample_id).shot_sigma
    z = rng.standard_normal(n)
    if model.shot_factor == "lognormal":
        return np.exp(sigma * z - 0.5 * sigma**2)
    return np.maximum(1.0 + sigma * z, 0.0)


def sample_spectra(model: NoiseModel, sample_id: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` synthetic shots of one sample, float32 (n, n_channels): shot factor, Poisson, read noise, clipping.

    Draw order (fixed, so bytes depend only on the generator state): shot factors, photo-electrons, read noise.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    params = model.sample(sample_id)
    mean = model.sampling_mean(sample_id)
    f = shot_factors(model, sample_id, n, rng)
    positive = np.maximum(mean, 0.0)
    lam = np.multiply.outer(f, positive / params.gain)
    out = rng.poisson(lam).astype(np.float32)
    del lam
    out *= np.float32(params.gain)
    negative = np.minimum(mean, 0.0)
    if negative.any():  # channels whose mean is below zero (dark-subtracted): only read noise around it
        out += np.multiply.outer(f, negative).astype(np.float32)
    noise = rng.standard_normal(out.shape, dtype=np.float32)
    noise *= np.float32(params.read_noise)
    out += noise
    del noise
    if model.integer:
        np.rint(out, out=out)
    if model.floor is not None or model.saturation is not None:
        np.clip(out, model.floor, model.saturation, out=out)
    return out


def spectra_of(ds: xr.Dataset, sample_id: str) -> np.ndarray:
    """The measured shots of one sample, float64 (k, n_channels)."""
    rows = np.flatnonzero(np.asarray(ds["sample_id"].values).astype(str) == sample_id)
    if rows.size == 0:
        raise KeyError(f"dataset has no spectra of sample {sample_id!r}")
    return np.asarray(ds["intensity"].isel(spectrum=rows).values, dtype=np.float64)


def label_vector(model: NoiseModel, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Label of every model sample, per label name (float64, NaN = unknown)."""
    names = list(model.label_units) if names is None else list(names)
    return {n: np.array([s.labels.get(n, math.nan) for s in model.samples.values()]) for n in names}
