"""Intermediate virtual samples between neighbouring reference samples (an option, off by default).

Beyond the original method: the mean spectra of two reference samples that are neighbours on the
analyte's concentration axis are mixed linearly, and so are all their labels and noise parameters, so
that the network sees a denser concentration axis. Only as good as the assumption that spectra vary
linearly with concentration between the two neighbours (no strong self-absorption or matrix change).
"""

from __future__ import annotations

import math

import numpy as np

from libs_pipeline.synth.noise_model import NoiseModel, SampleNoise


def interpolated_id(first: str, second: str, weight: float) -> str:
    """Sample id of a virtual sample: ``<first>~<second>@<weight>``."""
    return f"{first}~{second}@{weight:.4f}"


def interpolate_samples(model: NoiseModel, n_between: int, analyte: str | None = None) -> NoiseModel:
    """``model`` plus ``n_between`` virtual samples between each pair of concentration-neighbours of ``analyte``.

    Weights are j/(n_between+1), j = 1..n_between; samples with an unknown (NaN) label are not used as
    neighbours; two neighbours with equal labels get nothing between them. ``analyte`` defaults to the
    first label of the model.
    """
    if n_between < 0:
        raise ValueError(f"n_between must be >= 0, got {n_between}")
    if n_between == 0:
        return model
    if not model.label_units:
        raise ValueError("interpolation needs a label to order samples by; the model has no label variables")
    analyte = next(iter(model.label_units)) if analyte is None else analyte
    if analyte not in model.label_units:
        raise ValueError(f"analyte {analyte!r} is not a label of the model (labels: {list(model.label_units)})")
    references = [s for s in model.samples.values() if not s.parents]
    known = sorted(
        (s for s in references if math.isfinite(s.labels.get(analyte, math.nan))),
        key=lambda s: (s.labels[analyte], s.sample_id),
    )
    if len(known) < 2:
        raise ValueError(f"interpolation along {analyte!r} needs at least 2 samples with a known label, got {len(known)}")
    new = dict(model.samples)
    for a, b in zip(known[:-1], known[1:]):
        if b.labels[analyte] == a.labels[analyte]:
            continue
        for j in range(1, n_between + 1):
            t = j / (n_between + 1)
            sid = interpolated_id(a.sample_id, b.sample_id, t)
            new[sid] = SampleNoise(
                sample_id=sid,
                mean=(1.0 - t) * a.mean + t * b.mean,
                gain=(1.0 - t) * a.gain + t * b.gain,
                read_noise=(1.0 - t) * a.read_noise + t * b.read_noise,
                shot_sigma=(1.0 - t) * a.shot_sigma + t * b.shot_sigma,
                n_shots=min(a.n_shots, b.n_shots),
                labels={
                    name: (1.0 - t) * a.labels.get(name, math.nan) + t * b.labels.get(name, math.nan)
                    for name in model.label_units
                },
                parents=(a.sample_id, b.sample_id),
                weight=t,
                # independent draws of both parents' shape modes: the covariance is interpolated linearly
                modes=np.concatenate([math.sqrt(1.0 - t) * a.modes, math.sqrt(t) * b.modes]),
                # each block's correlation with the shot factor shrunk the same way (keeps the norm < 1)
                mode_correlation=np.concatenate(
                    [math.sqrt(1.0 - t) * a.mode_correlation, math.sqrt(t) * b.mode_correlation]
                ),
            )
    return model.with_samples(new)
