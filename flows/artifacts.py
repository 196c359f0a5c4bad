"""Figures that show inside the Prefect UI: PNG files embedded in markdown artifacts as ``data:image/png`` URIs.

A browser will not load a ``file://`` (or ``s3://``) image from a web page, so every flow that publishes a figure
embeds it (downscaled until it is below ``MAX_IMAGE_BYTES``) and still names the file under ``reports/``. Figures
are read through ``Location``, so a report on an object store (``s3://.../reports/<run>/``) embeds the same way. A figure that
cannot be made small enough is linked instead, and the markdown says so. Artifact keys come from
``artifact_key`` (lowercase letters, digits, single dashes: what Prefect accepts). ``ProgressArtifact`` turns a
library progress callback ``(done, total)`` into a live progress artifact.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from urllib.parse import unquote

from PIL import Image

from libs_pipeline.evaluation.report import artifact_key
from libs_pipeline.spectra.location import Location, open_location, scheme_of

__all__ = ["MAX_IMAGE_BYTES", "ProgressArtifact", "artifact_key", "embed_images", "figure_markdown", "png_data_uri"]

#: Largest PNG (bytes, before base64) embedded in an artifact; larger figures are downscaled, then linked.
MAX_IMAGE_BYTES = 150_000
#: Widest embedded figure (pixels); wider ones are downscaled first (the UI shows them narrower anyway).
MAX_WIDTH_PX = 1200
MIN_WIDTH_PX = 320
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_WEB = re.compile(r"^(https?|data|ftp|mailto):", re.IGNORECASE)
_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<target>[^)\s]+)\)")


def _png_bytes(image: Image.Image, width: int) -> bytes:
    """``image`` scaled to ``width`` pixels (aspect kept), as a palette PNG (plots have few colours)."""
    if image.width > width:
        image = image.resize((width, max(1, round(image.height * width / image.width))), Image.LANCZOS)
    buf = io.BytesIO()
    image.convert("RGB").quantize(colors=256).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _figure(path: str | Path | Location) -> Location:
    """The figure file: a local path, ``file://`` URI or store URL (``s3://...``), read through ``Location``."""
    return open_location(path, check=False)


def _link(where: Location) -> str:
    """Where the UI should link a figure: its ``file://`` URI locally, its store URL otherwise."""
    return where.local_path.as_uri() if where.is_local else where.url


def small_png(path: str | Path | Location, max_bytes: int = MAX_IMAGE_BYTES) -> bytes | None:
    """The PNG at ``path`` (local or on the store) as at most ``max_bytes`` bytes: as it is when small enough,
    else downscaled (widths ``MAX_WIDTH_PX`` down to ``MIN_WIDTH_PX``); None when even the smallest is too large."""
    where = _figure(path)
    raw = where.read_bytes()
    if not raw.startswith(PNG_SIGNATURE):
        raise ValueError(f"{where.url}: not a PNG file")
    with Image.open(io.BytesIO(raw)) as image:
        image.load()
        if len(raw) <= max_bytes and image.width <= MAX_WIDTH_PX:
            return raw
        width = min(image.width, MAX_WIDTH_PX)
        while width >= MIN_WIDTH_PX:
            data = _png_bytes(image, width)
            if len(data) <= max_bytes:
                return data
            width = int(width * 0.8)
    return None


def png_data_uri(path: str | Path | Location, max_bytes: int = MAX_IMAGE_BYTES) -> str | None:
    """``data:image/png;base64,...`` of the (downscaled) PNG at ``path``; None when it cannot fit ``max_bytes``."""
    data = small_png(path, max_bytes)
    return None if data is None else "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _image_markdown(alt: str, where: Location, max_bytes: int) -> str:
    uri = png_data_uri(where, max_bytes)
    if uri is None:
        return (f"[{alt}]({_link(where)}) (not embedded: larger than {max_bytes // 1000} kB even "
                f"downscaled; file `{where.url}`)")
    return f"![{alt}]({uri})"


def figure_markdown(path: str | Path, caption: str, max_bytes: int = MAX_IMAGE_BYTES) -> str:
    """Markdown that shows the figure in the Prefect UI (embedded) and names its file (local or on the store)."""
    where = _figure(path)
    return f"{_image_markdown(caption, where, max_bytes)}\n\n*{caption}*: `{where.url}`\n"


def _figure_location(target: str, base_dir: str | Path | None) -> Location | None:
    """The file an image target names (``file://`` URI, store URL, absolute path, or relative to ``base_dir``,
    itself a local folder or a store URL); None for web and data URIs."""
    if _WEB.match(target):
        return None
    if scheme_of(target) or base_dir is None or Path(unquote(target)).is_absolute():
        return _figure(target if scheme_of(target) else unquote(target))
    return _figure(base_dir).join(*Path(unquote(target)).parts)


def embed_images(markdown: str, base_dir: str | Path | None = None, max_bytes: int = MAX_IMAGE_BYTES) -> str:
    """``markdown`` with every PNG image (``![alt](file:///...)``, ``s3://...``, an absolute or a
    ``base_dir``-relative path) replaced by its data URI; a missing file becomes a note, web images stay as
    they are."""

    def replace(match: re.Match) -> str:
        alt, target = match.group("alt"), match.group("target")
        where = _figure_location(target, base_dir)
        if where is None or not where.name.lower().endswith(".png"):
            return match.group(0)
        if not where.is_file():
            return f"*(figure {alt!r} missing: `{where.url}`)*"
        return _image_markdown(alt, where, max_bytes)

    return _IMAGE.sub(replace, markdown)


class ProgressArtifact:
    """A Prefect progress artifact (0-100 %) fed by a library callback ``(done, total)``; the API is called only
    when the progress moved by ``every_percent`` or reached 100 %. Create it inside a flow or task run."""

    def __init__(self, key: str, description: str, every_percent: float = 2.0):
        from prefect.artifacts import create_progress_artifact

        self.key = key
        self.every_percent = every_percent
        self.percent = 0.0
        self.id = create_progress_artifact(progress=0.0, key=key, description=description)

    def __call__(self, done: int, total: int) -> None:
        percent = 100.0 if total <= 0 else min(100.0, 100.0 * done / total)
        if percent - self.percent >= self.every_percent or (percent == 100.0 and self.percent < 100.0):
            self.update(percent)

    def update(self, percent: float, description: str | None = None) -> None:
        from prefect.artifacts import update_progress_artifact

        self.percent = percent
        update_progress_artifact(artifact_id=self.id, progress=percent, description=description)
