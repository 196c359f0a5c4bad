"""Out-of-sample realism: fit the noise model on half of each sample's shots, test it on the other half.

An in-sample check compares draws with the very shots the model was fitted on, so it passes almost by
construction. Here, per sample, the shots are split at random (10 -> 5 fit / 5 held out) and three
checks compare synthetic draws of the fit-half model with the held-out measured shots:

1. Split-shot checks. ``realism_report`` per sample (mean ratio, KS of line areas and total intensity;
   variance ratios on total-normalised shots) with tolerances for two small halves, plus ``total_t``
   (held-out vs model mean total intensity, a t statistic on ``k_fit - 1`` df) and ``shape_chi2`` (mean
   over channels of the squared standardised difference of the total-normalised mean spectra; ~1 for a
   right model, ~1/4 for noise x2, > 1 for shape fluctuations the model lacks).
2. Residual principal components. Shot-to-shot residuals of total-normalised shots (the shot factor is
   checked by ``total_t``), scaled by 1/sqrt(fit-half mean) so counting noise is roughly flat, of the
   held-out shots vs the synthetic draws: explained-variance fractions,
   principal-angle cosines and the variance of each set captured by the other's top PCs. Pass/fail uses
   two Monte-Carlo nulls drawn from the fitted model itself: the share of held-out residual variance the
   synthetic top PCs capture, and the ratio of total residual variances.
3. Train-on-synthetic, test-on-real (TSTR): leave one sample out; a univariate calibration on the
   first analyte line area is fitted on synthetic draws of the training samples' models and, separately,
   on their real shots; both predict the left-out sample's real shots. A calibration on shot-averaged
   areas only tests the synthetic mean line areas (ratio ~1 for a right model, ~1.9 for means x1.15).

Power with 5 + 5 shots. The shot factor's spread is estimated from 5 values and moves every channel
together, so raw per-channel variance ratios are shown but not judged; the variance checks use shots
divided by their total (counting and shape noise, independent across channels) and compare the median
ratio with the median of F(n_syn - 1, k_held - 1). A common mean bias is weak per sample (the two halves'
means differ by ~shot spread * sqrt(2/5)), so the ``total_t`` p-values (spread pooled over both halves)
are also combined over samples (Fisher). The KS tests of line areas and total intensity are reported but
not judged: their null takes the synthetic law as exact while its width comes from 5 shots (toy campaign,
right model, 12 seeds: 5 rejections in 216 tests at a nominal 0.06 % each). Per-sample tests run at level
alpha / n_samples. A sample whose fit half cannot be fitted fails (``noise_fit``). Measured false alarms
of the whole report with a right model (12 seeds, n_synthetic=100, n_null=50): 2 of 12 on the toy
campaign, 1 of 12 on a toy with shape modes, all from splits that put the brightest shots in one half.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import linalg, stats

from libs_pipeline.baselines.univariate import UnivariateCalibration
from libs_pipeline.features.line_features import feature_column, line_features
from libs_pipeline.features.lines import LineWindow, resolve_lines
from libs_pipeline.spectra.atomic import atomic_write_json, atomic_write_text
from libs_pipeline.spectra.dataset import make_spectra_dataset, resolve_analyte, select_samples
from libs_pipeline.spectra.dataset import sample_ids as dataset_sample_ids
from libs_pipeline.synth.noise_model import NoiseModel, as_str_array, detect_saturation, fit_noise_model, sample_spectra
from libs_pipeline.synth.realism import RealismThresholds, _compared_channels, realism_report

MODEL_OPTIONS = ("detector", "shot_factor", "saturation", "instrument_fwhm_nm", "max_shape_modes")
MIN_HALF = 3  # shots per half: the noise fit needs 3 replicates, a variance needs >= 2
Sampler = Callable[[NoiseModel, str, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class HoldoutThresholds:
    """Pass/fail rules of the holdout report; each is documented where it is used."""

    alpha: float = 0.01  # family-wise level of each check over samples (Bonferroni: alpha / n_samples per sample)
    mean_ratio_floor: float = 0.05  # realism mean check: tolerance = max(floor, 4 sd of the difference of two halves)
    variance_ratio_factor: float = 1.5  # median variance ratio of total-normalised shots / its F-law median in [1/f, f]
    variance_outlier_excess: float = 0.10  # realism: off-band channel share may exceed the F-law share by this
    shape_chi2_factor: float = 2.0  # shape_chi2 within [1/f, f]
    n_pcs: int = 3  # residual PCs compared (at most k_heldout - 1)
    tstr_ratio_max: float = 1.5  # TSTR: RMSE(train on synthetic) / RMSE(train on real) at most this

    def __post_init__(self) -> None:
        for name in ("alpha", "mean_ratio_floor", "variance_outlier_excess"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"HoldoutThresholds.{name} must lie in (0, 1), got {getattr(self, name)}")
        for name in ("variance_ratio_factor", "shape_chi2_factor", "tstr_ratio_max"):
            if not getattr(self, name) > 1:
                raise ValueError(f"HoldoutThresholds.{name} must be > 1, got {getattr(self, name)}")
        if self.n_pcs < 1:
            raise ValueError(f"HoldoutThresholds.n_pcs must be >= 1, got {self.n_pcs}")


@dataclass
class HoldoutRealism:
    """Split-shot, residual-PC and TSTR results: per-sample tables, campaign verdicts, failures."""

    holdout: pd.DataFrame  # one row per sample: split-shot statistics and checks
    pcs: pd.DataFrame  # one row per sample: residual principal-component comparison
    tstr: pd.DataFrame  # one row per left-out sample (empty when TSTR was not run)
    campaign: dict[str, Any]  # combined statistics (Fisher p, pooled TSTR RMSEs and ratio)
    thresholds: HoldoutThresholds
    settings: dict[str, Any]  # seed, n_synthetic, n_null, analyte, line, model options
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "holdout_passed": {r.sample_id: bool(r.passed) for r in self.holdout.itertuples()},
            "pcs_passed": {r.sample_id: bool(r.passed) for r in self.pcs.itertuples()},
            **self.campaign,
            "failures": list(self.failures),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "thresholds": asdict(self.thresholds),
            "settings": dict(self.settings),
            "holdout": _records(self.holdout),
            "pcs": _records(self.pcs),
            "tstr": _records(self.tstr),
        }

    def to_markdown(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        out = [f"# Holdout realism report: {verdict}", ""]
        out += [f"- {f}" for f in self.failures] or ["All checks within thresholds."]
        out += ["", f"Settings: {self.settings}", "", f"Thresholds: {asdict(self.thresholds)}", ""]
        out += ["## Campaign", ""] + [f"- {k}: {_fmt(v)}" for k, v in self.campaign.items()] + [""]
        out += ["## Split-shot checks (fit on one half, compared with the other)", ""]
        out += [_table(self.holdout, ["sample_id", "n_fit", "n_heldout", "mean_ratio_median", "variance_ratio_median",
                                      "variance_off_fraction", "total_t", "total_p", "shape_chi2", "min_ks_p",
                                      "failed_checks", "passed"]), ""]
        out += ["## Residual principal components (held-out vs synthetic)", ""]
        out += [_table(self.pcs, ["sample_id", "n_pcs", "ev_heldout", "ev_synthetic", "cos_angles",
                                  "captured_heldout_by_syn", "captured_null_low", "captured_syn_by_heldout",
                                  "variance_ratio", "variance_null_low", "variance_null_high", "failed_checks",
                                  "passed"]), ""]
        if len(self.tstr):
            out += ["## Train on synthetic, test on real (leave one sample out)", ""]
            out += [_table(self.tstr, list(self.tstr.columns)), ""]
        return "\n".join(out)


    def save(self, directory: str | Path) -> dict[str, Path]:
        """Write holdout_realism.json and holdout_realism.md into ``directory`` (atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {"json": directory / "holdout_realism.json", "markdown": directory / "holdout_realism.md"}
        atomic_write_json(paths["json"], self.to_dict())
        atomic_write_text(paths["markdown"], self.to_markdown())
        return paths


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in table.to_dict(orient="records")]


