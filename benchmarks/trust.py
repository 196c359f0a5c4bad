"""Trust benchmark: does the trust score flag shifted spectra, and are the flagged predictions the bad ones?

Virtual instrument (``--dataset virtual``): a nominal campaign is split by sample (stratified by Cu) into
train / early-stop / trust-calibration / in-distribution test samples; a multitask CNN is trained, its
trust calibrated, and the test samples are re-measured under every scenario x severity of
``libs_pipeline.physics.scenarios``. Our score is compared with PLS Hotelling T² / Q residuals and the
network's MC-dropout predictive std on the same sets.

Real data (``--dataset oreas``): leave-one-sample-out over the 7 OREAS Na standards; each fold's trust
scales and threshold come from the out-of-fold predictions of the other six samples (cross-fitting);
the held-out sample is scored as measured and as corrupted copies (wavelength shift, gain change).

Prints exactly one JSON object. Example: ``python benchmarks/trust.py --dataset all --figures reports/trust``
(``--quick`` for a small smoke run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from libs_pipeline.config import CampaignConfig, TrainingConfig, TrustConfig
from libs_pipeline.models import load_model, save_model, train_model
from libs_pipeline.spectra.dataset import make_spectra_dataset, select_samples
from libs_pipeline.trust.calibration import fit_trust_calibration
from libs_pipeline.trust.detectors import PLSDistanceDetector, combined_t2_q, select_pls_components
from libs_pipeline.trust.measurements import SpectralReference, measure_spectra
from libs_pipeline.trust.ood_evaluation import auroc, flag_metrics
from libs_pipeline.trust.prediction import calibrate_model_trust, model_lines
from libs_pipeline.trust.scores import combine_parts, sample_trust, trust_scores

DETECTORS = ("trust_score", "trust_line_parts_only", "pls_t2", "pls_q", "pls_t2_q", "mc_dropout_std")
OREAS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "oreas_na"


def log(msg: str) -> None:
    print(f"[trust-benchmark] {msg}", file=sys.stderr, flush=True)


def stratified_split(ids: list[str], conc: np.ndarray, counts: dict[str, int]) -> dict[str, list[str]]:
    """Split sample ids by sorted concentration: the two extremes go to the first split (train), the rest
    are dealt out in order so that every split spans the range."""
    order = [ids[i] for i in np.argsort(conc, kind="stable")]
    if len(order) != sum(counts.values()):
        raise ValueError(f"{len(order)} samples but the split asks for {sum(counts.values())}")
    first = next(iter(counts))
    out: dict[str, list[str]] = {k: [] for k in counts}
    out[first] += [order[0], order[-1]]
    target = {k: n - len(out[k]) for k, n in counts.items()}
    dealt = {k: 0 for k in counts}
    rest = order[1:-1]
    for pos, sid in enumerate(rest, start=1):
        k = max((k for k in counts if dealt[k] < target[k]), key=lambda k: target[k] * pos / len(rest) - dealt[k])
        out[k].append(sid)
        dealt[k] += 1
    return out


def score_set(model, calibration, pls, ds: xr.Dataset, mc_samples: int, seed: int) -> dict:
    """Everything the evaluation needs about one set of spectra."""
    x = np.asarray(ds["intensity"].values, dtype=np.float32)
    pred = model.predict(x)
    measured = measure_spectra(x, model.wavelength, model_lines(model), calibration.spectral)
    table = trust_scores(calibration, pred, measured)
    _, std = model.predict_with_uncertainty(x, n_samples=mc_samples, seed=seed)
    line_parts = [p for p in calibration.part_names() if p.startswith(("aux:", "cons:"))]
    return {
        "y_true": np.asarray(ds[calibration.analyte].values, dtype=np.float64),
        "y_pred": table["prediction"].to_numpy(),
        "sample_id": np.asarray(ds["sample_id"].values).astype(str),
        "table": table,
        "scores": {
            "trust_score": table["score"].to_numpy(),
            "trust_line_parts_only": combine_parts(table, line_parts, calibration.combine),
            "pls_t2": pls["detector"].t2(x),
            "pls_q": pls["detector"].q(x),
            "mc_dropout_std": std[calibration.analyte].astype(np.float64),
        },
    }


def add_combined_pls(scored: dict, reference: dict) -> None:
    s, r = scored["scores"], reference["scores"]
    s["pls_t2_q"] = combined_t2_q(s["pls_t2"], s["pls_q"], r["pls_t2"], r["pls_q"])


def _round(v: float | None, k: int = 4) -> float | None:
    return None if v is None else round(float(v), k)


def summarise(reference: dict, shifted: dict, calibration) -> tuple[dict, dict]:
    """(our figures for the shifted set, AUROC of every detector)."""
    table = shifted["table"]
    metrics = flag_metrics(shifted["y_true"], shifted["y_pred"], table["flag"].to_numpy())
    samples = sample_trust(table.reset_index(drop=True), shifted["sample_id"], calibration)
    ref_samples = sample_trust(reference["table"].reset_index(drop=True), reference["sample_id"], calibration)
    tops = Counter(table.loc[table["flag"], "top_part"])
    n_flagged = max(int(table["flag"].sum()), 1)
    ref_table = reference["table"]
    ours = {
        "auroc": _round(auroc(reference["scores"]["trust_score"], shifted["scores"]["trust_score"])),
        "flag_rate": _round(metrics["flag_rate"]),
        "rmsep_flagged": _round(metrics["rmsep_flagged"]),
        "rmsep_unflagged": _round(metrics["rmsep_unflagged"]),
        "rmsep_all": _round(metrics["rmsep_all"]),
        "n_spectra": metrics["n"],
        "n_flagged": metrics["n_flagged"],
        "sample_auroc": _round(auroc(ref_samples["score"], samples["score"])),
        "sample_flag_rate": _round(samples["flag"].mean()),
        "top_parts_of_flags": {k: round(v / n_flagged, 3) for k, v in tops.most_common(3)},
        "part_auroc": {
            p: _round(auroc(np.abs(ref_table[p].to_numpy()), np.abs(table[p].to_numpy())), 3)
            for p in calibration.part_names()
        },
    }
    mixed = flag_metrics(
        np.concatenate([reference["y_true"], shifted["y_true"]]),
        np.concatenate([reference["y_pred"], shifted["y_pred"]]),
        np.concatenate([ref_table["flag"].to_numpy(), table["flag"].to_numpy()]),
    )
    ours["mixed_with_in_distribution"] = {
        "rmsep_flagged": _round(mixed["rmsep_flagged"]),
        "rmsep_unflagged": _round(mixed["rmsep_unflagged"]),
        "flag_rate": _round(mixed["flag_rate"]),
    }
    comparison = {d: _round(auroc(reference["scores"][d], shifted["scores"][d])) for d in DETECTORS}
    return ours, comparison


def fit_pls(train: xr.Dataset, analyte: str) -> dict:
    x = np.asarray(train["intensity"].values, dtype=np.float64)
    y = np.asarray(train[analyte].values, dtype=np.float64)
    k = select_pls_components(x, y, np.asarray(train["sample_id"].values).astype(str), max_components=10)
    return {"detector": PLSDistanceDetector(k).fit(x, y), "n_components": k}


def virtual_benchmark(args) -> tuple[dict, dict]:
    from libs_pipeline.physics.campaign import simulate_campaign
    from libs_pipeline.physics.scenarios import SEVERITIES, scenario_config, scenario_names

    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    counts = {"train": args.train_samples, "early_stop": args.es_samples, "calibration": args.cal_samples,
              "test": args.test_samples}
    base = CampaignConfig(n_samples=sum(counts.values()), n_shots=args.shots)
    cache = Path(args.cache) if args.cache else None

    def simulate(config: CampaignConfig, seed: int, samples: pd.DataFrame | None = None) -> tuple[xr.Dataset, pd.DataFrame]:
        """simulate_campaign, or its cached result (keyed by config, seed and samples) under --cache."""
        key = hashlib.sha256(
            (config.model_dump_json() + str(seed) + ("" if samples is None else samples.to_csv())).encode()
        ).hexdigest()[:16]
        if cache is not None and (cache / f"{key}.nc").is_file():
            return xr.load_dataset(cache / f"{key}.nc"), pd.read_csv(cache / f"{key}.csv")
        campaign = simulate_campaign(config, seed=seed, samples=samples, workers=args.workers)
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            campaign.spectra.to_netcdf(cache / f"{key}.nc")
            campaign.samples.to_csv(cache / f"{key}.csv", index=False)
        return campaign.spectra, campaign.samples

    log(f"simulating nominal campaign: {base.n_samples} samples x {base.n_shots} shots")
    ds, table = simulate(base, args.seed)
    timing["simulate_nominal"] = time.perf_counter() - t0
    split = stratified_split(list(table["sample_id"]), table[base.analyte].to_numpy(float), counts)
    parts = {k: select_samples(ds, v) for k, v in split.items()}

    t = time.perf_counter()
    config = TrainingConfig(
        analyte=base.analyte, augmentation=False, max_steps=args.max_steps, device="cpu", progress_bar=False,
        seed=args.seed,
    )
    model_dir = None
    if cache is not None:
        model_dir = cache / ("model-" + hashlib.sha256((config.model_dump_json() + str(split)).encode()).hexdigest()[:16])
    if model_dir is not None and model_dir.is_dir():
        model = load_model(model_dir)
    else:
        log(f"training on {len(split['train'])} samples ({parts['train'].sizes['spectrum']} spectra)")
        model = train_model([parts["train"]], config, val_sources=[parts["early_stop"]])
        if model_dir is not None:
            save_model(model, model_dir)
    timing["train"] = time.perf_counter() - t
    calibration = calibrate_model_trust(model, parts["train"], parts["calibration"], TrustConfig(combine=args.combine))
    pls = fit_pls(parts["train"], base.analyte)

    t = time.perf_counter()
    reference = score_set(model, calibration, pls, parts["test"], args.mc_samples, args.seed)
    cal_scored = score_set(model, calibration, pls, parts["calibration"], args.mc_samples, args.seed)
    add_combined_pls(cal_scored, cal_scored)
    add_combined_pls(reference, cal_scored)
    test_table = table[table["sample_id"].isin(split["test"])].reset_index(drop=True)
    remeasured, _ = simulate(base, args.seed + 1, test_table)
    nominal_again = score_set(model, calibration, pls, remeasured, args.mc_samples, args.seed)
    add_combined_pls(nominal_again, cal_scored)

    scenarios: dict[str, dict] = {}
    comparison: dict[str, dict] = {}
    figure_scores: dict[str, dict] = {}
    for name in scenario_names():
        if name == "nominal":
            continue
        for severity in SEVERITIES:
            log(f"scenario {name} / {severity}")
            sim, _ = simulate(scenario_config(base, name, severity), args.seed + 1, test_table)
            scored = score_set(model, calibration, pls, sim, args.mc_samples, args.seed)
            add_combined_pls(scored, cal_scored)
            ours, comp = summarise(reference, scored, calibration)
            scenarios.setdefault(name, {})[severity] = ours
            comparison.setdefault(name, {})[severity] = comp
            figure_scores.setdefault(name, {})[severity] = scored["scores"]
    timing["scenarios"] = time.perf_counter() - t

    ref_metrics = flag_metrics(reference["y_true"], reference["y_pred"], reference["table"]["flag"].to_numpy())
    again_flags = nominal_again["table"]["flag"].to_numpy()
    ref_samples = sample_trust(reference["table"].reset_index(drop=True), reference["sample_id"], calibration)
    strong = [v["strong"]["auroc"] for v in scenarios.values()]
    mild = [v["mild"]["auroc"] for v in scenarios.values()]
    rate = ref_metrics["flag_rate"]
    result = {
        "in_distribution_flag_rate": round(rate, 4),
        "in_distribution": {
            "flag_rate_test_split": round(rate, 4),
            "flag_rate_remeasured_test_samples": round(float(again_flags.mean()), 4),
            "sample_flag_rate_test_split": round(float(ref_samples["flag"].mean()), 4),
            "n_spectra": ref_metrics["n"],
            "rmsep": round(ref_metrics["rmsep_all"], 4),
            "rmsep_flagged": None if ref_metrics["rmsep_flagged"] is None else round(ref_metrics["rmsep_flagged"], 4),
            "rmsep_unflagged": round(ref_metrics["rmsep_unflagged"], 4),
            "top_parts_of_flags": {
                k: round(v / max(int(reference["table"]["flag"].sum()), 1), 3)
                for k, v in Counter(reference["table"].loc[reference["table"]["flag"], "top_part"]).most_common(5)
            },
            "part_exceedance_rate": {
                p: round(float(np.mean(np.abs(reference["table"][p].to_numpy()) > calibration.threshold)), 4)
                for p in calibration.part_names()
            },
            "validation_flag_rate_in_sample": round(calibration.validation_flag_rate, 4),
            "threshold_method": calibration.extra.get("threshold_method"),
            "threshold": round(calibration.threshold, 4),
            "target": calibration.target_false_flag_rate,
        },
        "scenarios": scenarios,
        "comparison": comparison,
        "goals": {
            "in_distribution_rate_within_0.05+-0.02": bool(round(abs(rate - 0.05), 6) <= 0.02),
            "remeasured_rate_within_0.05+-0.02": bool(round(abs(float(again_flags.mean()) - 0.05), 6) <= 0.02),
            "strong_auroc_min": min(strong),
            "mild_auroc_min": min(mild),
            "all_strong_auroc_ge_0.9": bool(min(strong) >= 0.9),
            "all_mild_auroc_ge_0.75": bool(min(mild) >= 0.75),
            "rmsep_flagged_gt_unflagged": {
                f"{n}/{s}": (None if v[s]["rmsep_flagged"] is None or v[s]["rmsep_unflagged"] is None
                             else bool(v[s]["rmsep_flagged"] > v[s]["rmsep_unflagged"]))
                for n, v in scenarios.items() for s in v
            },
            "mixed_rmsep_flagged_gt_unflagged": {
                f"{n}/{s}": bool(
                    v[s]["mixed_with_in_distribution"]["rmsep_flagged"] > v[s]["mixed_with_in_distribution"]["rmsep_unflagged"]
                )
                for n, v in scenarios.items() for s in v
            },
        },
        "setup": {
            "samples": {k: len(v) for k, v in split.items()},
            "shots_per_sample": base.n_shots,
            "channels": int(ds.sizes["wavelength"]),
            "analyte": base.analyte,
            "lines": calibration.lines,
            "model_tasks": model.task_names,
            "training_steps": model.metrics.get("steps"),
            "augmentation": False,
            "combine": calibration.combine,
            "pls_components": pls["n_components"],
            "mc_samples": args.mc_samples,
            "seed": args.seed,
            "cache": args.cache,
        },
        "timing_s": {k: round(v, 1) for k, v in timing.items()},  # cached steps (--cache) take ~0 s
    }
    figures = {"reference": reference["scores"], "scenarios": figure_scores, "threshold": calibration.threshold}
    return result, figures


def read_oreas(directory: Path) -> xr.Dataset:
    """The 7 OREAS standards x 10 shots as one dataset (label Na, ppm)."""
    from libs_pipeline.spectra.readers import SHOT_COLUMNS, read_source

    table = pd.read_csv(directory / "Na_ppm_from_tutorial.csv")
    rows, sids, shots, labels, wl = [], [], [], [], None
    for rec in table.itertuples(index=False):
        block = read_source(directory / rec.file, SHOT_COLUMNS)
        if wl is None:
            wl = block.wavelength
        elif not np.array_equal(wl, block.wavelength):
            raise ValueError(f"{rec.file}: wavelength grid differs from the first file's")
        rows.append(block.intensity)
        sids += [rec.sample] * block.intensity.shape[0]
        shots += list(range(block.intensity.shape[0]))
        labels += [float(rec.Na_ppm)] * block.intensity.shape[0]
    return make_spectra_dataset(np.concatenate(rows), wl, sids, shots, labels={"Na": (labels, "ppm")})


def shift_channels(x: np.ndarray, k: int) -> np.ndarray:
    """Features move ``k`` channels to the right (wavelength-calibration error); edge values repeat."""
    out = np.empty_like(x)
    out[:, k:] = x[:, :-k]
    out[:, :k] = x[:, :1]
    return out


def oreas_benchmark(args) -> dict:
    """Leave-one-sample-out on the 7 OREAS standards with cross-fitted trust calibration (see module doc)."""
    t0 = time.perf_counter()
    ds = read_oreas(Path(args.oreas_dir))
    samples = list(dict.fromkeys(ds["sample_id"].values.astype(str)))
    wl = ds["wavelength"].values
    config = TrainingConfig(
        analyte="Na", augmentation=False, val_fraction=0.0, max_steps=args.oreas_steps, device="cpu",
        progress_bar=False, seed=args.seed, plasma_tasks=False,
    )
    trust_config = TrustConfig(combine=args.combine)
    x_of = {h: np.asarray(select_samples(ds, [h])["intensity"].values, dtype=np.float32) for h in samples}
    models, oof = {}, {}
    for h in samples:
        log(f"OREAS fold: holding out {h}")
        models[h] = train_model([select_samples(ds, [s for s in samples if s != h])], config)
        oof[h] = models[h].predict(x_of[h])
    lines = model_lines(models[samples[0]])
    corruptions = {f"wavelength_shift_{args.oreas_shift}ch": lambda x: shift_channels(x, args.oreas_shift)}
    for gain in args.oreas_gains:
        corruptions[f"gain_x{gain}"] = lambda x, g=gain: x * np.float32(g)
    per_sample, clean_scores, pls_clean = [], [], []
    corrupt_scores = {k: [] for k in corruptions}
    pls_corrupt = {k: [] for k in corruptions}
    flags: dict[str, list] = {"clean": [], **{k: [] for k in corruptions}}
    for h in samples:
        others = [s for s in samples if s != h]
        train = select_samples(ds, others)
        x_train = np.asarray(train["intensity"].values, dtype=np.float32)
        reference = SpectralReference.fit(x_train, wl, trust_config.highpass_channels, trust_config.max_lag_channels)
        calibration = fit_trust_calibration(
            "Na",
            measure_spectra(x_train, wl, lines),
            np.asarray(train["Na"].values, dtype=np.float64),
            {t: np.concatenate([oof[s][t] for s in others]) for t in oof[h]},
            pd.concat([measure_spectra(x_of[s], wl, lines, reference) for s in others], ignore_index=True),
            lines,
            train_groups=np.asarray(train["sample_id"].values).astype(str),
            val_groups=np.asarray(train["sample_id"].values).astype(str),
            units="ppm",
            config=trust_config,
            spectral=reference,
        )
        pls = PLSDistanceDetector(args.oreas_pls_components).fit(x_train, np.asarray(train["Na"].values))
        clean = trust_scores(calibration, oof[h], measure_spectra(x_of[h], wl, lines, reference))
        clean_scores.append(clean["score"].to_numpy())
        pls_clean.append(pls.q(x_of[h]))
        flags["clean"].append(clean["flag"].to_numpy())
        row = {
            "sample": h,
            "certified_ppm": float(select_samples(ds, [h])["Na"].values[0]),
            "predicted_ppm": round(float(clean["prediction"].mean()), 1),
            "trust_score_median": round(float(clean["score"].median()), 3),
            "flagged_fraction": round(float(clean["flag"].mean()), 3),
            "threshold": round(calibration.threshold, 3),
            "reason_of_first_flag": clean.loc[clean["flag"], "reason"].iloc[0] if clean["flag"].any() else "",
        }
        for name, corrupt in corruptions.items():
            xc = corrupt(x_of[h])
            table = trust_scores(calibration, models[h].predict(xc), measure_spectra(xc, wl, lines, reference))
            corrupt_scores[name].append(table["score"].to_numpy())
            pls_corrupt[name].append(pls.q(xc))
            flags[name].append(table["flag"].to_numpy())
            row[f"{name}_flagged_fraction"] = round(float(table["flag"].mean()), 3)
            row[f"{name}_trust_score_median"] = round(float(table["score"].median()), 3)
            row[f"{name}_predicted_ppm"] = round(float(table["prediction"].mean()), 1)
            row[f"{name}_reason"] = table.loc[table["flag"], "reason"].iloc[0] if table["flag"].any() else ""
        per_sample.append(row)
    clean_all = np.concatenate(clean_scores)
    y_true = np.concatenate([np.full(x_of[h].shape[0], r["certified_ppm"]) for h, r in zip(samples, per_sample)])
    y_pred = np.concatenate([oof[h]["Na"] for h in samples]).astype(np.float64)
    rmse_samples = float(np.sqrt(np.mean([(r["predicted_ppm"] - r["certified_ppm"]) ** 2 for r in per_sample])))
    return {
        "protocol": (
            "leave-one-sample-out (7 folds, one CNN per fold, no augmentation); each fold's trust scales and "
            "threshold come from the out-of-fold predictions of the other six samples (cross-fitting)"
        ),
        "held_out_flag_rate": _round(np.concatenate(flags["clean"]).mean()),
        "held_out_rmse_ppm_sample_means": round(rmse_samples, 1),
        "held_out_rmse_ppm_spectra": round(float(np.sqrt(np.mean((y_pred - y_true) ** 2))), 1),
        "corrupted": {
            name: {
                "flag_rate": _round(np.concatenate(flags[name]).mean()),
                "auroc_vs_clean": _round(auroc(clean_all, np.concatenate(corrupt_scores[name]))),
                "pls_q_auroc_vs_clean": _round(auroc(np.concatenate(pls_clean), np.concatenate(pls_corrupt[name]))),
            }
            for name in corruptions
        },
        "samples": per_sample,
        "lines": [ln.name for ln in lines],
        "parts": calibration.part_names(),
        "training_steps": args.oreas_steps,
        "timing_s": round(time.perf_counter() - t0, 1),
    }


def write_figures(figures: dict, out: Path) -> list[str]:
    from libs_pipeline.trust.figures import plot_roc_curves, plot_score_distributions

    out.mkdir(parents=True, exist_ok=True)
    ours = {n: {s: v["trust_score"] for s, v in sev.items()} for n, sev in figures["scenarios"].items()}
    paths = [plot_score_distributions(figures["reference"]["trust_score"], ours, figures["threshold"],
                                      out / "trust_score_distributions.png")]
    for severity in ("strong", "mild"):
        paths.append(plot_roc_curves(figures["reference"], figures["scenarios"], out / f"roc_{severity}.png", severity))
    return [str(p) for p in paths]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=("virtual", "oreas", "all"), default="all")
    p.add_argument("--train-samples", type=int, default=20)
    p.add_argument("--es-samples", type=int, default=4)
    p.add_argument("--cal-samples", type=int, default=10)
    p.add_argument("--test-samples", type=int, default=10)
    p.add_argument("--shots", type=int, default=20)
    p.add_argument("--max-steps", type=int, default=400)
    p.add_argument("--mc-samples", type=int, default=20)
    p.add_argument("--combine", choices=("rms", "max"), default="max")
    p.add_argument("--workers", type=int, default=1, help="simulation processes (the CPU is shared)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--oreas-dir", default=str(OREAS_DIR))
    p.add_argument("--oreas-steps", type=int, default=300)
    p.add_argument("--oreas-shift", type=int, default=3, help="channels of the corrupted copy's wavelength shift")
    p.add_argument("--oreas-gains", type=float, nargs="+", default=[0.7, 0.5], help="gain factors of corrupted copies")
    p.add_argument("--oreas-pls-components", type=int, default=3, help="PLS components of the Q comparison")
    p.add_argument("--figures", default=None, help="folder for the PNG figures (none when omitted)")
    p.add_argument("--quick", action="store_true", help="small smoke run (fewer samples, shots, steps)")
    p.add_argument("--cache", default=None, help="folder to keep simulated campaigns and the trained model between runs")
    args = p.parse_args(argv)
    if args.quick:
        args.train_samples, args.es_samples, args.cal_samples, args.test_samples = 10, 3, 5, 4
        args.shots, args.max_steps, args.mc_samples, args.oreas_steps = 10, 150, 8, 100
    import torch

    torch.set_num_threads(1)
    result: dict = {}
    if args.dataset in ("virtual", "all"):
        virtual, figures = virtual_benchmark(args)
        result.update(virtual)
        if args.figures:
            result["figures"] = write_figures(figures, Path(args.figures))
    if args.dataset in ("oreas", "all"):
        if not (Path(args.oreas_dir) / "Na_ppm_from_tutorial.csv").is_file():
            result["oreas"] = {"skipped": f"no OREAS data at {args.oreas_dir}"}
        else:
            result["oreas"] = oreas_benchmark(args)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
