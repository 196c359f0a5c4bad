"""Source bytes -> text as instrument software writes it: gzip, UTF-8 (with or without BOM), UTF-16, Latin-1.

Policy: gzip is decompressed (the limit applies to the decompressed bytes; the archive keeps the original
bytes); a BOM decides the encoding; UTF-16 without BOM is recognised by its NUL pattern; other bytes are
UTF-8 if valid, else Latin-1. What was detected is returned so that the version manifest records it.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from libs_pipeline.spectra.findings import FileRejected, Finding

GZIP_MAGIC = b"\x1f\x8b"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig", "UTF-8 with BOM"),
    (b"\xff\xfe", "utf-16-le", "UTF-16 little-endian (BOM)"),
    (b"\xfe\xff", "utf-16-be", "UTF-16 big-endian (BOM)"),
)


@dataclass(frozen=True)
class DecodedText:
    """Text of a source file plus how it was stored (recorded in the version manifest)."""

    text: str
    encoding: str
    compression: str | None = None
    decompressed_bytes: int | None = None


def gunzip_limited(data: bytes, file: str, max_bytes: int) -> bytes:
    """Decompress gzip bytes, refusing output beyond ``max_bytes`` (a small archive may expand to gigabytes)."""
    max_bytes = int(max_bytes)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise FileRejected([Finding(file, "bad_compression", f"gzip data is corrupt ({exc})")]) from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise FileRejected([Finding(
            file, "file_too_large",
            f"gzip file expands to more than {max_bytes / 1048576:.3f} MB (the size limit applies to the decompressed bytes)",
        )])
    if not inflater.eof:
        raise FileRejected([Finding(file, "bad_compression", "gzip data is truncated (the file ends mid-stream)")])
    return out


def _utf16_without_bom(data: bytes) -> str | None:
    """'utf-16-le'/'utf-16-be' when every other byte is NUL (ASCII text written as UTF-16 without a BOM)."""
    sample = data[:4096]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


def decode_source(data: bytes, file: str, max_bytes: int | None = None) -> DecodedText:
    """Bytes -> DecodedText (see module docstring); binary data is rejected naming what was found."""
    compression = None
    decompressed = None
    if data[:2] == GZIP_MAGIC:
        data = gunzip_limited(data, file, max_bytes if max_bytes is not None else 1 << 40)
        compression, decompressed = "gzip", len(data)
    if not data.strip():
        raise FileRejected([Finding(file, "empty_file", "file is empty (no bytes other than whitespace)")])
    encoding = label = None
    for bom, codec, name in _BOMS:
        if data.startswith(bom):
            encoding, label = codec, name
            break
    if encoding is None:
        encoding = _utf16_without_bom(data)
        label = f"{encoding.upper()} without BOM" if encoding else None
    if encoding is not None:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise FileRejected([Finding(file, "text_encoding", f"looks like {label} but byte {exc.start} is not valid {label}")]) from None
    else:
        nul = data.find(b"\x00")
        if nul >= 0:
            line = data.count(b"\n", 0, nul) + 1
            raise FileRejected([Finding(
                file, "binary_file",
                f"NUL byte at offset {nul}: not text in UTF-8, UTF-16 or Latin-1, and not gzip (an unsupported binary format?)",
                line=line,
            )])
        try:
            text, label = data.decode("utf-8"), "UTF-8"
        except UnicodeDecodeError:
            text, label = data.decode("latin-1"), "Latin-1 (not valid UTF-8)"
    text = text.lstrip("\ufeff")
    bad = _CONTROL.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        code = f"U+{ord(bad.group()):04X}"
        raise FileRejected([Finding(
            file, "binary_file", f"control character {code} at character {bad.start()} (decoded as {label}): not a text file",
            line=line,
        )])
    return DecodedText(text, label, compression, decompressed)
