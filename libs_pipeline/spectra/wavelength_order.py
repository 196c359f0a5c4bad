"""Channel order as spectrometers write it: descending files are reversed, overlapping segments are merged.

Multi-spectrometer instruments write one segment per spectrometer; consecutive segments may overlap by a few
channels at the join (the wavelength steps back). Merge policies (``IngestOptions.overlap_policy``):

- ``average``: in the overlap, keep the later segment's channels and average their values with the earlier
  segment linearly interpolated at those wavelengths; the earlier segment's overlap channels are dropped.
- ``keep_first``: keep the earlier segment's channels, drop the later segment's channels in the overlap.
- ``keep_second``: keep the later segment's channels, drop the earlier segment's channels in the overlap.
- ``reject``: a file with overlapping segments is rejected.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from libs_pipeline.spectra.findings import FileRejected, Finding, number
from libs_pipeline.spectra.readers import SpectraBlock

MIN_OVERLAP_CHANNELS = 2
"""A step back counts as a segment overlap only when both segments have at least this many channels in it
(a single swapped pair of lines is an error, not an overlap)."""


def _take(block: SpectraBlock, index: np.ndarray, intensity: np.ndarray | None = None) -> SpectraBlock:
    """The block restricted/reordered to original channels ``index`` (positions stay traceable)."""
    original = block.channel_index if block.channel_index is not None else np.arange(block.wavelength.size)
    return replace(
        block,
        intensity=np.ascontiguousarray(block.intensity[:, index] if intensity is None else intensity),
        wavelength=block.wavelength[index].copy(),
        channel_index=original[index],
    )


def _segments(wl: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of the increasing runs of ``wl`` (a new run starts where the wavelength steps back)."""
    breaks = np.flatnonzero(np.diff(wl) < 0) + 1
    edges = [0, *breaks.tolist(), wl.size]
    return [(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


def is_descending(wl: np.ndarray) -> bool:
    """True when the file runs from long to short wavelengths (most steps go down; segments may overlap)."""
    if wl.size < 2 or not np.all(np.isfinite(wl)):
        return False
    return bool(wl[0] > wl[-1] and np.mean(np.diff(wl) < 0) > 0.5)


def merge_segments(block: SpectraBlock, file: str, policy: str) -> tuple[SpectraBlock, dict | None]:
    """Merge increasing segments that overlap at their joins (policy in the module docstring); None: no overlap."""
    wl = block.wavelength
    segments = _segments(wl)
    if len(segments) == 1:
        return block, None
    for (a0, a1), (b0, b1) in zip(segments, segments[1:]):
        # an overlap only: the later segment starts inside the earlier one and ends beyond it
        n_first = int(np.count_nonzero(wl[a0:a1] >= wl[b0]))
        n_second = int(np.count_nonzero(wl[b0:b1] <= wl[a1 - 1]))
        if not (wl[a0] < wl[b0] and wl[b1 - 1] > wl[a1 - 1]
                and min(n_first, n_second) >= MIN_OVERLAP_CHANNELS):
            line, column = block.locate(None, b0)
            raise FileRejected([Finding(
                file, "non_monotonic_wavelength",
                f"wavelength steps back from {number(wl[b0 - 1])} to {number(wl[b0])} nm at channel {b0} and this is "
                "not an overlap of two spectrometer segments (wavelengths must increase; segments that overlap by at "
                f"least {MIN_OVERLAP_CHANNELS} channels on both sides are merged)",
                line=line, column=column, coordinate=f"channel {b0}",
            )])
    if policy == "reject":
        line, column = block.locate(None, segments[1][0])
        raise FileRejected([Finding(
            file, "overlapping_segments",
            f"{len(segments)} spectrometer segments overlap at their joins (overlap_policy is 'reject')",
            line=line, column=column,
        )])
    intensity = block.intensity.astype(np.float64)
    keep = np.ones(wl.size, dtype=bool)
    values = intensity.copy()
    joins = []
    for (a0, a1), (b0, b1) in zip(segments, segments[1:]):
        lo, hi = wl[b0], wl[a1 - 1]
        first_overlap = np.flatnonzero(wl[a0:a1] >= lo)
        second_overlap = np.flatnonzero(wl[b0:b1] <= hi)
        idx_a = a0 + first_overlap
        idx_b = b0 + second_overlap
        joins.append({"from_nm": float(lo), "to_nm": float(hi), "channels_first": int(idx_a.size),
                      "channels_second": int(idx_b.size)})
        if policy == "keep_first":
            keep[idx_b] = False
        else:
            keep[idx_a] = False
            if policy == "average":
                for i in range(values.shape[0]):
                    other = np.interp(wl[idx_b], wl[a0:a1], intensity[i, a0:a1])
                    values[i, idx_b] = 0.5 * (intensity[i, idx_b] + other)
    index = np.flatnonzero(keep)
    merged = _take(block, index, values[:, index].astype(np.float32))
    return merged, {"policy": policy, "segments": len(segments), "joins": joins}


def normalise_channel_order(block: SpectraBlock, file: str, overlap_policy: str) -> tuple[SpectraBlock, dict]:
    """Descending -> ascending, then overlapping segments merged; returns the block and what was done."""
    done: dict = {}
    if is_descending(block.wavelength):
        block = _take(block, np.arange(block.wavelength.size)[::-1])
        done["reordered"] = "descending wavelengths reversed to ascending"
    if block.wavelength.size >= 2 and np.all(np.isfinite(block.wavelength)) and np.any(np.diff(block.wavelength) < 0):
        block, merge = merge_segments(block, file, overlap_policy)
        if merge:
            done["overlapping_segments"] = merge
    return block, done
