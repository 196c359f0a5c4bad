"""Trust benchmark: does the trust score catch the *wrong* predictions, better than the usual comparators?

The question a user asks is "is this number wrong?". Every method here scores the same predictions (the
served model's) and is judged by error-based metrics (``libs_pipeline.trust.error_metrics``): AUROC with
positives |error| > k x in-distribution RMSEP (k = 2; the RMSEP of the nominal test spectra of the mix, and
beside it of the trust-calibration samples), risk-coverage (RMSEP of the kept predictions when the most suspect are rejected), a null control
(a nominal re-measurement scored like a scenario: AUROC should be about 0.5), the in-distribution flag rate
with intervals, and -- labelled as what it is -- shift-detection AUROC.

The in-distribution flag rate rests on samples, not spectra: it is measured on the test samples plus
``--flag-rate-samples`` new nominal samples (``--flag-rate-seed``), and, because one set of 10 calibration
samples is one draw of the threshold and the scales, also over ``--calibration-draws`` random calibration sets
drawn from all unseen samples (``in_distribution_flag_rate.across_calibrations``).

Virtual instrument (``--dataset virtual``): a nominal campaign split by sample into disjoint train /
early-stop / trust-calibration / test samples (checked by ``evaluation.protocol.check_disjoint_roles``);
the model is the held-out recalibration's challenger: an ensemble of ``--ensemble`` networks (default
TrainingConfig, statistical augmentation from a noise model of the training samples, early stopping on the
early-stop samples, masked-window auxiliaries); the test samples are re-measured under every scenario x
severity. "Ours" (``trust_score``) is the served calibration's error score (the ensemble spread scaled by the square
root of the predicted concentration); ``trust_score_all_parts`` ranks by the flag score (every part) instead.
Comparators on equal terms: the flag score with the ordinary (visible-window) auxiliaries, PLS T²/Q on the
model's input and on raw counts, the deep ensemble's raw spread, MC-dropout of one network with the test-time
rate tuned on the calibration samples (Gaussian NLL), the width of a normalised split-conformal interval, and a
control: the predicted concentration itself (``predicted_concentration``; absolute errors grow with
concentration).

Real data (``--dataset oreas``): nested leave-one-sample-out over the 7 OREAS Na standards. For each outer
fold h and each family, the trust calibration comes from inner leave-one-sample-out predictions of the other
six samples (cross-fitted, never from h) and the family served in that fold is chosen by the same rule as
recalibration from the same inner predictions (augmented families subject to the realism gate); h is then
scored as measured and as corrupted copies (gain x0.5 and x0.7, a 3-channel wavelength shift, another
instrument's spectral response) and spectra of another (virtual) instrument resampled onto the grid.

Prints one JSON object. ``python benchmarks/trust.py --dataset virtual --cache /tmp/trust-cache`` (cached
simulations and models make a re-run fast); ``--quick`` for a small smoke run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from libs_pipeline.baselines.pls import PLSCalibration
from libs_pipeline.candidates.ensemble import EnsembleModel
from libs_pipeline.config import CampaignConfig, IngestOptions, TrainingConfig, TrustConfig
from libs_pipeline.evaluation.protocol import check_disjoint_roles
from libs_pipeline.models import load_model, save_model, train_model
from libs_pipeline.spectra.dataset import select_samples
from libs_pipeline.synth.synthetic_store import SEED_RULE
from libs_pipeline.trust.detectors import (
    NormalisedConformal,
    PLSDistanceDetector,
    combined_t2_q,
    raw_counts,
)
from libs_pipeline.trust.error_metrics import (
    error_auroc,
    error_tolerance,
    flag_rate,
    flagged_vs_kept,
    risk_coverage,
)
from libs_pipeline.trust.measurements import measure_spectra
from libs_pipeline.trust.ood_evaluation import auroc
from libs_pipeline.trust.prediction import calibrate_model_trust, model_lines
from libs_pipeline.trust.scores import sample_trust, trust_scores

OREAS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "oreas_na"
#: Ours: the served model's error score (``trust.scores.error_score``: the ensemble spread scaled by the square root
#: of the predicted concentration; without an ensemble the trust score).
OURS = "trust_score"
#: The same calibration's flag score (max over every part) used as the ranking: what the flag rests on.
ALL_PARTS = "trust_score_all_parts"
#: A control, not a trust method: the predicted concentration itself as the ranking. Absolute errors grow with the
#: concentration, so "large prediction" alone ranks wrong answers; ours uses it too and must beat it.
PREDICTION = "predicted_concentration"
OREAS_METHODS = [OURS, ALL_PARTS, PREDICTION]
MC_DROPOUT_RATES = (0.05, 0.1, 0.2, 0.3, 0.5)


def log(msg: str) -> None:
    print(f"[trust-benchmark] {msg}", file=sys.stderr, flush=True)


def _r(v: Any, k: int = 4) -> Any:
    if v is None:
        return None
    if isinstance(v, dict):
        return {key: _r(x, k) for key, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_r(x, k) for x in v]
    if isinstance(v, (bool, np.bool_, str, int, np.integer)):
        return v.item() if isinstance(v, np.generic) else v
    return round(float(v), k)


# ---------------------------------------------------------------------------------------------------------
# the error-based evaluation shared by both datasets


def sets_metrics(reference: dict, shifted: Mapping[str, Mapping[str, dict]], null: dict | None, methods: list[str],
                 tolerance: float) -> dict:
    """The issue's JSON keys from scored sets: ``reference`` (in-distribution test), ``shifted[scenario][severity]``
    and an optional ``null`` (nominal re-measurement). Each set: ``errors``, ``flag``, ``scores[method]``."""

    def mix(*sets: dict) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        scores = {m: np.concatenate([s["scores"][m] for s in sets]) for m in methods}
        return scores, np.concatenate([s["errors"] for s in sets]), np.concatenate([s["flag"] for s in sets])

    out: dict[str, Any] = {"tolerance": tolerance, "error_auroc": {}, "shift_auroc": {}, "flagged_vs_kept": {},
                           "n_wrong": {}}
    comparison: dict[str, dict] = {m: {"error_auroc": {}} for m in methods}
    for name, by_severity in shifted.items():
        for severity, s in by_severity.items():
            scores, errors, flags = mix(reference, s)
            out["error_auroc"].setdefault(name, {})[severity] = error_auroc(scores[OURS], errors, tolerance)
            out["n_wrong"].setdefault(name, {})[severity] = int(np.sum(np.abs(s["errors"]) > tolerance))
            out["shift_auroc"].setdefault(name, {})[severity] = auroc(reference["scores"][OURS], s["scores"][OURS])
            out["flagged_vs_kept"].setdefault(name, {})[severity] = flagged_vs_kept(s["errors"], s["flag"], tolerance)
            for m in methods:
                comparison[m]["error_auroc"].setdefault(name, {})[severity] = error_auroc(scores[m], errors, tolerance)
    everything = [reference] + [s for by in shifted.values() for s in by.values()]
    scores, errors, flags = mix(*everything)
    out["error_auroc"]["pooled"] = error_auroc(scores[OURS], errors, tolerance)
    out["n_wrong"]["pooled"] = int(np.sum(np.abs(errors) > tolerance))
    out["n_pooled"] = int(errors.size)
    rc = risk_coverage(scores[OURS], errors)
    out["risk_coverage"] = rc.summary()
    out["risk_coverage"]["ratio_0.9_to_1.0"] = rc.at(0.9) / rc.at(1.0)
    # what rejecting the largest errors themselves reaches: how far below 0.75 the mix lets any ranking go
    out["risk_coverage"]["oracle_ratio_0.9_to_1.0"] = rc.at(0.9, oracle=True) / rc.at(1.0)
    out["flagged_vs_kept"]["pooled"] = flagged_vs_kept(errors, flags, tolerance)
    for m in methods:
        rc_m = risk_coverage(scores[m], errors)
        comparison[m].update({
            "error_auroc_pooled": error_auroc(scores[m], errors, tolerance),
            "rmsep_at_coverage_0.9": rc_m.at(0.9),
            "rmsep_at_coverage_0.8": rc_m.at(0.8),
            "aurc": rc_m.aurc,
        })
    out["comparison"] = comparison
    if null is not None:
        out["null_auroc"] = auroc(reference["scores"][OURS], null["scores"][OURS])
        n_scores, n_errors, _ = mix(reference, null)
        out["null_error_auroc"] = error_auroc(n_scores[OURS], n_errors, tolerance)
        out["null_shift_auroc_by_method"] = {m: auroc(reference["scores"][m], null["scores"][m]) for m in methods}
    return out


def goals(m: dict, flag: dict) -> dict:
    ours = m["error_auroc"]["pooled"]
    others = {k: v["error_auroc_pooled"] for k, v in m["comparison"].items() if k not in (OURS, ALL_PARTS)}
    best_other = max((v for v in others.values() if v is not None), default=None)
    rate = flag["per_spectrum"]["rate"]
    g = {
        "pooled_error_auroc_ge_0.85": bool(ours is not None and ours >= 0.85),
        "pooled_error_auroc_above_every_comparator": bool(ours is not None and (best_other is None or ours > best_other)),
        "best_comparator_error_auroc": best_other,
        "rmsep_at_0.9_le_0.75x_rmsep_at_1.0": bool(m["risk_coverage"]["ratio_0.9_to_1.0"] <= 0.75),
        "in_distribution_flag_rate_within_0.05+-0.02": bool(round(abs(rate - 0.05), 9) <= 0.02),
    }
    across = flag.get("across_calibrations") or {}
    if "mean" in across:  # the rate over random calibration sets: the method's, not one calibration draw's
        g["in_distribution_flag_rate_mean_across_calibrations_within_0.05+-0.02"] = bool(
            round(abs(across["mean"] - 0.05), 9) <= 0.02)
    if "null_auroc" in m:
        g["null_auroc_within_0.5+-0.1"] = bool(abs(m["null_auroc"] - 0.5) <= 0.1)
    return g


# ---------------------------------------------------------------------------------------------------------
# virtual instrument


def stratified_split(ids: list[str], conc: np.ndarray, counts: dict[str, int]) -> dict[str, list[str]]:
    """Split sample ids by sorted concentration: the two extremes go to the first split (train), the rest are
    dealt out in order so that every split spans the range."""
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


class VisibleAuxiliaries:
    """The same model reporting its ordinary (window-visible) auxiliary heads: the comparison for masking."""

    def __init__(self, model) -> None:
        self._model = model

    def predict(self, intensity: np.ndarray) -> dict[str, np.ndarray]:
        return self._model.predict(intensity, auxiliaries="visible")

    def __getattr__(self, name: str):
        return getattr(self._model, name)


def tune_mc_dropout(model, x: np.ndarray, y: np.ndarray, pred: np.ndarray, n_samples: int, seed: int) -> tuple[float, dict]:
    """The test-time dropout rate with the lowest Gaussian NLL of the calibration residuals."""
    nll = {}
    r = pred - y
    for p in MC_DROPOUT_RATES:
        std = model.predict_with_uncertainty(x, n_samples=n_samples, seed=seed, dropout=p)[1][model.analyte]
        s = np.maximum(std.astype(np.float64), 1e-12)
        nll[p] = float(np.mean(np.log(s) + 0.5 * (r / s) ** 2))
    return min(nll, key=nll.get), nll


class Scorer:
    """Everything fitted before any test spectrum is seen: model, trust calibrations, comparators."""

    def __init__(self, members: list, train: xr.Dataset, early_stop: xr.Dataset, calibration: xr.Dataset,
                 trust_config: TrustConfig, args) -> None:
        # the served model is the ensemble (recalibration's challenger): averaged outputs, its spread a trust part
        self.model = EnsembleModel(list(members)) if len(members) > 1 else members[0]
        self.members = members
        self.network = members[0]  # MC-dropout and the input transform of the comparators: one network's
        self.analyte = self.model.analyte
        self.trust = calibrate_model_trust(self.model, train, calibration, trust_config)
        self.trust_visible = calibrate_model_trust(VisibleAuxiliaries(self.model), train, calibration, trust_config)
        self.lines = model_lines(self.model)
        self.mc_samples, self.seed = args.mc_samples, args.seed
        x_tr = np.asarray(train["intensity"].values, dtype=np.float32)
        y_tr = np.asarray(train[self.analyte].values, dtype=np.float64)
        g_tr = np.asarray(train["sample_id"].values).astype(str)
        self.pls: dict[str, PLSDistanceDetector] = {}
        self.pls_components: dict[str, int] = {}
        for name, transform in (("model_input", self.network.normaliser.transform), ("raw", raw_counts)):
            k = PLSCalibration(max_components=8, transform=transform).fit(x_tr, y_tr, g_tr).n_components_
            self.pls[name] = PLSDistanceDetector(k, transform=transform).fit(x_tr, y_tr)
            self.pls_components[name] = k
        x_cal = np.asarray(calibration["intensity"].values, dtype=np.float32)
        y_cal = np.asarray(calibration[self.analyte].values, dtype=np.float64)
        pred_cal = self.model.predict(x_cal)[self.analyte].astype(np.float64)
        self.calibration_rmsep = float(np.sqrt(np.mean((pred_cal - y_cal) ** 2)))
        self.mc_rate, self.mc_nll = tune_mc_dropout(self.network, x_cal, y_cal, pred_cal, args.mc_samples, args.seed)
        self.conformal = NormalisedConformal(alpha=0.1).fit(self.network.normaliser.transform(x_cal), pred_cal - y_cal)
        self.pls_limits = {n: (d.t2(x_cal), d.q(x_cal)) for n, d in self.pls.items()}
        self.early_stop_samples = sorted(set(np.asarray(early_stop["sample_id"].values).astype(str)))

    @property
    def methods(self) -> list[str]:
        return [OURS, ALL_PARTS, "trust_visible_auxiliaries", "pls_t2_q_model_input", "pls_t2_q_raw", "deep_ensemble_std",
                "mc_dropout_std", "conformal_width", PREDICTION]

    def score(self, ds: xr.Dataset) -> dict:
        x = np.asarray(ds["intensity"].values, dtype=np.float32)
        y = np.asarray(ds[self.analyte].values, dtype=np.float64)
        sids = np.asarray(ds["sample_id"].values).astype(str)
        pred = self.model.predict(x)
        measured = measure_spectra(x, self.model.wavelength, self.lines, self.trust.spectral)
        table = trust_scores(self.trust, pred, measured)
        visible = trust_scores(self.trust_visible, self.model.predict(x, auxiliaries="visible"), measured)
        y_pred = table["prediction"].to_numpy(dtype=np.float64)
        ensemble = np.stack([m.predict(x)[self.analyte] for m in self.members]).astype(np.float64)
        mc_std = self.network.predict_with_uncertainty(x, self.mc_samples, self.seed, dropout=self.mc_rate)[1][self.analyte]
        scores = {
            OURS: table["error_score"].to_numpy(dtype=np.float64),
            ALL_PARTS: table["score"].to_numpy(dtype=np.float64),
            "trust_visible_auxiliaries": visible["score"].to_numpy(dtype=np.float64),
            "deep_ensemble_std": ensemble.std(axis=0, ddof=1),
            "mc_dropout_std": mc_std.astype(np.float64),
            "conformal_width": self.conformal.width(self.network.normaliser.transform(x)),
            PREDICTION: y_pred,
        }
        for name, det in self.pls.items():
            t2_ref, q_ref = self.pls_limits[name]
            scores[f"pls_t2_q_{name}"] = combined_t2_q(det.t2(x), det.q(x), t2_ref, q_ref)
        samples = sample_trust(table.reset_index(drop=True), sids, self.trust).set_index("sample_id")
        names = np.unique(sids)
        return {
            "errors": y_pred - y,
            "flag": table["flag"].to_numpy(dtype=bool),
            "visible_flag": visible["flag"].to_numpy(dtype=bool),
            "sample_id": sids,
            "sample_flag": samples.loc[names, "flag"].to_numpy(dtype=bool),
            "scores": scores,
            "top_part": table["top_part"].to_numpy(),
        }


def fresh_in_distribution(simulate: Callable, base: CampaignConfig, args, train: xr.Dataset) -> xr.Dataset | None:
    """``--flag-rate-samples`` new nominal samples (a fresh draw from the campaign's prior, ``--flag-rate-seed``) whose analyte
    concentration lies within the training samples' range: more in-distribution samples for the flag rate, whose
    effective size is the number of samples (10 test samples alone cannot tell 1 % from 5 %)."""
    if args.flag_rate_samples <= 0:
        return None
    ds, table = simulate(base.model_copy(update={"n_samples": args.flag_rate_samples}), args.flag_rate_seed)
    y = np.asarray(train[base.analyte].values, dtype=np.float64)
    conc = table[base.analyte].to_numpy(float)
    keep = table["sample_id"][(conc >= y.min()) & (conc <= y.max())].astype(str).tolist()
    if not keep:
        return None
    fresh = select_samples(ds, keep).load()
    return fresh.assign(sample_id=("spectrum", np.char.add("new-", fresh["sample_id"].values.astype(str))))


def flag_rate_across_calibrations(scorer: Scorer, train: xr.Dataset, pool: xr.Dataset, n_calibration: int, draws: int,
                                  config: TrustConfig, seed: int) -> dict:
    """The in-distribution flag rate a user gets, over the randomness of the calibration samples too: ``draws``
    times, ``n_calibration`` samples of ``pool`` (in-distribution samples no network saw) calibrate the trust of the
    same served model and the other pool samples are scored. One calibration set of 10 samples gives one draw
    of its threshold; this is the distribution over such draws (mean, quantiles, and each draw's rate)."""
    if draws < 1:
        return {"skipped": f"--calibration-draws {draws}: no calibration draws asked for"}
    sids = np.asarray(pool["sample_id"].values).astype(str)
    names = np.unique(sids)
    if names.size <= n_calibration:
        return {"skipped": f"{names.size} pool samples, need more than {n_calibration}"}
    x = np.asarray(pool["intensity"].values, dtype=np.float32)
    pred = scorer.model.predict(x)
    measured = measure_spectra(x, scorer.model.wavelength, scorer.lines, scorer.trust.spectral)
    rng = np.random.default_rng(seed)
    rates, thresholds = [], []
    for _ in range(draws):
        chosen = rng.choice(names, n_calibration, replace=False)
        calibration = calibrate_model_trust(scorer.model, train, select_samples(pool, list(chosen)), config)
        rest = ~np.isin(sids, chosen)
        table = trust_scores(calibration, {k: v[rest] for k, v in pred.items()}, measured[rest].reset_index(drop=True))
        rates.append(float(table["flag"].mean()))
        thresholds.append(float(calibration.threshold))
    r = np.asarray(rates)
    return {
        "what": f"{draws} random calibration sets of {n_calibration} samples from {names.size} unseen in-distribution "
                "samples; each scores the other samples' nominal spectra",
        "mean": float(r.mean()),
        "median": float(np.median(r)),
        "quantiles_10_90": [float(np.quantile(r, 0.1)), float(np.quantile(r, 0.9))],
        "rates": rates,
        "thresholds": thresholds,
    }


def virtual_benchmark(args) -> dict:
    from libs_pipeline.physics.campaign import simulate_campaign
    from libs_pipeline.physics.scenarios import SEVERITIES, scenario_config, scenario_names
    from libs_pipeline.synth.in_memory import synthesize_in_memory

    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    counts = {"train": args.train_samples, "early_stop": args.es_samples, "trust_calibration": args.cal_samples,
              "test": args.test_samples}
    base = CampaignConfig(n_samples=sum(counts.values()), n_shots=args.shots)
    cache = Path(args.cache) if args.cache else None

    def simulate(config: CampaignConfig, seed: int, samples: pd.DataFrame | None = None) -> tuple[xr.Dataset, pd.DataFrame]:
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
    check_disjoint_roles(split)
    parts = {k: select_samples(ds, v).load() for k, v in split.items()}

    t = time.perf_counter()
    synthetic = synthesize_in_memory(parts["train"], args.per_sample, args.seed) if args.per_sample else None
    members = []
    for k in range(args.ensemble):
        config = TrainingConfig(
            analyte=base.analyte, augmentation=synthetic is not None, max_steps=args.max_steps, device="cpu",
            progress_bar=False, seed=args.seed + k, masked_auxiliaries=True, num_threads=1,
        )
        # the draw rule is part of the key: other synthetic draws train another network
        key = hashlib.sha256((config.model_dump_json() + str(split) + str(args.per_sample) + SEED_RULE).encode()
                             ).hexdigest()[:16]
        model_dir = cache / f"model-{key}" if cache is not None else None
        if model_dir is not None and model_dir.is_dir():
            members.append(load_model(model_dir))
            continue
        log(f"training network {k + 1}/{args.ensemble} on {len(split['train'])} samples"
            f" (+{args.per_sample} synthetic each), early stopping on {len(split['early_stop'])}")
        sources = [parts["train"]] + ([synthetic] if synthetic is not None else [])
        members.append(train_model(sources, config, val_sources=[parts["early_stop"]]))
        if model_dir is not None:
            save_model(members[-1], model_dir)
    for m in members:  # the network never saw a trust-calibration or test sample
        check_disjoint_roles({"training": m.metrics["train_samples"], "early_stop": m.metrics["val_samples"],
                              "trust_calibration": split["trust_calibration"], "test": split["test"]})
    timing["train"] = time.perf_counter() - t

    t = time.perf_counter()
    scorer = Scorer(members, parts["train"], parts["early_stop"], parts["trust_calibration"],
                    TrustConfig(combine=args.combine), args)
    reference = scorer.score(parts["test"])
    test_table = table[table["sample_id"].isin(split["test"])].reset_index(drop=True)
    remeasured, _ = simulate(base, args.seed + 1, test_table)
    null = scorer.score(remeasured)
    fresh = fresh_in_distribution(simulate, base, args, parts["train"])
    fresh_scores = scorer.score(fresh) if fresh is not None else None
    shifted: dict[str, dict[str, dict]] = {}
    for name in scenario_names():
        if name == "nominal":
            continue
        for severity in SEVERITIES:
            log(f"scenario {name} / {severity}")
            sim, _ = simulate(scenario_config(base, name, severity), args.seed + 1, test_table)
            shifted.setdefault(name, {})[severity] = scorer.score(sim)
    timing["score"] = time.perf_counter() - t

    # "wrong" = |error| > k x the in-distribution RMSEP of the evaluated mix (its nominal test spectra); the
    # same metrics with the trust-calibration samples' RMSEP (known before any test) are reported beside
    reference_rmsep = float(np.sqrt(np.mean(reference["errors"] ** 2)))
    tolerance = error_tolerance(reference_rmsep, args.k, args.absolute_tolerance)
    metrics = sets_metrics(reference, shifted, null, scorer.methods, tolerance)
    calibration_tolerance = error_tolerance(scorer.calibration_rmsep, args.k, args.absolute_tolerance)
    by_calibration = sets_metrics(reference, shifted, null, scorer.methods, calibration_tolerance)
    flags_test = flag_rate(reference["flag"], reference["sample_id"], reference["sample_flag"])
    flags = flags_test if fresh_scores is None else flag_rate(
        np.concatenate([reference["flag"], fresh_scores["flag"]]),
        np.concatenate([reference["sample_id"], fresh_scores["sample_id"]]),
        np.concatenate([reference["sample_flag"], fresh_scores["sample_flag"]]))
    flags_null = flag_rate(null["flag"], null["sample_id"], null["sample_flag"])
    t = time.perf_counter()
    pool = xr.concat([parts["trust_calibration"], parts["test"]] + ([fresh] if fresh is not None else []), dim="spectrum",
                     data_vars="minimal", coords="minimal", compat="override")
    across = flag_rate_across_calibrations(scorer, parts["train"], pool, args.cal_samples, args.calibration_draws,
                                           TrustConfig(combine=args.combine), args.flag_rate_seed)
    timing["flag_rate_across_calibrations"] = time.perf_counter() - t
    masked_effect = {
        "what": "the flag score (every part) with masked-window vs ordinary auxiliary heads",
        "error_auroc_pooled": {"masked": metrics["comparison"][ALL_PARTS]["error_auroc_pooled"],
                               "visible": metrics["comparison"]["trust_visible_auxiliaries"]["error_auroc_pooled"]},
        "interfering_element_error_auroc": {
            "masked": metrics["comparison"][ALL_PARTS]["error_auroc"]["interfering_element"],
            "visible": metrics["comparison"]["trust_visible_auxiliaries"]["error_auroc"]["interfering_element"],
        },
        "in_distribution_flag_rate": {"masked": float(reference["flag"].mean()),
                                      "visible": float(reference["visible_flag"].mean())},
    }
    result = {
        "dataset": "virtual",
        "error_auroc": metrics["error_auroc"],
        "risk_coverage": metrics["risk_coverage"],
        "null_auroc": metrics["null_auroc"],
        "null_error_auroc": metrics["null_error_auroc"],
        "in_distribution_flag_rate": {
            "rate": flags["per_spectrum"]["rate"], "ci": flags["per_spectrum"]["ci"],
            "per_spectrum": flags["per_spectrum"], "per_sample": flags["per_sample"],
            "what": "nominal spectra of samples no network or calibration saw: the test samples and "
                    f"{0 if fresh_scores is None else len(np.unique(fresh_scores['sample_id']))} new samples drawn from "
                    "the campaign's prior within the training concentration range",
            "test_samples_only": flags_test["per_spectrum"],
            "new_samples_only": None if fresh_scores is None else flag_rate(
                fresh_scores["flag"], fresh_scores["sample_id"], fresh_scores["sample_flag"])["per_spectrum"],
            "remeasured": flags_null["per_spectrum"],
            "across_calibrations": across,
        },
        "shift_auroc": {"what": "shift detection (scenario vs nominal test spectra), not error detection",
                        **metrics["shift_auroc"]},
        "comparison": metrics["comparison"],
        "masked_window_auxiliaries": masked_effect,
        "flagged_vs_kept": metrics["flagged_vs_kept"],
        "n_wrong": metrics["n_wrong"],
        "tolerance": {"k": args.k, "absolute": args.absolute_tolerance, "value": tolerance,
                      "in_distribution_rmsep_test_samples": reference_rmsep,
                      "in_distribution_rmsep_trust_calibration_samples": scorer.calibration_rmsep},
        "with_trust_calibration_rmsep_tolerance": {
            "tolerance": calibration_tolerance,
            "error_auroc_pooled": by_calibration["error_auroc"]["pooled"],
            "comparison_error_auroc_pooled": {m: v["error_auroc_pooled"] for m, v in by_calibration["comparison"].items()},
        },
        "setup": {
            "samples": {k: len(v) for k, v in split.items()},
            "roles_disjoint": True,
            "shots_per_sample": base.n_shots,
            "channels": int(ds.sizes["wavelength"]),
            "analyte": base.analyte,
            "model": f"held-out recalibration challenger: an ensemble of {len(members)} networks, default TrainingConfig, "
                     f"statistical augmentation ({args.per_sample} synthetic per training sample), early stopping, "
                     "masked-window auxiliaries",
            "lines": scorer.trust.lines,
            "parts": scorer.trust.part_names(),
            "disabled_parts": dict(getattr(scorer.trust, "disabled_parts", {}) or {}),
            "threshold": scorer.trust.threshold,
            "steps": [m.metrics.get("best_step") for m in members],
            "ensemble_networks": len(members),
            "mc_dropout": {"rate": scorer.mc_rate, "nll_by_rate": scorer.mc_nll, "samples": args.mc_samples},
            "pls_components": scorer.pls_components,
            "conformal_quantile": scorer.conformal.quantile,
            "combine": args.combine,
            "seed": args.seed,
        },
        "timing_s": {**timing, "total": time.perf_counter() - t0},
    }
    result["goals"] = goals(metrics, {**flags, "across_calibrations": across})
    return _r(result)


# ---------------------------------------------------------------------------------------------------------
# OREAS (real data)


def shift_channels(x: np.ndarray, k: int) -> np.ndarray:
    """Features move ``k`` channels to the right (wavelength-calibration error); edge values repeat."""
    out = np.empty_like(x)
    out[:, k:] = x[:, :-k]
    out[:, :k] = x[:, :1]
    return out


def response_tilt(wavelength: np.ndarray) -> np.ndarray:
    """Another spectrometer's relative spectral response: 0.5 at the blue end rising to 1.5 at the red end."""
    wl = np.asarray(wavelength, dtype=np.float64)
    return (0.5 + (wl - wl[0]) / (wl[-1] - wl[0])).astype(np.float32)


def foreign_spectra(wavelength: np.ndarray, args) -> xr.Dataset:
    """Spectra of another instrument: the virtual instrument (rock matrix, Na 0.03-2 wt %, 4096 channels over the
    same range), resampled onto the OREAS grid; labels in ppm."""
    from libs_pipeline.physics.campaign import simulate_campaign
    from libs_pipeline.spectra.dataset import make_spectra_dataset
    from libs_pipeline.spectra.grid import intensity_on_grid

    config = CampaignConfig(matrix="rock", analyte="Na", analyte_range_wt=(0.03, 2.0), n_samples=args.foreign_samples,
                            n_shots=args.foreign_shots, wavelength_start_nm=float(wavelength[0]),
                            wavelength_stop_nm=float(wavelength[-1]), n_channels=4096)
    key = hashlib.sha256((config.model_dump_json() + str(args.seed)).encode()).hexdigest()[:16]
    cache = Path(args.cache) / f"foreign-{key}.nc" if args.cache else None
    if cache is not None and cache.is_file():
        sim = xr.load_dataset(cache)
    else:
        sim = simulate_campaign(config, seed=args.seed, workers=args.workers).spectra
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            sim.to_netcdf(cache)
    x = intensity_on_grid(sim, wavelength, slice(None), resample=True)
    return make_spectra_dataset(
        x, wavelength, np.asarray(sim["sample_id"].values).astype(str), np.asarray(sim["shot"].values),
        labels={"Na": (np.asarray(sim["Na"].values, dtype=np.float64) * 1e4, "ppm")},
    )


def _trust_fold(candidate, train: xr.Dataset, inner, analyte: str):
    """Fit ``candidate`` on ``train`` and calibrate its trust from the inner out-of-fold predictions ``inner``."""
    from libs_pipeline.trust.prediction import calibrate_trust_from_oof

    fitted = candidate.fit(train, analyte)
    mask = np.isfinite(inner.predictions)
    tasks = {k: np.asarray(v, dtype=np.float64)[mask] for k, v in (inner.task_predictions or {}).items()}
    tasks.setdefault(analyte, inner.predictions[mask])
    return fitted.model, calibrate_trust_from_oof(fitted.model, train, tasks)


def _score_copy(model, trust, x: np.ndarray, y: np.ndarray, sids: np.ndarray) -> dict:
    pred = model.predict(x)
    table = trust_scores(trust, pred, measure_spectra(x, model.wavelength, model_lines(model), trust.spectral))
    samples = sample_trust(table.reset_index(drop=True), sids, trust).set_index("sample_id")
    return {
        "errors": table["prediction"].to_numpy(dtype=np.float64) - y,
        "flag": table["flag"].to_numpy(dtype=bool),
        "sample_id": sids,
        "sample_flag": samples.loc[np.unique(sids), "flag"].to_numpy(dtype=bool),
        "scores": {OURS: table["error_score"].to_numpy(dtype=np.float64),
                   ALL_PARTS: table["score"].to_numpy(dtype=np.float64),
                   PREDICTION: table["prediction"].to_numpy(dtype=np.float64)},
        "reason": table.loc[table["flag"], "reason"].iloc[0] if table["flag"].any() else "",
    }


def _concat(parts: list[dict]) -> dict:
    return {
        "errors": np.concatenate([p["errors"] for p in parts]),
        "flag": np.concatenate([p["flag"] for p in parts]),
        "sample_id": np.concatenate([p["sample_id"] for p in parts]),
        "sample_flag": np.concatenate([p["sample_flag"] for p in parts]),
        "scores": {m: np.concatenate([p["scores"][m] for p in parts]) for m in OREAS_METHODS},
    }


def oreas_benchmark(args) -> dict:
    from libs_pipeline.candidates import default_candidates
    from libs_pipeline.evaluation.nested import loso_predictions
    from libs_pipeline.recalibration.loso_selection import CandidateComparison, choose_served
    from libs_pipeline.recalibration.realism_gate import realism_exclusions
    from libs_pipeline.spectra.campaign_loading import load_campaign

    t0 = time.perf_counter()
    ds = load_campaign(Path(args.oreas_dir) / "Na_ppm_from_tutorial.csv", name="oreas_na",
                       options=IngestOptions(saturation_level=args.oreas_saturation)).load()
    analyte = "Na"
    samples = list(dict.fromkeys(np.asarray(ds["sample_id"].values).astype(str)))
    wl = np.asarray(ds["wavelength"].values, dtype=np.float64)
    families = list(args.oreas_families)
    candidates = default_candidates(families, per_sample=args.oreas_per_sample, seed=args.seed)
    foreign = foreign_spectra(wl, args)
    x_foreign = np.asarray(foreign["intensity"].values, dtype=np.float32)
    y_foreign = np.asarray(foreign["Na"].values, dtype=np.float64)
    s_foreign = np.asarray(foreign["sample_id"].values).astype(str)
    tilt = response_tilt(wl)
    corruptions: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "gain_x0.5": lambda x: x * np.float32(0.5),
        "gain_x0.7": lambda x: x * np.float32(0.7),
        f"wavelength_shift_{args.oreas_shift}ch": lambda x: shift_channels(x, args.oreas_shift),
        "other_spectral_response": lambda x: x * tilt,
    }
    clean: dict[str, list[dict]] = {f: [] for f in families + ["served"]}
    corrupt: dict[str, dict[str, list[dict]]] = {f: {c: [] for c in corruptions} for f in families + ["served"]}
    foreign_scored: dict[str, list[dict]] = {f: [] for f in families + ["served"]}
    served_by_fold: dict[str, str] = {}
    per_sample = []
    for h in samples:
        others = [s for s in samples if s != h]
        check_disjoint_roles({"training and trust calibration (cross-fitted)": others, "test": [h]})
        train = select_samples(ds, others).load()
        test = select_samples(ds, [h]).load()
        x_h = np.asarray(test["intensity"].values, dtype=np.float32)
        y_h = np.asarray(test["Na"].values, dtype=np.float64)
        s_h = np.asarray(test["sample_id"].values).astype(str)
        inner = {}
        for f in families:
            log(f"fold {h}: inner leave-one-sample-out of {f}")
            inner[f] = loso_predictions(train, analyte, candidates[f])
        _, excluded = realism_exclusions(candidates, train, analyte, seed=args.seed)
        comparison = CandidateComparison(analyte, "ppm", others, inner)
        served = choose_served(comparison, excluded=excluded).winner  # the rule recalibration serves by
        served_by_fold[h] = served
        row: dict[str, Any] = {"sample": h, "certified_ppm": float(y_h[0]), "served": served}
        for f in families:
            log(f"fold {h}: fit {f} on the other {len(others)} samples, trust from inner out-of-fold predictions")
            model, trust = _trust_fold(candidates[f], train, inner[f], analyte)
            c = _score_copy(model, trust, x_h, y_h, s_h)
            clean[f].append(c)
            row[f] = {"predicted_ppm": float(np.mean(c["errors"]) + y_h[0]), "flagged_fraction": float(c["flag"].mean()),
                      "threshold": trust.threshold}
            for name, corrupt_fn in corruptions.items():
                cc = _score_copy(model, trust, corrupt_fn(x_h), y_h, s_h)
                corrupt[f][name].append(cc)
                row[f][f"{name}_flagged_fraction"] = float(cc["flag"].mean())
                row[f][f"{name}_reason"] = cc["reason"]
            fs = _score_copy(model, trust, x_foreign, y_foreign, s_foreign)
            foreign_scored[f].append(fs)
            row[f]["foreign_flagged_fraction"] = float(fs["flag"].mean())
            if f == served:
                clean["served"].append(c)
                for name in corruptions:
                    corrupt["served"][name].append(corrupt[f][name][-1])
                foreign_scored["served"].append(fs)
        per_sample.append(row)

    out: dict[str, Any] = {"dataset": "oreas", "families": {}}
    for f in families + ["served"]:
        reference = _concat(clean[f])
        shifted = {name: {"copy": _concat(corrupt[f][name])} for name in corruptions}
        shifted["foreign_instrument_resampled"] = {"copy": _concat(foreign_scored[f])}
        rmsep_spectrum = float(np.sqrt(np.mean(reference["errors"] ** 2)))
        tolerance = error_tolerance(rmsep_spectrum, args.k, args.absolute_tolerance)
        m = sets_metrics(reference, shifted, None, OREAS_METHODS, tolerance)
        flags = flag_rate(reference["flag"], reference["sample_id"], reference["sample_flag"])
        out["families"][f] = {
            "error_auroc": {k: v["copy"] for k, v in m["error_auroc"].items() if k != "pooled"} | {
                "pooled": m["error_auroc"]["pooled"]},
            "risk_coverage": m["risk_coverage"],
            "in_distribution_flag_rate": {"rate": flags["per_spectrum"]["rate"], "ci": flags["per_spectrum"]["ci"],
                                          "per_sample": flags["per_sample"]},
            "corrupted_flag_rate": {name: float(shifted[name]["copy"]["flag"].mean()) for name in shifted},
            "shift_auroc": {"what": "shift detection (copy vs clean held-out spectra)",
                            **{k: v["copy"] for k, v in m["shift_auroc"].items()}},
            "flagged_vs_kept": {k: v["copy"] if "copy" in v else v for k, v in m["flagged_vs_kept"].items()},
            "n_wrong": {k: v["copy"] if isinstance(v, dict) else v for k, v in m["n_wrong"].items()},
            "error_auroc_pooled_by_ranking": {k: v["error_auroc_pooled"] for k, v in m["comparison"].items()},
            "tolerance_ppm": tolerance,
            "held_out_rmsep_ppm_spectra": rmsep_spectrum,
        }
    served = out["families"]["served"]
    gain_shift = [k for k in served["corrupted_flag_rate"] if k.startswith(("gain_x0.5", "wavelength_shift"))]
    out["served_by_fold"] = served_by_fold
    out["goals"] = {
        "served_flags_gain_x0.5_and_shift_copies_ge_0.95": {
            k: bool(served["corrupted_flag_rate"][k] >= 0.95) for k in gain_shift},
        "served_flags_foreign_instrument_ge_0.95": bool(served["corrupted_flag_rate"]["foreign_instrument_resampled"] >= 0.95),
        "served_in_distribution_flag_rate_within_0.05+-0.02": bool(
            round(abs(served["in_distribution_flag_rate"]["rate"] - 0.05), 9) <= 0.02),
    }
    out["samples"] = per_sample
    out["protocol"] = ("nested leave-one-sample-out: per outer fold, each family's trust is calibrated from inner "
                       "leave-one-sample-out predictions of the other samples; the served family is chosen per fold "
                       "by evaluation.nested.choose_family among the families the realism gate allows")
    out["timing_s"] = time.perf_counter() - t0
    return _r(out)


def write_figures(result: dict, out: Path) -> list[str]:
    """Risk-coverage and error-AUROC bars of the virtual run (PNG files)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    comp = result["comparison"]
    names = list(comp)
    ax.barh(names, [comp[n]["error_auroc_pooled"] or 0.0 for n in names])
    ax.axvline(0.5, color="k", lw=0.8, ls=":")
    ax.set_xlabel("pooled error-AUROC (|error| > k·RMSEP)")
    fig.tight_layout()
    path = out / "error_auroc_by_method.png"
    fig.savefig(path, dpi=100)
    return [str(path)]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=("virtual", "oreas", "all"), default="all")
    p.add_argument("--train-samples", type=int, default=20)
    p.add_argument("--es-samples", type=int, default=4)
    p.add_argument("--cal-samples", type=int, default=10)
    p.add_argument("--test-samples", type=int, default=10)
    p.add_argument("--shots", type=int, default=20)
    p.add_argument("--flag-rate-samples", type=int, default=40,
                   help="new nominal samples (within the training range) added to the test samples for the flag rate")
    p.add_argument("--max-steps", type=int, default=400)
    p.add_argument("--per-sample", type=int, default=200, help="synthetic spectra per training sample (0: none)")
    p.add_argument("--ensemble", type=int, default=5, help="networks of the served ensemble (>= 2; its raw spread is the deep-ensemble comparator)")
    p.add_argument("--mc-samples", type=int, default=20)
    p.add_argument("--flag-rate-seed", type=int, default=None,
                   help="seed of the new samples and of the calibration draws (default: --seed + 3)")
    p.add_argument("--calibration-draws", type=int, default=20,
                   help="random trust-calibration sets for the flag rate across calibrations (0: none)")
    p.add_argument("--k", type=float, default=2.0, help="a prediction is wrong when |error| > k x in-distribution RMSEP")
    p.add_argument("--absolute-tolerance", type=float, default=None, help="wrong when |error| > this (analyte units)")
    p.add_argument("--combine", choices=("rms", "max"), default="max")
    p.add_argument("--workers", type=int, default=1, help="simulation processes (the CPU is shared)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--oreas-dir", default=str(OREAS_DIR))
    p.add_argument("--oreas-families", nargs="+", default=["univariate", "pls", "multitask_aug"])
    p.add_argument("--oreas-per-sample", type=int, default=200)
    p.add_argument("--oreas-saturation", type=float, default=38000.0, help="detector saturation level (counts)")
    p.add_argument("--oreas-shift", type=int, default=3, help="channels of the corrupted copy's wavelength shift")
    p.add_argument("--foreign-samples", type=int, default=3)
    p.add_argument("--foreign-shots", type=int, default=5)
    p.add_argument("--figures", default=None, help="folder for PNG figures (none when omitted)")
    p.add_argument("--quick", action="store_true", help="small smoke run (fewer samples, shots, steps, networks)")
    p.add_argument("--cache", default=None, help="folder to keep simulations and trained networks between runs")
    args = p.parse_args(argv)
    if args.flag_rate_seed is None:
        args.flag_rate_seed = args.seed + 3
    if args.ensemble < 2:
        p.error("--ensemble must be >= 2 (a spread needs two networks)")
    if args.quick:
        args.train_samples, args.es_samples, args.cal_samples, args.test_samples = 10, 3, 5, 4
        args.flag_rate_samples, args.calibration_draws = 4, 2
        args.shots, args.max_steps, args.mc_samples, args.per_sample, args.ensemble = 10, 100, 5, 20, 2
        args.oreas_families, args.oreas_per_sample = ["univariate"], 0
    import torch

    torch.set_num_threads(1)
    result: dict = {}
    if args.dataset in ("virtual", "all"):
        result.update(virtual_benchmark(args))
        if args.figures:
            result["figures"] = write_figures(result, Path(args.figures))
    if args.dataset in ("oreas", "all"):
        if not (Path(args.oreas_dir) / "Na_ppm_from_tutorial.csv").is_file():
            result["oreas"] = {"skipped": f"no OREAS data at {args.oreas_dir}"}
        else:
            result["oreas"] = oreas_benchmark(args)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
