"""Files written the way instrument software writes them (test fixtures): locales, encodings, gzip, layouts."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from libs_pipeline.testing import toy_campaign


def toy_shots(n_shots: int = 4, n_channels: int = 64, seed: int = 0, sample: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(wavelength nm, intensity (shots, channels)) of one toy sample, rounded as files store them."""
    ds = toy_campaign(n_samples=2, n_shots=n_shots, n_channels=n_channels, seed=seed)
    sid = list(dict.fromkeys(ds["sample_id"].values.tolist()))[sample]
    sel = ds["sample_id"].values == sid
    return np.round(ds["wavelength"].values, 4), np.round(ds["intensity"].values[sel].astype(np.float64), 2)


def shot_columns_text(wl: np.ndarray, intensity: np.ndarray, delimiter: str = ",", decimal: str = ".",
                      header: bool = True) -> str:
    """Format (a) text: optional header, then wavelength + one column per shot, in the given locale."""
    def cell(v: float) -> str:
        return f"{v:.4f}".replace(".", decimal)

    lines = [delimiter.join(["Wavelength (nm)", *[f"Shot {i + 1}" for i in range(intensity.shape[0])]])] if header else []
    for j, w in enumerate(wl):
        lines.append(delimiter.join([cell(w), *[cell(v) for v in intensity[:, j]]]))
    return "\r\n".join(lines) + "\r\n"


def spectrum_rows_text(wl: np.ndarray, intensity: np.ndarray, samples: list[str], delimiter: str = ",") -> str:
    """Format (b) text: header 'Sample,Shot,<wavelengths>', one spectrum per row."""
    lines = [delimiter.join(["Sample", "Shot", *[f"{w:.4f}" for w in wl]])]
    for i, (sid, row) in enumerate(zip(samples, intensity)):
        lines.append(delimiter.join([sid, str(i), *[f"{v:.4f}" for v in row]]))
    return "\n".join(lines) + "\n"


def write(path: Path, text: str, encoding: str = "utf-8", compress: bool = False) -> Path:
    data = text.encode(encoding)
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path
