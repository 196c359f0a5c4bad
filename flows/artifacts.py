"""Figures that show inside the Prefect UI: PNG files embedded in markdown artifacts as ``data:image/png`` URIs.

A browser will not load a ``file://`` image from a web page, so every flow that publishes a figure embeds it
(downscaled until it is below ``MAX_IMAGE_BYTES``) and still names the file under ``reports/``. A figure that
cannot be made small enough is linked instead, and the markdown says so. Artifact keys come from
``artifact_key`` (lowercase letters, digits, single dashes: what Prefect accepts). ``ProgressArtifact`` turns a
library progress callback ``(done, total)`` into a live progress artifact.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from PIL import Image

from libs_pipeline.evaluation.report import artifact_key

__all__ = ["MAX_IMAGE_BYTES", "ProgressArtifact", "artifact_key", "embed_images", "figure_markdown", "png_data_uri"]

#: Largest PNG (bytes, before base64) embedded in an artifact; larger figures are downscaled, then linked.
MAX_IMAGE_BYTES = 150_000
#: Widest embedded figure (pixels); wider ones are downscaled first (the UI shows them narrower anyway).
MAX_WIDTH_PX = 1200
MIN_WIDTH_PX = 320
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<target>[^)\s]+)\)")


def _png_bytes(image: Image.Image, width: int) -> bytes:
    """``image`` scaled to ``width`` pixels (aspect kept), as a palette PNG (plots have few colours)."""
    if image.width > width:
        image = image.resize((width, max(1, round(image.height * width / image.width))), Image.LANCZOS)
    buf = io.BytesIO()
    image.convert("RGB").quantize(colors=256).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def small_png(path: str | Path, max_bytes: int = MAX_IMAGE_BYTES) -> bytes | None:
    """The PNG at ``path`` as at most ``max_bytes`` bytes: as it is when small enough, else downscaled (widths
    ``MAX_WIDTH_PX`` down to ``MIN_WIDTH_PX``); None when even the smallest is too large."""
    raw = Path(path).read_bytes()
    if not raw.startswith(PNG_SIGNATURE):
        raise ValueError(f"{path}: not a PNG file")
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


def png_data_uri(path: str | Path, max_bytes: int = MAX_IMAGE_BYTES) -> str | None:
    """``data:image/png;base64,...`` of the (downscaled) PNG at ``path``; None when it cannot fit ``max_bytes``."""
    data = small_png(path, max_bytes)
    return None if data is None else "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _image_markdown(alt: str, path: Path, max_bytes: int) -> str:
    uri = png_data_uri(path, max_bytes)
    if uri is None:
        return (f"[{alt}]({path.resolve().as_uri()}) (not embedded: larger than {max_bytes // 1000} kB even "
                f"downscaled; file `{path}`)")
    return f"![{alt}]({uri})"


def figure_markdown(path: str | Path, caption: str, max_bytes: int = MAX_IMAGE_BYTES) -> str:
    """Markdown that shows the figure in the Prefect UI (embedded) and names its file."""
    path = Path(path)
    return f"{_image_markdown(caption, path, max_bytes)}\n\n*{caption}*: `{path.resolve()}`\n"


def _local_path(target: str, base_dir: Path | None) -> Path | None:
    """The file an image target names (``file://`` URI, absolute path, or relative to ``base_dir``); None for
    web and data URIs."""
    if target.startswith("file://"):
        return Path(unquote(urlparse(target).path))
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, data:, ...
        return None
    path = Path(unquote(target))
    return path if path.is_absolute() or base_dir is None else base_dir / path


def embed_images(markdown: str, base_dir: str | Path | None = None, max_bytes: int = MAX_IMAGE_BYTES) -> str:
    """``markdown`` with every local PNG image (``![alt](file:///...)``, an absolute or a ``base_dir``-relative
    path) replaced by its data URI; a missing file becomes a note, web images stay as they are."""
    base = Path(base_dir) if base_dir is not None else None

    def replace(match: re.Match) -> str:
        alt, target = match.group("alt"), match.group("target")
        path = _local_path(target, base)
        if path is None or path.suffix.lower() != ".png":
            return match.group(0)
        if not path.is_file():
            return f"*(figure {alt!r} missing: `{path}`)*"
        return _image_markdown(alt, path, max_bytes)

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