def _plain(v: Any) -> Any:
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(float(v)) else float(v)
    return v


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.3g}"
    return str(v)


def _table(table: pd.DataFrame, cols: Sequence[str]) -> str:
    header = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    return header + "".join("| " + " | ".join(_fmt(row[c]) for c in cols) + " |\n" for _, row in table.iterrows())


# ------------------------------------------------------------------------------------------ split


def split_shots(ds: xr.Dataset, seed: int = 0) -> tuple[xr.Dataset, xr.Dataset]:
    """(fit half, held-out half) of every sample's shots, chosen at random; odd counts give the fit half one more."""
    sids = as_str_array(ds["sample_id"].values)
    fit_rows, held_rows = [], []
    rngs = np.random.SeedSequence(seed).spawn(len(dataset_sample_ids(ds)))
    for sid, ss in zip(dataset_sample_ids(ds), rngs):
        rows = np.flatnonzero(sids == sid)
        if rows.size < 2 * MIN_HALF:
            raise ValueError(
                f"sample {sid!r}: {rows.size} shots; the split-shot check needs at least {2 * MIN_HALF} "
                f"({MIN_HALF} to fit the noise model, {MIN_HALF} held out)"
            )
        perm = np.random.default_rng(ss).permutation(rows)
        k_fit = (rows.size + 1) // 2
        fit_rows.append(np.sort(perm[:k_fit]))
        held_rows.append(np.sort(perm[k_fit:]))
    return ds.isel(spectrum=np.concatenate(fit_rows)), ds.isel(spectrum=np.concatenate(held_rows))


