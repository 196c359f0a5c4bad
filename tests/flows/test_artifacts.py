"""flows/artifacts.py: figures embedded as PNG data URIs (downscaled under the size cap, else linked), one key slug."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from flows.artifacts import MAX_IMAGE_BYTES, PNG_SIGNATURE, artifact_key, embed_images, figure_markdown, png_data_uri

DATA_URI = re.compile(r"!\[(?P<alt>[^\]]*)\]\(data:image/png;base64,(?P<b64>[A-Za-z0-9+/=]+)\)")


def write_png(path, width: int, height: int, noise: bool = False):
    rng = np.random.default_rng(0)
    pixels = (rng.integers(0, 256, (height, width, 3)) if noise
              else np.full((height, width, 3), 255)).astype(np.uint8)
    pixels[height // 3: height // 2, :, :] = (31, 119, 180)  # a plot-like band
    Image.fromarray(pixels).save(path, format="PNG")
    return path


def decoded(markdown: str) -> list[tuple[str, bytes]]:
    return [(m["alt"], base64.b64decode(m["b64"])) for m in DATA_URI.finditer(markdown)]


def test_figure_markdown_embeds_a_png_data_uri_and_names_the_file(tmp_path):
    path = write_png(tmp_path / "parity.png", 600, 400)
    md = figure_markdown(path, "parity plot")
    ((alt, png),) = decoded(md)
    assert alt == "parity plot"
    assert png.startswith(PNG_SIGNATURE) and png == path.read_bytes()  # small enough: embedded as it is
    assert str(path.resolve()) in md and "file://" not in md


def test_large_figures_are_downscaled_below_the_cap(tmp_path):
    path = write_png(tmp_path / "big.png", 1800, 1200)
    assert path.stat().st_size < MAX_IMAGE_BYTES  # small file, but wider than the UI needs
    uri = png_data_uri(path)
    png = base64.b64decode(uri.removeprefix("data:image/png;base64,"))
    with Image.open(io.BytesIO(png)) as image:
        assert image.width == 1200 and image.height == 800
    noisy = write_png(tmp_path / "noisy.png", 900, 600, noise=True)
    assert noisy.stat().st_size > MAX_IMAGE_BYTES
    png = base64.b64decode(png_data_uri(noisy).removeprefix("data:image/png;base64,"))
    assert png.startswith(PNG_SIGNATURE) and len(png) <= MAX_IMAGE_BYTES
    with Image.open(io.BytesIO(png)) as image:
        assert 320 <= image.width < 900


def test_a_figure_that_cannot_fit_is_linked_and_says_so(tmp_path):
    noisy = write_png(tmp_path / "noisy.png", 900, 600, noise=True)
    assert png_data_uri(noisy, max_bytes=1000) is None
    md = figure_markdown(noisy, "noise", max_bytes=1000)
    assert not decoded(md)
    assert f"[noise]({noisy.resolve().as_uri()}) (not embedded: larger than 1 kB even downscaled" in md


def test_embed_images_replaces_local_pngs_only(tmp_path):
    parity = write_png(tmp_path / "parity.png", 300, 200)
    write_png(tmp_path / "residuals.png", 300, 200)
    md = (f"# Report\n\n![parity]({parity.resolve().as_uri()})\n\n![residuals](residuals.png)\n\n"
          "![web](https://example.org/x.png)\n\n![gone](missing.png)\n")
    out = embed_images(md, base_dir=tmp_path)
    assert [alt for alt, png in decoded(out) if png.startswith(PNG_SIGNATURE)] == ["parity", "residuals"]
    assert "![web](https://example.org/x.png)" in out
    assert f"*(figure 'gone' missing: `{tmp_path / 'missing.png'}`)*" in out
    assert "file://" not in out and out.startswith("# Report\n")


def test_artifact_key_is_a_prefect_key():
    assert artifact_key("training-summary", "Virtual_Aluminium 20260101T0000Z") == (
        "training-summary-virtual-aluminium-20260101t0000z")
    assert artifact_key("ingest-validation-report", "oreas_na.train") == "ingest-validation-report-oreas-na-train"
    with pytest.raises(ValueError, match="empty"):
        artifact_key("__", "..")
