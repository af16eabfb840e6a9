"""Run-length encoding of binary masks, in the Kaggle convention.

Kaggle's segmentation competitions (and the 38-Cloud / "Understanding Clouds" notebooks) flatten a
mask in column-major (Fortran) order, number pixels from 1, and write ``"start length"`` pairs
separated by spaces; an empty mask is the empty string. ``order="C"`` gives the row-major variant.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from cloudseg.errors import DataError

Order = Literal["F", "C"]

#: Column names of a Kaggle submission / label CSV.
CSV_HEADER = ("Image_Label", "EncodedPixels")


def encode(mask: np.ndarray, order: Order = "F") -> str:
    """Encode a 2-D mask as ``"start length ..."`` (1-based starts).

    Args:
        mask: ``(H, W)`` array; non-zero pixels are foreground.
        order: ``"F"`` column-major (Kaggle), ``"C"`` row-major.

    Returns:
        The run-length string; ``""`` for an empty mask.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    flat = np.asarray(mask, dtype=bool).ravel(order=order)
    # Pad with a background pixel at each end so every run has a rising and a falling edge.
    edges = np.flatnonzero(np.diff(np.concatenate(([False], flat, [False])).astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    runs = np.empty(2 * len(starts), dtype=np.int64)
    runs[0::2] = starts + 1
    runs[1::2] = ends - starts
    return " ".join(map(str, runs.tolist()))


def decode(rle: str, shape: tuple[int, int], order: Order = "F") -> np.ndarray:
    """Decode a run-length string into a ``shape`` bool mask.

    Raises:
        DataError: when the string is malformed or its runs fall outside the mask.
    """
    height, width = shape
    flat = np.zeros(height * width, dtype=bool)
    tokens = rle.split()
    if len(tokens) % 2:
        raise DataError(f"run-length string has an odd number of values ({len(tokens)})")
    try:
        runs = np.asarray(tokens, dtype=np.int64).reshape(-1, 2)
    except ValueError as exc:
        raise DataError(f"run-length string holds a non-integer: {exc}") from None
    starts, lengths = runs[:, 0] - 1, runs[:, 1]
    if len(runs) and (
        starts.min() < 0 or lengths.min() < 1 or (starts + lengths).max() > flat.size
    ):
        raise DataError(f"run-length string does not fit a mask of shape {shape}")
    for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
        flat[start : start + length] = True
    return flat.reshape(shape, order=order)


def write_csv(
    path: str | os.PathLike[str], rows: Iterable[tuple[str, np.ndarray]], order: Order = "F"
) -> None:
    """Write ``(image_label, mask)`` rows as a ``Image_Label,EncodedPixels`` CSV."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_HEADER)
        for label, mask in rows:
            writer.writerow((label, encode(mask, order)))


def read_csv(path: str | os.PathLike[str]) -> Iterator[tuple[str, str]]:
    """Yield ``(image_label, rle)`` pairs of a ``Image_Label,EncodedPixels`` CSV.

    Decode each with :func:`decode` and the image's shape, which the CSV does not carry.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != CSV_HEADER:
            raise DataError(f"{path}: expected header {','.join(CSV_HEADER)}, got {header}")
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 2:
                raise DataError(f"{path}:{lineno}: expected 2 columns, got {len(row)}")
            yield row[0], row[1]
