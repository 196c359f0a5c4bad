"""Realism report: is the synthetic set statistically representative of the measured shots? Checked, not assumed.

Per reference sample: per-channel mean and variance of synthetic vs. measured shots (ratio
distributions), the analyte line area distribution and the total-intensity distribution (two-sample
Kolmogorov-Smirnov). Thresholds allow for the sampling noise of a handful of measured replicates.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from libs_pipeline.features.line_features import feature_column, line_features
from libs_pipeline.features.lines import LineWindow, resolve_lines
from libs_pipeline.spectra.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from libs_pipeline.spectra.dataset import label_names
from libs_pipeline.spectra.dataset import sample_ids as dataset_sample_ids
from libs_pipeline.synth.generate import open_measured
from libs_pipeline.synth.noise_model import SATURATION_MARGIN, as_str_array, detect_saturation
from libs_pipeline.synth.synthetic_store import open_synthetic


@dataclass(frozen=True)
class RealismThresholds:
    """Pass/fail rules of the report (defaults hold for a correct model with ~10 measured replicates)."""

    mean_ratio_tolerance: float = 0.05  # |median over channels of mean_syn/mean_meas - 1| (or 4 standard errors)
    variance_ratio_factor: float = 1.5  # median over channels of var_syn/var_meas within [1/f, f]
    variance_outlier_band: float = 4.0  # a channel is off when its variance ratio is outside [1/b, b] ...
    variance_outlier_excess: float = 0.10  # ... and the off fraction may exceed sampling noise's by this much
    ks_alpha: float = 0.01  # family-wise level of the KS tests (Bonferroni over samples x quantities)

    def __post_init__(self) -> None:
        for name in ("mean_ratio_tolerance", "variance_outlier_excess", "ks_alpha"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"RealismThresholds.{name} must lie in (0, 1), got {getattr(self, name)}")
        for name in ("variance_ratio_factor", "variance_outlier_band"):
            if not getattr(self, name) > 1:
                raise ValueError(f"RealismThresholds.{name} must be > 1, got {getattr(self, name)}")


@dataclass
class RealismReport:
    """Per-sample statistics, pass/fail per check, and the pooled channel ratios behind the figure."""

    per_sample: pd.DataFrame
    thresholds: RealismThresholds
    lines: list[LineWindow]
    skipped_samples: list[str]
    passed: bool
    failures: list[str]
    mean_ratios: np.ndarray = field(repr=False)  # pooled over samples (figure)
    variance_ratios: np.ndarray = field(repr=False)
    totals: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)  # sample -> (measured, synthetic)

    def summary(self) -> dict[str, Any]:
        t = self.per_sample
        return {
            "passed": self.passed,
            "n_samples": int(len(t)),
            "failures": list(self.failures),
            "worst_mean_ratio_deviation": float((t["mean_ratio_median"] - 1).abs().max()),
            "variance_ratio_median_range": [float(t["variance_ratio_median"].min()), float(t["variance_ratio_median"].max())],
            "min_ks_p": float(t[[c for c in t.columns if c.endswith(":ks_p")]].min().min()),
            "ks_p_threshold": float(t["ks_p_threshold"].iloc[0]) if len(t) else math.nan,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "thresholds": asdict(self.thresholds),
            "lines": [line.to_dict() for line in self.lines],
            "skipped_samples": self.skipped_samples,
            "per_sample": json.loads(self.per_sample.to_json(orient="records")),
        }

    def to_markdown(self) -> str:
        cols = ["sample_id", "n_measured", "n_synthetic", "mean_ratio_median", "variance_ratio_median",
                "variance_off_fraction", "variance_off_expected"]
        cols += [c for c in self.per_sample.columns if c.endswith(":ks")] + ["passed"]
        table = self.per_sample[cols]
        header = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
        rows = "".join(
            "| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |\n"
            for row in table.itertuples(index=False)
        )
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [f"# Realism report: {verdict}", ""]
        lines += [f"- {f}" for f in self.failures] or ["All checks within thresholds."]
        lines += ["", f"Thresholds: {asdict(self.thresholds)}", ""]
        if self.skipped_samples:
            lines += [f"No measured counterpart (not checked): {', '.join(self.skipped_samples)}", ""]
        return "\n".join(lines) + header + rows

    def plot(self, path: str | Path) -> Path:
        """PNG: channel mean/variance ratio histograms, KS p-values, total-intensity distributions."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
        ax = axes[0, 0]
        ax.hist(np.log2(self.mean_ratios), bins=80, range=(-0.5, 0.5), color="tab:blue")
        for x in (math.log2(1 - self.thresholds.mean_ratio_tolerance), math.log2(1 + self.thresholds.mean_ratio_tolerance)):
            ax.axvline(x, color="k", ls="--", lw=1)
        ax.set(title="per-channel mean: log2(synthetic / measured)", xlabel="log2 ratio", ylabel="channels")
        ax = axes[0, 1]
        with np.errstate(divide="ignore"):
            logv = np.log2(np.maximum(self.variance_ratios, 1e-6))
        ax.hist(logv, bins=80, range=(-4, 4), color="tab:orange")
        f = math.log2(self.thresholds.variance_ratio_factor)
        for x in (-f, f):
            ax.axvline(x, color="k", ls="--", lw=1)
        ax.set(title="per-channel variance: log2(synthetic / measured)", xlabel="log2 ratio", ylabel="channels")
        ax = axes[1, 0]
        p_cols = [c for c in self.per_sample.columns if c.endswith(":ks_p")]
        x = np.arange(len(self.per_sample))
        width = 0.8 / max(len(p_cols), 1)
        for j, col in enumerate(p_cols):
            p = np.clip(self.per_sample[col].to_numpy(dtype=float), 1e-300, 1)
            ax.bar(x + j * width, -np.log10(p), width, label=col.removesuffix(":ks_p"))
        if len(self.per_sample):
            ax.axhline(-math.log10(self.per_sample["ks_p_threshold"].iloc[0]), color="k", ls="--", lw=1, label="threshold")
        ax.set_xticks(x + 0.4 - width / 2, self.per_sample["sample_id"], rotation=45, ha="right", fontsize=7)
        ax.set(title="two-sample KS tests (bar above line = fail)", ylabel="-log10 p")
        ax.legend(fontsize=7)
        ax = axes[1, 1]
        data, labels = [], []
        for sid, (meas, syn) in self.totals.items():
            scale = float(np.mean(meas)) or 1.0
            data += [meas / scale, syn / scale]
            labels += [f"{sid} m", f"{sid} s"]
        if data:
            ax.boxplot(data, tick_labels=labels, showfliers=False)
            ax.tick_params(axis="x", rotation=90, labelsize=6)
        ax.set(title="total intensity / measured mean (m: measured, s: synthetic)", ylabel="ratio")
        fig.suptitle(f"Realism report: {'PASSED' if self.passed else 'FAILED'}")
        fig.tight_layout()
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        atomic_write_bytes(path, tmp.read_bytes())
        tmp.unlink()
        return path

    def save(self, directory: str | Path) -> dict[str, Path]:
        """Write realism.json, realism.md and realism.png into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {"json": directory / "realism.json", "markdown": directory / "realism.md", "figure": directory / "realism.png"}
        atomic_write_json(paths["json"], self.to_dict())
        atomic_write_text(paths["markdown"], self.to_markdown())
        self.plot(paths["figure"])
        return paths


def _synthetic_rows(synthetic: xr.Dataset) -> dict[str, np.ndarray]:
    ids = as_str_array(synthetic["sample_id"].values)
    order = np.argsort(ids, kind="stable")
    uniq, starts = np.unique(ids[order], return_index=True)
    bounds = list(starts) + [ids.size]
    return {str(u): order[bounds[i]:bounds[i + 1]] for i, u in enumerate(uniq)}


def _compared_channels(meas: np.ndarray, saturation: float | None, floor_clipped: bool) -> np.ndarray:
    k = meas.shape[0]
    mean, var = meas.mean(axis=0), meas.var(axis=0, ddof=1)
    ok = (var > 0) & (mean > 3.0 * np.sqrt(var / k))
    if saturation is not None:
        ok &= meas.max(axis=0) < SATURATION_MARGIN * saturation
    if floor_clipped:
        ok &= meas.min(axis=0) > 0
    return ok


def realism_report(
    measured: xr.Dataset,
    synthetic: xr.Dataset,
    analyte_lines: Sequence[LineWindow],
    *,
    thresholds: RealismThresholds | None = None,
    max_synthetic_per_sample: int = 1000,
) -> RealismReport:
    """Compare synthetic spectra with the measured shots of the sample they were drawn from (matched by sample_id).

    Reads at most ``max_synthetic_per_sample`` synthetic spectra per sample (the first ones), so the
    report costs the same for any store size. Synthetic samples with no measured counterpart
    (interpolated ones) are listed in ``skipped_samples``.
    """
    thresholds = thresholds or RealismThresholds()
    lines = list(analyte_lines)
    if not lines:
        raise ValueError("analyte_lines: need at least one LineWindow")
    if max_synthetic_per_sample < 2:
        raise ValueError(f"max_synthetic_per_sample must be >= 2, got {max_synthetic_per_sample}")
    wl = np.asarray(measured["wavelength"].values, dtype=np.float64)
    wl_syn = np.asarray(synthetic["wavelength"].values, dtype=np.float64)
    if wl.shape != wl_syn.shape or not np.allclose(wl, wl_syn, rtol=0, atol=1e-9):
        raise ValueError(
            f"wavelength grids differ: measured {wl.size} channels {wl[0]:.3f}-{wl[-1]:.3f} nm, "
            f"synthetic {wl_syn.size} channels {wl_syn[0]:.3f}-{wl_syn[-1]:.3f} nm"
        )
    meas_all = np.asarray(measured["intensity"].values, dtype=np.float64)
    meas_ids = as_str_array(measured["sample_id"].values)
    finite = meas_all[np.isfinite(meas_all)]
    saturation = detect_saturation(meas_all)
    floor_clipped = bool(finite.size and finite.min() >= 0 and np.any(finite == 0))
    syn_rows = _synthetic_rows(synthetic)
    common = [s for s in dataset_sample_ids(measured) if s in syn_rows]
    if not common:
        raise ValueError(
            f"no sample is in both datasets: measured {dataset_sample_ids(measured)[:5]}..., "
            f"synthetic {sorted(syn_rows)[:5]}..."
        )
    skipped = sorted(set(syn_rows) - set(common))
    n_tests = len(common) * (len(lines) + 1)
    p_threshold = thresholds.ks_alpha / n_tests
    band = thresholds.variance_outlier_band

    rows: list[dict[str, Any]] = []
    mean_ratios, variance_ratios, totals = [], [], {}
    failures: list[str] = []
    for sid in common:
        meas = meas_all[meas_ids == sid]
        idx = syn_rows[sid][:max_synthetic_per_sample]
        syn = np.asarray(synthetic["intensity"].isel(spectrum=np.sort(idx)).values, dtype=np.float64)
        k, n = meas.shape[0], syn.shape[0]
        if k < 3 or n < 2:
            raise ValueError(f"sample {sid!r}: need >= 3 measured and >= 2 synthetic spectra, got {k} and {n}")
        ok = _compared_channels(meas, saturation, floor_clipped)
        if not ok.any():
            raise ValueError(f"sample {sid!r}: no channel is significantly above zero and unsaturated to compare")
        m_mean, m_var = meas[:, ok].mean(axis=0), meas[:, ok].var(axis=0, ddof=1)
        s_mean, s_var = syn[:, ok].mean(axis=0), syn[:, ok].var(axis=0, ddof=1)
        mr, vr = s_mean / m_mean, s_var / m_var
        mean_ratios.append(mr)
        variance_ratios.append(vr)
        off = float(np.mean((vr < 1 / band) | (vr > band)))
        expected = float(stats.f.cdf(1 / band, n - 1, k - 1) + stats.f.sf(band, n - 1, k - 1))
        row: dict[str, Any] = {
            "sample_id": sid,
            "n_measured": k,
            "n_synthetic": n,
            "n_channels": int(ok.sum()),
            "mean_ratio_median": float(np.median(mr)),
            "mean_ratio_p05": float(np.quantile(mr, 0.05)),
            "mean_ratio_p95": float(np.quantile(mr, 0.95)),
            "variance_ratio_median": float(np.median(vr)),
            "variance_ratio_p05": float(np.quantile(vr, 0.05)),
            "variance_ratio_p95": float(np.quantile(vr, 0.95)),
            "variance_off_fraction": off,
            "variance_off_expected": expected,
        }
        # The synthetic mean itself wanders by the shot-factor spread / sqrt(n), the same for every channel:
        # the tolerance is at least 4 of those standard errors.
        syn_total = syn.sum(axis=1)
        cv = float(np.std(syn_total, ddof=1) / np.mean(syn_total)) if np.mean(syn_total) > 0 else 0.0
        row["mean_ratio_tolerance"] = max(thresholds.mean_ratio_tolerance, 4.0 * cv / math.sqrt(n))
        checks = {
            "mean": abs(row["mean_ratio_median"] - 1) <= row["mean_ratio_tolerance"],
            "variance": 1 / thresholds.variance_ratio_factor <= row["variance_ratio_median"] <= thresholds.variance_ratio_factor,
            "variance_spread": off <= expected + thresholds.variance_outlier_excess,
        }
        meas_feat = line_features(meas, wl, lines)
        syn_feat = line_features(syn, wl, lines)
        quantities = {feature_column(line, "area"): (meas_feat[feature_column(line, "area")].to_numpy(),
                                                     syn_feat[feature_column(line, "area")].to_numpy())
                      for line in lines}
        quantities["total_intensity"] = (meas.sum(axis=1), syn.sum(axis=1))
        totals[sid] = quantities["total_intensity"]
        for qname, (a, b) in quantities.items():
            ks = stats.ks_2samp(a, b)
            row[f"{qname}:ks"] = float(ks.statistic)
            row[f"{qname}:ks_p"] = float(ks.pvalue)
            checks[qname] = float(ks.pvalue) >= p_threshold
        row["ks_p_threshold"] = p_threshold
        row["failed_checks"] = ",".join(c for c, good in checks.items() if not good)
        row["passed"] = all(checks.values())
        rows.append(row)
        for check, good in checks.items():
            if not good:
                failures.append(f"sample {sid}: {_describe(check, row, thresholds, p_threshold)}")
    per_sample = pd.DataFrame(rows)
    return RealismReport(
        per_sample=per_sample,
        thresholds=thresholds,
        lines=lines,
        skipped_samples=skipped,
        passed=not failures,
        failures=failures,
        mean_ratios=np.concatenate(mean_ratios),
        variance_ratios=np.concatenate(variance_ratios),
        totals=totals,
    )


def _describe(check: str, row: dict[str, Any], t: RealismThresholds, p_threshold: float) -> str:
    if check == "mean":
        return f"median channel mean ratio {row['mean_ratio_median']:.3f} is off 1 by more than {row['mean_ratio_tolerance']:.3f}"
    if check == "variance":
        return (f"median channel variance ratio {row['variance_ratio_median']:.3f} is outside "
                f"[{1 / t.variance_ratio_factor:.3f}, {t.variance_ratio_factor:.3f}]")
    if check == "variance_spread":
        return (f"{row['variance_off_fraction']:.3f} of channels have a variance ratio outside "
                f"[1/{t.variance_outlier_band:g}, {t.variance_outlier_band:g}] (sampling noise gives "
                f"{row['variance_off_expected']:.3f}, allowed excess {t.variance_outlier_excess})")
    return f"{check} distributions differ (KS {row[f'{check}:ks']:.3f}, p {row[f'{check}:ks_p']:.2g} < {p_threshold:.2g})"


def report_store(
    dataset_uri: str | Path | xr.Dataset,
    synthetic_uri: str | Path,
    *,
    analyte: str | None = None,
    lines: Sequence[LineWindow | dict] | None = None,
    max_synthetic_per_sample: int = 1000,
    thresholds: RealismThresholds | None = None,
    out_dir: str | Path | None = None,
) -> tuple[RealismReport, dict[str, Path]]:
    """Realism report of a finished synthetic store against its measured dataset, saved as JSON, markdown, PNG.

    Lines default to ``default_lines(analyte)``, the analyte to the measured dataset's first label; the
    report goes to ``out_dir`` or ``<store>.realism/`` beside the store.
    """
    measured = open_measured(dataset_uri)
    if analyte is None:
        labels = label_names(measured)
        if not labels and lines is None:
            raise ValueError("the measured dataset has no label variable: give the analyte or the lines explicitly")
        analyte = labels[0] if labels else ""
    line_windows = resolve_lines(analyte, lines)
    synthetic = open_synthetic(synthetic_uri)
    report = realism_report(
        measured, synthetic, line_windows, thresholds=thresholds, max_synthetic_per_sample=max_synthetic_per_sample
    )
    store = Path(str(synthetic_uri))
    target = Path(out_dir) if out_dir is not None else store.parent / f"{store.stem}.realism"
    return report, report.save(target)
