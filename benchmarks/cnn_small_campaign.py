"""Few-sample CNN on the 7 real OREAS Na samples: leave-one-sample-out, per-sample RMSEP; prints one JSON object.

    .venv/bin/python benchmarks/cnn_small_campaign.py --configs roi_bg_aux_ls_aug --seeds 0,1,2
    .venv/bin/python benchmarks/cnn_small_campaign.py --family multitask_aug --seeds 0,1,2,3,4,5,6,7,8

``--family`` runs the served recipe itself (``candidates.CNNCandidate``: the small-campaign training, its own
in-memory augmentation, ``--family-training`` JSON overrides) as one network per seed, so the spread over seeds
and the error of their average (what a larger ensemble converges to) are measured on the same folds.

Every configuration is fixed a priori (CONFIGS below; nothing is tuned on the held-out samples).
Per fold, all fitted choices (normalisation, saturation mask, target scaling, synthetic spectra,
an inner-LOSO step budget where asked) come from the 6 training samples only. Prediction of the
held-out sample = mean over its 10 shots. Augmentation ("aug": N) draws N synthetic shots per training
sample from ``libs_pipeline.synth`` (Poisson + shot factor + read noise, no shape modes) in memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

from libs_pipeline.baselines.univariate_selection import SelectedUnivariate
from libs_pipeline.config import DEFAULT_SYNTHETIC_PER_SAMPLE, IngestOptions, TrainingConfig
from libs_pipeline.features.lines import default_lines
from libs_pipeline.models import train_model
from libs_pipeline.models.step_budget import inner_loso_errors
from libs_pipeline.spectra.campaign_loading import load_campaign
from libs_pipeline.spectra.dataset import make_spectra_dataset, sample_ids, select_samples, spectrum_sample_ids
from libs_pipeline.synth import fit_noise_model, sample_spectra

MANIFEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "oreas_na" / "Na_ppm_from_tutorial.csv"
SATURATION = 38000.0
BASE = {
    "analyte": "Na",
    "progress_bar": False,
    "device": "cpu",
    "num_threads": 1,
    "val_fraction": 0.0,  # 6 training samples: no validation split, a fixed (or inner-LOSO) step budget
    "max_steps": 300,
    "eval_every": 50,
    "batch_size": 32,
    "augmentation": False,
    "saturation": SATURATION,
}
ROI = {"roi": "analyte", "roi_margin_nm": 1.0}
AUX_LS = {"primary_head": "auxiliary", "calibration_fit": "least_squares"}
SKIP = {"linear_skip": True}
FAMILIES = ("single_task", "multitask", "multitask_aug")  # the CNN candidate families (--family)
# name -> (TrainingConfig overrides, synthetic shots per training sample, inner-LOSO budgets or None)
CONFIGS: dict[str, tuple[dict, int, tuple[int, ...] | None]] = {
    "roi_none_linear": ({**ROI, "normalisation": "none"}, 0, None),
    "roi_none_log": ({**ROI, "normalisation": "none", "log_primary": True}, 0, None),
    "roi_bg_linear": ({**ROI, "normalisation": "background"}, 0, None),
    "roi_bg_log": ({**ROI, "normalisation": "background", "log_primary": True}, 0, None),
    "roi_bg_aux": ({**ROI, "normalisation": "background", "primary_head": "auxiliary"}, 0, None),
    "roi_none_aux_ls": ({**ROI, "normalisation": "none", **AUX_LS}, 0, None),
    "roi_bg_aux_ls": ({**ROI, "normalisation": "background", **AUX_LS}, 0, None),
    "roi_none_aux_ls_aug": ({**ROI, "normalisation": "none", **AUX_LS, "augmentation": True}, 50, None),
    "roi_bg_aux_ls_aug": ({**ROI, "normalisation": "background", **AUX_LS, "augmentation": True}, 50, None),
    "roi_none_aux_ls_skip": ({**ROI, "normalisation": "none", **AUX_LS, **SKIP}, 0, None),
    "roi_bg_aux_ls_skip": ({**ROI, "normalisation": "background", **AUX_LS, **SKIP}, 0, None),
    "roi_none_aux_ls_skip_aug": ({**ROI, "normalisation": "none", **AUX_LS, **SKIP, "augmentation": True}, 50, None),
    "roi_bg_aux_ls_skip_aug": ({**ROI, "normalisation": "background", **AUX_LS, **SKIP, "augmentation": True}, 50, None),
    "roi_bg_aux_ls_aug_budget": ({**ROI, "normalisation": "background", **AUX_LS, "augmentation": True}, 50,
                                 (50, 150, 300)),
}


def synthetic_for(train: xr.Dataset, per_sample: int, seed: int) -> xr.Dataset:
    """``per_sample`` synthetic shots of every training sample (noise model fitted on the training shots only)."""
    model = fit_noise_model(train, saturation=SATURATION, max_shape_modes=0)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xA06]))
    labels = {s: float(train["Na"].values[np.asarray(train["sample_id"].values) == s][0]) for s in model.sample_ids}
    rows, sids = [], []
    for s in model.sample_ids:
        rows.append(sample_spectra(model, s, per_sample, rng))
        sids += [s] * per_sample
    n = len(sids)
    ds = make_spectra_dataset(
        np.concatenate(rows), train["wavelength"].values, sids, list(range(n)),
        labels={"Na": ([labels[s] for s in sids], "ppm")}, spectrum=np.arange(10**6, 10**6 + n),
    )
    return ds.assign(synthetic=("spectrum", np.ones(n, bool)), source_sample=("spectrum", np.asarray(sids)))


def run_config(ds: xr.Dataset, name: str, seed: int, folds: list[str]) -> dict:
    overrides, per_sample, budgets = CONFIGS[name]
    config = TrainingConfig(**{**BASE, **overrides, "seed": seed})
    t0 = time.perf_counter()
    preds, steps = {}, {}
    for held_out in folds:
        train = select_samples(ds, [s for s in sample_ids(ds) if s != held_out])
        sources = [train] + ([synthetic_for(train, per_sample, seed)] if per_sample else [])
        fold_config = config
        if budgets is not None:
            errors = inner_loso_errors(sources, config, budgets)
            rmse = {b: float(np.sqrt(np.mean(np.square(list(e.values()))))) for b, e in errors.items()}
            fold_config = config.model_copy(update={"max_steps": min(rmse, key=lambda b: (rmse[b], b))})
        model = train_model(sources, fold_config)
        test = select_samples(ds, [held_out])
        preds[held_out] = float(np.mean(model.predict(np.asarray(test["intensity"].values))["Na"]))
        steps[held_out] = model.metrics["steps"]
        print(f"{name} fold {held_out}: pred {preds[held_out]:.0f} true {float(test['Na'].values[0]):.0f}",
              file=sys.stderr, flush=True)
    truth = certified(ds, folds)
    err = np.array([preds[s] - truth[s] for s in folds])
    return {
        "rmsep_ppm": round(float(np.sqrt(np.mean(err**2))), 1),
        "per_sample_pred_ppm": {s: round(preds[s], 1) for s in folds},
        "steps": steps,
        "input_channels": model.metrics["input_channels"],
        "saturated_inputs_last_fold": model.metrics["saturated_inputs"],
        "synthetic_per_sample": per_sample,
        "inner_budgets": list(budgets) if budgets else None,
        "config": {**overrides},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def family_seeds(ds: xr.Dataset, family: str, training: dict, per_sample: int, seeds: list[int],
                 folds: list[str]) -> dict:
    """LOSO of the candidate family ``family`` (one network per seed), per seed and averaged over the seeds."""
    from dataclasses import replace

    from libs_pipeline.candidates import default_candidates

    truth = certified(ds, folds)
    t0 = time.perf_counter()
    preds: dict[int, dict[str, float]] = {}
    for seed in seeds:
        candidate = replace(default_candidates([family], training=training, per_sample=per_sample, seed=seed)[family],
                            n_networks=1)
        for held_out in folds:
            train = select_samples(ds, [s for s in sample_ids(ds) if s != held_out])
            fitted = candidate.fit(train, "Na")
            test = select_samples(ds, [held_out])
            preds.setdefault(seed, {})[held_out] = float(np.mean(fitted.predict_dataset(test)))
        print(f"{family} seed {seed}: {_rmsep(preds[seed], truth):.0f} ppm", file=sys.stderr, flush=True)
    mean_pred = {s: float(np.mean([preds[k][s] for k in seeds])) for s in folds}
    return {
        "per_seed_rmsep_ppm": {str(k): round(_rmsep(preds[k], truth), 1) for k in seeds},
        "average_of_seeds_rmsep_ppm": round(_rmsep(mean_pred, truth), 1),
        "average_of_seeds_error_ppm": {s: round(mean_pred[s] - truth[s], 1) for s in folds},
        "training": training, "per_sample": per_sample, "seconds": round(time.perf_counter() - t0, 1),
    }


def certified(ds: xr.Dataset, samples: list[str]) -> dict[str, float]:
    """Certified Na (ppm) of each sample."""
    sid = np.asarray(ds["sample_id"].values)
    return {s: float(ds["Na"].values[sid == s][0]) for s in samples}


def _rmsep(pred: dict[str, float], truth: dict[str, float]) -> float:
    return float(np.sqrt(np.mean([(pred[s] - truth[s]) ** 2 for s in pred])))


def univariate_by_normalisation(ds: xr.Dataset, folds: list[str]) -> dict:
    """LOSO per-sample RMSEP (ppm) of the linear univariate calibration with each normalisation held fixed (the
    baseline's own ``SelectedUnivariate`` given one option): what a CNN reading that normalisation's input inherits."""
    truth = certified(ds, folds)
    wl = np.asarray(ds["wavelength"].values)
    out = {}
    for norm in ("none", "background", "total"):
        preds = {}
        for held_out in folds:
            train = select_samples(ds, [s for s in sample_ids(ds) if s != held_out])
            uni = SelectedUnivariate(default_lines("Na"), normalisations=[norm], forms=["linear"],
                                     saturation=SATURATION)
            uni.fit(np.asarray(train["intensity"].values), wl, np.asarray(train["Na"].values, dtype=np.float64),
                    groups=spectrum_sample_ids(train))
            test = np.asarray(select_samples(ds, [held_out])["intensity"].values)
            preds[held_out] = float(np.mean(uni.predict(test)))
        out[norm] = {"rmsep_ppm": round(_rmsep(preds, truth), 1),
                     "per_sample_pred_ppm": {s: round(v, 1) for s, v in preds.items()},
                     "error_ppm": {s: round(preds[s] - truth[s], 1) for s in folds}}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="roi_bg_aux_ls_aug", help=f"comma-separated, from {list(CONFIGS)}")
    parser.add_argument("--seeds", default="0", help="comma-separated; >1 seed adds the seed-ensemble (mean) result")
    parser.add_argument("--folds", default="", help="only these held-out samples (default: all 7)")
    parser.add_argument("--family", default="", choices=("", *FAMILIES),
                        help="a CNN candidate family (e.g. multitask_aug) instead of --configs")
    parser.add_argument("--family-training", default="{}", help="JSON TrainingConfig overrides of --family")
    parser.add_argument("--per-sample", type=int, default=DEFAULT_SYNTHETIC_PER_SAMPLE,
                        help="--family: synthetic shots per training sample of an augmented family")
    args = parser.parse_args(argv)
    names = [c for c in args.configs.split(",") if c]
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    ds = load_campaign(str(MANIFEST), options=IngestOptions(saturation_level=SATURATION))
    folds = [s for s in args.folds.split(",") if s] or sample_ids(ds)
    truth = certified(ds, folds)
    seeds = [int(v) for v in args.seeds.split(",") if v]
    by_normalisation = univariate_by_normalisation(ds, folds)
    # the reference: linear fit of the Na I 818/819 area, no normalisation (the univariate family's simplest choice)
    results: dict = {"univariate_reference": by_normalisation["none"],
                     "univariate_linear_by_normalisation": by_normalisation}
    if args.family:
        results[args.family] = family_seeds(ds, args.family, json.loads(args.family_training), args.per_sample,
                                            seeds, folds)
        names = []
    for name in names:
        per_seed = {seed: run_config(ds, name, seed, folds) for seed in seeds}
        if len(seeds) == 1:
            results[name] = per_seed[seeds[0]]
            continue
        mean_pred = {s: float(np.mean([r["per_sample_pred_ppm"][s] for r in per_seed.values()])) for s in folds}
        err = np.array([mean_pred[s] - truth[s] for s in folds])
        results[name] = {
            "per_seed_rmsep_ppm": {str(k): r["rmsep_ppm"] for k, r in per_seed.items()},
            "ensemble_rmsep_ppm": round(float(np.sqrt(np.mean(err**2))), 1),
            "ensemble_per_sample_pred_ppm": {s: round(v, 1) for s, v in mean_pred.items()},
            "per_seed": {str(k): r for k, r in per_seed.items()},
        }
    return {"dataset": "oreas_na", "split": "leave-one-sample-out", "folds": folds, "seeds": seeds,
            "y_true_ppm": truth, "results": results}


if __name__ == "__main__":
    print(json.dumps(main()))