def _resolved_options(ds: xr.Dataset, model_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """fit_noise_model options; ``saturation="auto"`` is resolved on the whole dataset, as the synthesis does."""
    options = dict(model_options or {})
    unknown = sorted(set(options) - set(MODEL_OPTIONS))
    if unknown:
        raise ValueError(f"model_options: unknown keys {unknown}; allowed: {list(MODEL_OPTIONS)}")
    if options.get("saturation", "auto") == "auto":
        options["saturation"] = detect_saturation(np.asarray(ds["intensity"].values))
    return options


def _fit_halves(fit_ds: xr.Dataset, options: dict[str, Any]) -> tuple[NoiseModel, dict[str, str]]:
    """Noise model of the fit halves and, per sample whose half cannot be fitted, the fit error.

    A per-sample detector fits samples independently, so when the joint fit fails each sample is refitted
    alone and the ones that fail are reported (a model that cannot be fitted from k_fit shots is a finding).
    """
    try:
        return fit_noise_model(fit_ds, **options), {}
    except ValueError:
        if options.get("detector", "per_sample") != "per_sample":
            raise
    models, errors = {}, {}
    for sid in dataset_sample_ids(fit_ds):
        try:
            models[sid] = fit_noise_model(select_samples(fit_ds, [sid]), **options)
        except ValueError as exc:
            errors[sid] = str(exc)
    if not models:
        raise ValueError(f"the noise model cannot be fitted on any sample's fit half: {errors}")
    first = next(iter(models.values()))
    return first.with_samples({sid: m.sample(sid) for sid, m in models.items()}), errors


def _draw(model: NoiseModel, sampler: Sampler, n: int, seed_seq: np.random.SeedSequence) -> dict[str, np.ndarray]:
    """``n`` draws per model sample, float64, each sample from its own spawned generator."""
    return {
        sid: np.asarray(sampler(model, sid, n, np.random.default_rng(ss)), dtype=np.float64)
        for sid, ss in zip(model.sample_ids, seed_seq.spawn(len(model.sample_ids)))
    }


# ------------------------------------------------------------------------------ split-shot checks


def _shape_chi2(held: np.ndarray, syn: np.ndarray, k_fit: int) -> float:
    """Mean over channels of d^2 / (var_syn (1/k_held + 1/k_fit)), d = difference of total-normalised mean spectra.

    The model's mean is the fit-half mean, so under a right model d has variance var (1/k_held + 1/k_fit)
    and the statistic is ~1; normalising each shot by its total removes the (poorly known) shot factor.
    """
    scale = syn.sum(axis=1).mean()
    y_held = held * (scale / held.sum(axis=1))[:, None]
    y_syn = syn * (scale / syn.sum(axis=1))[:, None]
    d = y_held.mean(axis=0) - y_syn.mean(axis=0)
    var = y_syn.var(axis=0, ddof=1)
    keep = var > 0
    return float(np.mean(d[keep] ** 2 / (var[keep] * (1.0 / held.shape[0] + 1.0 / k_fit))))


def _one_sample_report(
    sid: str, held: np.ndarray, syn: np.ndarray, wl: np.ndarray, lines: list[LineWindow], rt: RealismThresholds
) -> pd.Series:
    """``realism_report`` row of one sample's held-out shots vs its synthetic draws."""
    held_ds = make_spectra_dataset(held, wl, [sid] * held.shape[0], np.arange(held.shape[0]))
    syn_ds = make_spectra_dataset(syn, wl, [sid] * syn.shape[0], np.arange(syn.shape[0]))
    report = realism_report(held_ds, syn_ds, lines, thresholds=rt, max_synthetic_per_sample=syn.shape[0])
    return report.per_sample.iloc[0]


def _split_shot_row(
    sid: str, held: np.ndarray, syn: np.ndarray, ok: np.ndarray, k_fit: int,
    wl: np.ndarray, lines: list[LineWindow], t: HoldoutThresholds, n_samples: int,
) -> dict[str, Any]:
    """One sample's split-shot statistics and checks (see the module docstring)."""
    k_h, n = held.shape[0], syn.shape[0]
    total_h, total_s = held[:, ok].sum(axis=1), syn[:, ok].sum(axis=1)
    # two-sample t of the halves' mean totals (the model's mean and spread are the fit half's): the spread is
    # pooled from the held-out shots and the model, k_held + k_fit - 2 df, so a shot spread underestimated
    # from k_fit values does not inflate it
    pooled = ((k_h - 1) * np.var(total_h, ddof=1) + (k_fit - 1) * np.var(total_s, ddof=1)) / (k_h + k_fit - 2)
    se = math.sqrt(float(pooled) * (1.0 / k_h + 1.0 / k_fit))
    total_t = float((total_h.mean() - total_s.mean()) / se) if se > 0 else math.inf
    total_p = float(2.0 * stats.t.sf(abs(total_t), k_h + k_fit - 2))
    cv = math.sqrt(float(pooled)) / float(np.mean(total_s))
    # the two halves' means differ by the shot-factor spread * sqrt(1/k_held + 1/k_fit): allow 4 of those
    mean_tol = min(0.5, max(t.mean_ratio_floor, 4.0 * cv * math.sqrt(1.0 / k_h + 1.0 / k_fit)))
    rt = RealismThresholds(
        mean_ratio_tolerance=mean_tol,
        variance_ratio_factor=t.variance_ratio_factor,
        variance_outlier_excess=t.variance_outlier_excess,
        ks_alpha=t.alpha / n_samples,
    )
    raw = _one_sample_report(sid, held, syn, wl, lines, rt)
    # variances of total-normalised shots: the shot factor (spread known from k_fit values only, shared by
    # every channel) would otherwise move all channels' variance ratios together
    target = float(total_s.mean())
    norm = _one_sample_report(sid, held * (target / total_h)[:, None], syn * (target / total_s)[:, None], wl, lines, rt)
    chi2 = _shape_chi2(held[:, ok], syn[:, ok], k_fit)
    ks_cols = [c for c in raw.index if str(c).endswith(":ks_p")]
    # judged from the raw report: the mean only. Its KS tests are shown, not judged: their null takes the
    # synthetic law as known, but its width (the shot spread) comes from k_fit values (+-35 % for 5)
    failed = [c for c in str(raw["failed_checks"]).split(",") if c == "mean"]
    failed += [c for c in str(norm["failed_checks"]).split(",") if c == "variance_spread"]
    # a right model's median ratio is the median of F(n - 1, k_held - 1) (the held-out variances have few df)
    variance_expected = float(stats.f.median(n - 1, k_h - 1))
    relative = float(norm["variance_ratio_median"]) / variance_expected
    if not 1.0 / t.variance_ratio_factor <= relative <= t.variance_ratio_factor:
        failed.append("variance")
    if total_p < t.alpha / n_samples:
        failed.append("total_t")
    if not 1.0 / t.shape_chi2_factor <= chi2 <= t.shape_chi2_factor:
        failed.append("shape_chi2")
    return {
        "sample_id": sid,
        "n_fit": k_fit,
        "n_heldout": k_h,
        "n_synthetic": n,
        "n_channels": int(ok.sum()),
        "mean_ratio_median": float(raw["mean_ratio_median"]),
        "mean_ratio_tolerance": float(raw["mean_ratio_tolerance"]),
        "raw_variance_ratio_median": float(raw["variance_ratio_median"]),  # shown only: no power with 5 + 5 shots
        "variance_ratio_median": float(norm["variance_ratio_median"]),
        "variance_ratio_expected": variance_expected,
        "variance_off_fraction": float(norm["variance_off_fraction"]),
        "variance_off_expected": float(norm["variance_off_expected"]),
        "total_t": total_t,
        "total_p": total_p,
        "shape_chi2": chi2,
        **{str(c): float(raw[c]) for c in ks_cols},
        "min_ks_p": float(min(raw[c] for c in ks_cols)),
        "ks_p_threshold": float(raw["ks_p_threshold"]),
        "failed_checks": ",".join(failed),
        "passed": not failed,
    }


# ------------------------------------------------------------------------------- residual PCs


def _top_pcs(resid: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(explained-variance fractions of the top ``k`` PCs, their (k, channels) orthonormal directions).

    Uses the small (shots x shots) Gram matrix: its eigenvectors give the PCs far faster than an SVD.
    """
    eig, vecs = np.linalg.eigh(resid @ resid.T)
    order = np.argsort(eig)[::-1][:k]
    sv2 = np.maximum(eig[order], 1e-300)
    directions = (vecs[:, order].T @ resid) / np.sqrt(sv2)[:, None]
    return sv2 / float(np.sum(np.maximum(eig, 0.0))), directions


def _captured(resid: np.ndarray, directions: np.ndarray) -> float:
    """Share of the residuals' total variance that lies in the span of ``directions``."""
    return float(np.sum((resid @ directions.T) ** 2) / np.sum(resid**2))


def _residuals(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=0)) * scale


def _normalised(x: np.ndarray) -> np.ndarray:
    """Shots divided by their total relative to the mean total: the shot factor (checked by total_t) removed."""
    totals = x.sum(axis=1)
    return x * (totals.mean() / totals)[:, None]


def _pc_row(
    sid: str, model: NoiseModel, sampler: Sampler, held: np.ndarray, syn: np.ndarray, ok: np.ndarray,
    k_fit: int, t: HoldoutThresholds, n_samples: int, n_null: int, seed_seq: np.random.SeedSequence,
) -> dict[str, Any]:
    """Residual PC comparison of one sample, with nulls from ``n_null`` model draws of held-out and fit size.

    Pass: the synthetic top-k PCs capture at least the lower null limit of the share of held-out residual
    variance (null: held-out-sized draws of the model), and the ratio of total residual variances
    (synthetic / held-out) lies inside the null band (null: fit-sized / held-out-sized draws, which mimics
    that the model's spread was estimated from k_fit shots). Limits: mean -/+ z sd of the null on the
    logit (share) or log (ratio) scale, z the two-sided normal quantile at alpha / n_samples.
    """
    k_h = held.shape[0]
    k = min(t.n_pcs, k_h - 1)
    scale = 1.0 / np.sqrt(np.maximum(model.sample(sid).mean[ok], 1.0))
    r_h, r_s = _residuals(_normalised(held[:, ok]), scale), _residuals(_normalised(syn[:, ok]), scale)
    ev_h, v_h = _top_pcs(r_h, k)
    ev_s, v_s = _top_pcs(r_s, k)
    cos = np.cos(linalg.subspace_angles(v_s.T, v_h.T))[::-1]  # largest cosine (smallest angle) first
    captured_h = _captured(r_h, v_s)
    var_s = float(np.sum(r_s**2)) / (syn.shape[0] - 1)
    ratio = var_s / (float(np.sum(r_h**2)) / (k_h - 1))
    size = k_h + k_fit
    all_draws = np.asarray(sampler(model, sid, n_null * size, np.random.default_rng(seed_seq)), dtype=np.float64)
    null_captured, null_ratio = np.empty(n_null), np.empty(n_null)
    for i in range(n_null):
        draws = _normalised(all_draws[i * size:(i + 1) * size, ok])
        r_null_h, r_null_f = _residuals(draws[:k_h], scale), _residuals(draws[k_h:], scale)
        null_captured[i] = _captured(r_null_h, v_s)
        null_ratio[i] = (np.sum(r_null_f**2) / (k_fit - 1)) / (np.sum(r_null_h**2) / (k_h - 1))
    # tail quantiles from a normal law fitted to the null on the logit / log scale (stable with few draws)
    z = float(stats.norm.isf(t.alpha / n_samples / 2))
    logit = np.log(null_captured / (1.0 - null_captured))
    low = float(1.0 / (1.0 + np.exp(-(logit.mean() - z * logit.std(ddof=1)))))
    log_ratio = np.log(null_ratio)
    v_lo, v_hi = (float(np.exp(log_ratio.mean() + sign * z * log_ratio.std(ddof=1))) for sign in (-1, 1))
    failed = []
    if captured_h < low:
        failed.append("pc_capture")
    if not v_lo <= ratio <= v_hi:
        failed.append("pc_variance")
    return {
        "sample_id": sid,
        "n_pcs": k,
        "ev_heldout": [float(v) for v in ev_h],
        "ev_synthetic": [float(v) for v in ev_s],
        "cos_angles": [float(v) for v in cos],
        "captured_heldout_by_syn": captured_h,
        "captured_null_median": float(np.median(null_captured)),
        "captured_null_low": low,
        "captured_syn_by_heldout": _captured(r_s, v_h),
        "variance_ratio": ratio,
        "variance_null_low": v_lo,
        "variance_null_high": v_hi,
        "failed_checks": ",".join(failed),
        "passed": not failed,
    }


# ---------------------------------------------------------------------------------------- TSTR


def _rmse(err: np.ndarray) -> float:
    return float(np.sqrt(np.mean(err**2)))


def tstr_table(
    ds: xr.Dataset, analyte: str, line: LineWindow, *, model_options: Mapping[str, Any] | None = None,
    n_synthetic: int = 200, degree: int = 1, seed: int = 0, sampler: Sampler = sample_spectra,
) -> pd.DataFrame:
    """Leave one sample out: RMSE on the left-out sample's real shots of a univariate calibration fitted on
    synthetic draws of the other samples' noise models vs on their real shots (one row per left-out sample)."""
    options = _resolved_options(ds, model_options)
    wl = np.asarray(ds["wavelength"].values, dtype=np.float64)
    sids = as_str_array(ds["sample_id"].values)
    y_all = np.asarray(ds[analyte].values, dtype=np.float64)
    area_col = feature_column(line, "area")
    area_all = line_features(np.asarray(ds["intensity"].values, dtype=np.float64), wl, [line])[area_col].to_numpy()
    samples = dataset_sample_ids(ds)
    if len(samples) < degree + 2:
        raise ValueError(f"TSTR: {len(samples)} samples; leave-one-out with degree {degree} needs {degree + 2}")
    rows = []
    # per-sample detector: each sample's fit uses its own shots only, so one fit serves every fold (the
    # left-out sample's parameters are never used); a pooled detector is refitted without the left-out sample
    full = fit_noise_model(ds, **options) if options.get("detector", "per_sample") == "per_sample" else None
    for sid, ss in zip(samples, np.random.SeedSequence(seed).spawn(len(samples))):
        test, train = sids == sid, sids != sid
        if full is not None:
            model = full.with_samples({s: full.sample(s) for s in samples if s != sid})
        else:
            model = fit_noise_model(ds.isel(spectrum=np.flatnonzero(train)), **options)
        draws = _draw(model, sampler, n_synthetic, ss)
        syn_area = np.concatenate([line_features(d, wl, [line])[area_col].to_numpy() for d in draws.values()])
        syn_y = np.concatenate([np.full(n_synthetic, model.sample(s).labels[analyte]) for s in draws])
        syn_groups = np.repeat(list(draws), n_synthetic)
        on_syn = UnivariateCalibration(degree).fit(syn_area, syn_y, groups=syn_groups)
        on_real = UnivariateCalibration(degree).fit(area_all[train], y_all[train], groups=sids[train])
        truth = y_all[test]
        rmse_syn = _rmse(on_syn.predict(area_all[test]) - truth)
        rmse_real = _rmse(on_real.predict(area_all[test]) - truth)
        rows.append({
            "sample_id": sid,
            analyte: float(truth[0]),
            "n_test_shots": int(test.sum()),
            "rmse_train_synthetic": rmse_syn,
            "rmse_train_real": rmse_real,
            "ratio": rmse_syn / rmse_real if rmse_real > 0 else math.inf,
        })
    return pd.DataFrame(rows)


# -------------------------------------------------------------------------------------- report


def holdout_realism(
    ds: xr.Dataset,
    analyte: str | None = None,
    lines: Sequence[LineWindow | dict] | None = None,
    *,
    seed: int = 0,
    n_synthetic: int = 200,
    n_null: int = 100,
    model_options: Mapping[str, Any] | None = None,
    thresholds: HoldoutThresholds | None = None,
    tstr: bool = True,
    tstr_degree: int = 1,
    sampler: Sampler = sample_spectra,
) -> HoldoutRealism:
    """Out-of-sample realism of the noise model on a measured campaign (see the module docstring).

    ``model_options``: the fit_noise_model keywords the synthesis uses (``MODEL_OPTIONS``); ``lines``
    default to the analyte's default lines, the first one feeds TSTR; ``sampler`` draws from a fitted
    model (``sample_spectra``; tests pass a deliberately broken one). Same inputs + seed -> same report.
    """
    t = thresholds or HoldoutThresholds()
    if n_synthetic < 20 or n_null < 20:
        raise ValueError(f"n_synthetic and n_null must be >= 20, got {n_synthetic} and {n_null}")
    analyte, _ = resolve_analyte(ds, analyte, "holdout_realism")
    line_windows = resolve_lines(analyte, lines)
    options = _resolved_options(ds, model_options)
    fit_ds, held_ds = split_shots(ds, seed)
    model, fit_errors = _fit_halves(fit_ds, options)
    root = np.random.SeedSequence(seed)
    draw_seq, null_seq, tstr_seq = root.spawn(3)
    synthetic = _draw(model, sampler, n_synthetic, draw_seq)
    wl = np.asarray(ds["wavelength"].values, dtype=np.float64)
    held_all = np.asarray(held_ds["intensity"].values, dtype=np.float64)
    held_ids = as_str_array(held_ds["sample_id"].values)
    finite = held_all[np.isfinite(held_all)]
    floor_clipped = bool(finite.size and finite.min() >= 0 and np.any(finite == 0))
    fit_all = np.asarray(fit_ds["intensity"].values, dtype=np.float64)
    fit_ids = as_str_array(fit_ds["sample_id"].values)
    samples = dataset_sample_ids(ds)
    holdout_rows, pc_rows = [], []
    for sid, ss in zip(samples, null_seq.spawn(len(samples))):
        held = held_all[held_ids == sid]
        if sid in fit_errors:
            k_fit = int(np.sum(fit_ids == sid))
            row = {"sample_id": sid, "n_fit": k_fit, "n_heldout": held.shape[0], "failed_checks": "noise_fit",
                   "passed": False, "error": fit_errors[sid]}
            holdout_rows.append(row)
            pc_rows.append({"sample_id": sid, "failed_checks": "noise_fit", "passed": False})
            continue
        k_fit = model.sample(sid).n_shots
        # channels trusted in both halves: above noise, unsaturated, never clipped
        fit_shots = fit_all[fit_ids == sid]
        ok = _compared_channels(held, options["saturation"], floor_clipped)
        ok &= _compared_channels(fit_shots, options["saturation"], floor_clipped)
        if not ok.any():
            raise ValueError(f"sample {sid!r}: no channel is above noise and unsaturated in both halves")
        syn = synthetic[sid]
        holdout_rows.append(_split_shot_row(sid, held, syn, ok, k_fit, wl, line_windows, t, len(samples)))
        pc_rows.append(_pc_row(sid, model, sampler, held, syn, ok, k_fit, t, len(samples), n_null, ss))
    holdout, pcs = pd.DataFrame(holdout_rows), pd.DataFrame(pc_rows)

    failures = [f"sample {sid}: noise model not fitted on its fit half: {msg}" for sid, msg in fit_errors.items()]
    failures += [f"sample {r.sample_id}: split-shot checks failed: {r.failed_checks}"
                 for r in holdout.itertuples() if not r.passed and r.sample_id not in fit_errors]
    failures += [f"sample {r.sample_id}: residual-PC checks failed: {r.failed_checks}"
                 for r in pcs.itertuples() if not r.passed and r.sample_id not in fit_errors]
    # Fisher: -2 sum log p ~ chi2(2S) when every sample's total_t p-value is uniform (right model)
    p_values = holdout["total_p"].dropna().to_numpy()
    fisher_stat = float(-2.0 * np.sum(np.log(np.maximum(p_values, 1e-300))))
    fisher_p = float(stats.chi2.sf(fisher_stat, 2 * p_values.size))
    if fisher_p < t.alpha:
        failures.append(f"campaign: total-intensity means differ (Fisher p {fisher_p:.2g} < {t.alpha:g})")
    campaign: dict[str, Any] = {"total_fisher_p": fisher_p}
    tstr_rows = pd.DataFrame()
    if tstr:
        tstr_rows = tstr_table(ds, analyte, line_windows[0], model_options=options, n_synthetic=n_synthetic,
                               degree=tstr_degree, seed=int(tstr_seq.generate_state(1)[0]), sampler=sampler)
        weights = tstr_rows["n_test_shots"]
        rmse_syn = math.sqrt(float(np.average(tstr_rows["rmse_train_synthetic"] ** 2, weights=weights)))
        rmse_real = math.sqrt(float(np.average(tstr_rows["rmse_train_real"] ** 2, weights=weights)))
        ratio = rmse_syn / rmse_real if rmse_real > 0 else math.inf
        campaign.update(tstr_rmse_train_synthetic=rmse_syn, tstr_rmse_train_real=rmse_real, tstr_ratio=ratio)
        if ratio > t.tstr_ratio_max:
            failures.append(f"campaign: TSTR RMSE ratio {ratio:.3f} > {t.tstr_ratio_max:g}")
    settings = {
        "seed": seed, "n_synthetic": n_synthetic, "n_null": n_null, "analyte": analyte,
        "lines": [ln.name for ln in line_windows], "tstr_degree": tstr_degree,
        "model_options": {k: _plain(v) for k, v in options.items()},
    }
    return HoldoutRealism(holdout, pcs, tstr_rows, campaign, t, settings, failures)
