"""The files one scene leaves behind, written as rows stream out of the blender.

``<id>_cloudmask.tif``: uint8, 0 clear, 1 cloud, 2 cloud shadow (with ``--shadow``), 255 no data
(the nodata tag), the input's CRS, transform and size; a Cloud Optimized GeoTIFF (tiled
256 x 256, DEFLATE without predictor: measured on a synthetic mask and probability map, predictor
2 made both files 14-16 % larger; overviews by nearest), scene statistics as GeoTIFF tags.
``<id>_cloudprob.tif`` (optional): uint8 cloud probability in percent (0-100, 255 no data, band
scale 0.01), as Sen2Cor's ``MSK_CLDPRB``: a quarter of float32's size, exact for every
whole-percent threshold, overviews averaged (GDAL skips nodata), also a COG. ``<id>_clouds.gpkg``
(optional): cloud and shadow polygons (:mod:`cloudseg.engine.vector`). ``<id>_preview.png`` and
``<id>_summary.json``.

Rows are buffered to one tile row (256 x W) so each compressed tile is written once, whole, into
a tiled GeoTIFF: memory grows with scene width, not height. When the scene is done the writer
draws the cloud buffer if asked (:mod:`cloudseg.engine.dilate`, a band of rows at a time), builds
overviews and tags and rewrites each GeoTIFF as a COG (:mod:`cloudseg.engine.cog`), polygonizes
if asked, and draws the preview. Every file is written under a hidden temporary name beside its
final one and renamed only when the scene completes (:func:`cloudseg.atomic.atomic_path`); on
any exception the temporaries go and existing outputs stay.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.io import DatasetWriter
from rasterio.windows import Window

from cloudseg import __version__
from cloudseg.atomic import atomic_path, check_writable
from cloudseg.data import qa as qa_flags
from cloudseg.engine import vector
from cloudseg.engine.cog import BLOCK, finish_geotiff
from cloudseg.engine.dilate import dilate_file
from cloudseg.engine.preview import PREVIEW_MAX_SIDE, PreviewBuffer, preview_scale_for
from cloudseg.engine.summary import (
    CLEAR,
    CLOUD,
    MASK_CODES,
    MASK_COLOURS,
    NODATA,
    SHADOW,
    SceneStats,
    mask_codes,
)
from cloudseg.metrics import Confusion

__all__ = ["OutputPaths", "SceneWriter"]

#: Probability file values per unit probability (percent).
PROB_SCALE = 100
#: Overview resampling per output: categories must not be averaged into new values.
RESAMPLING = {"mask": Resampling.nearest, "prob": Resampling.average}
#: Profile keys that describe the source's pixels, not its grid; never carried to a mask.
_SOURCE_ONLY = ("photometric", "predictor", "interleave", "jpeg_quality", "zlevel")


@dataclass(frozen=True)
class OutputPaths:
    """Final paths of one scene's outputs in ``out_dir``."""

    mask: Path
    prob: Path
    vector: Path
    preview: Path
    summary: Path
    item: Path  # the STAC Item of the others (cloudseg.engine.stac_out)

    @classmethod
    def for_scene(cls, out_dir: str | os.PathLike[str], scene_id: str) -> OutputPaths:
        """``<out_dir>/<scene_id>_cloudmask.tif``, ``_cloudprob.tif``, ``_preview.png``, ..."""
        base = Path(out_dir)
        return cls(
            mask=base / f"{scene_id}_cloudmask.tif",
            prob=base / f"{scene_id}_cloudprob.tif",
            vector=base / f"{scene_id}_clouds.gpkg",
            preview=base / f"{scene_id}_preview.png",
            summary=base / f"{scene_id}_summary.json",
            item=base / f"{scene_id}_item.json",
        )

    def files(self, probabilities: bool, polygons: bool = False) -> tuple[Path, ...]:
        """The paths a run writes: probabilities and polygons only when asked for."""
        extra = ((self.prob,) if probabilities else ()) + ((self.vector,) if polygons else ())
        return (self.mask, *extra, self.preview, self.summary, self.item)

    def check(self, overwrite: bool, probabilities: bool, polygons: bool = False) -> None:
        """Raise :class:`~cloudseg.errors.OutputExistsError` (naming ``--overwrite``) if any
        output exists and ``overwrite`` is false. Call before any work; touches nothing."""
        for path in self.files(probabilities, polygons):
            check_writable(path, overwrite)


def output_profile(profile: Mapping[str, Any]) -> dict[str, Any]:
    """A one-band uint8 profile on the grid of source ``profile`` (copied, then updated)."""
    out = {k: v for k, v in profile.items() if k not in _SOURCE_ONLY}
    out.update(driver="GTiff", dtype="uint8", count=1, nodata=NODATA, compress="deflate")
    out.update(tiled=True, blockxsize=BLOCK, blockysize=BLOCK, bigtiff="IF_SAFER")
    return out


def _tag_value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


class SceneWriter:
    """Context manager that streams one scene's mask (and probabilities) to disk.

    ``with SceneWriter(paths, scene.profile()) as w: w.write_rows(...); w.finish(tags)``. The
    ``with`` block is the transaction: outputs get their final names only when it exits without
    an exception (calling :meth:`finish` first if the caller did not).

    Args:
        paths: where the outputs go.
        profile: the input's rasterio profile (``LandsatScene.profile()``); grid and CRS kept.
        probabilities: also write ``<id>_cloudprob.tif``.
        preview_scale: keep every k-th row and column for the preview; ``None``: the smallest k
            giving a preview of at most ``preview_size`` px a side.
        preview_size: longest side of an automatic preview (default 1,024 px).
        overwrite: replace existing outputs; otherwise any existing one is refused on entry.
        dilate: grow cloud by this many pixels before the mask is finished (0: none).
        polygons: also write ``<id>_clouds.gpkg``.
    """

    def __init__(
        self,
        paths: OutputPaths,
        profile: Mapping[str, Any],
        probabilities: bool = False,
        preview_scale: int | None = None,
        preview_size: int = PREVIEW_MAX_SIDE,
        *,
        overwrite: bool = False,
        dilate: int = 0,
        polygons: bool = False,
    ) -> None:
        self.paths, self.probabilities = paths, probabilities
        self.overwrite, self.dilate, self.polygons = overwrite, dilate, polygons
        self.polygon_counts: dict[str, int] | None = None
        self.profile = output_profile(profile)
        self.width, self.height = int(self.profile["width"]), int(self.profile["height"])
        scale = preview_scale or preview_scale_for(self.height, self.width, preview_size)
        self.preview = PreviewBuffer(self.height, self.width, scale)
        self.stats: SceneStats | None = None
        self._kinds = ("mask", "prob") if probabilities else ("mask",)
        # One tile row of each output, flushed when full: every tile is compressed once.
        self._rows = {k: np.empty((BLOCK, self.width), np.uint8) for k in self._kinds}
        self._held = self._next_row = self._valid = self._cloud = 0
        self._shadow: int | None = None
        self._threshold: float | None = None
        #: Our cloud (prediction) against USGS's (truth) on valid pixels the QA band covers.
        self.qa_confusion: Confusion | None = None
        self._tmp: dict[str, Path] = {}
        self._datasets: dict[str, DatasetWriter] = {}
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> SceneWriter:
        self.paths.check(self.overwrite, self.probabilities, self.polygons)
        with contextlib.ExitStack() as stack:
            for kind in (*self._kinds, "preview", *(("vector",) if self.polygons else ())):
                final = getattr(self.paths, kind)
                self._tmp[kind] = stack.enter_context(atomic_path(final, self.overwrite))
            for kind in self._kinds:
                self._datasets[kind] = rasterio.open(self._tmp[kind], "w", **self.profile)
                stack.callback(self._datasets[kind].close)  # closed before temps are removed
            self._stack = stack.pop_all()
        return self

    def write_rows(
        self,
        row0: int,
        prob_rows: np.ndarray,
        valid_rows: np.ndarray,
        threshold: float,
        bands: np.ndarray | None = None,
        qa: np.ndarray | None = None,
    ) -> None:
        """Append the next rows, top to bottom, in chunks of any height.

        Args:
            row0: scene row of the first row; must follow the previous chunk.
            prob_rows: ``(K, n, W)`` float32 probabilities in [0, 1]: cloud, and with ``K = 2``
                cloud shadow (or ``(n, W)``: cloud alone).
            valid_rows: ``(n, W)`` bool, false where the input has no data.
            threshold: cloud where ``prob > threshold``; one threshold per scene.
            bands: optional ``(4, n, W)`` raw input rows (red, green, blue, nir) for the preview.
            qa: optional ``(n, W)`` uint8 :mod:`cloudseg.data.qa` flags of the scene's quality
                band, for USGS's cloud cover and the agreement with it.
        """
        if self._stack is None or self.stats is not None:
            raise RuntimeError("SceneWriter.write_rows needs an open, unfinished writer")
        planes = prob_rows[None] if prob_rows.ndim == 2 else prob_rows
        prob_rows, shadow_rows = planes[0], (planes[1] if len(planes) > 1 else None)
        n = prob_rows.shape[0]
        if row0 != self._next_row:
            raise ValueError(
                f"rows must arrive in order: expected row {self._next_row}, got {row0}"
            )
        if prob_rows.shape != (n, self.width) or valid_rows.shape != prob_rows.shape:
            raise ValueError(
                f"prob rows {prob_rows.shape} and valid rows {valid_rows.shape} must both be "
                f"(n, {self.width})"
            )
        if row0 + n > self.height:
            raise ValueError(f"rows {row0}..{row0 + n} run past the scene's {self.height} rows")
        if self._threshold is None:
            self._threshold = float(threshold)
        elif threshold != self._threshold:
            raise ValueError(f"threshold changed from {self._threshold} to {threshold} mid-scene")
        mask, cloud, shade = mask_codes(prob_rows, shadow_rows, valid_rows, threshold)
        if shade is not None:
            self._shadow = (self._shadow or 0) + int(np.count_nonzero(shade & valid_rows))
        self._valid += int(np.count_nonzero(valid_rows))
        self._cloud += int(np.count_nonzero(cloud & valid_rows))
        if qa is not None:
            self.qa_confusion = self.qa_confusion or Confusion()
            seen = valid_rows & (qa & qa_flags.FILL == 0)
            self.qa_confusion.add(cloud, qa_flags.usgs_cloud(qa), seen)
        out = {"mask": mask}
        if self.probabilities:
            # A probability the model could not give (NaN) is written as no data, never cast.
            finite = np.isfinite(prob_rows)
            scaled = np.rint(np.clip(np.where(finite, prob_rows, 0.0), 0.0, 1.0) * PROB_SCALE)
            percent = np.where(finite, scaled, NODATA).astype(np.uint8)
            out["prob"] = np.where(valid_rows, percent, np.uint8(NODATA))
        self.preview.add(row0, mask, bands)
        done = 0
        while done < n:
            take = min(BLOCK - self._held, n - done)
            for kind, rows in out.items():
                self._rows[kind][self._held : self._held + take] = rows[done : done + take]
            self._held += take
            done += take
            if self._held == BLOCK or self._next_row + done == self.height:
                self._flush(self._next_row + done - self._held)
        self._next_row += n

    def _flush(self, row0: int) -> None:
        window = Window(0, row0, self.width, self._held)
        for kind in self._kinds:
            self._datasets[kind].write(self._rows[kind][: self._held], 1, window=window)
        self._held = 0

    def finish(self, tags: Mapping[str, object] | None = None) -> SceneStats:
        """Finish the files under their temporary names: the cloud buffer, overviews, tags and
        the COG rewrite, the polygons and the preview.

        Args:
            tags: extra GeoTIFF tags (``MODEL``, ``MODEL_VERSION``, ...); non-strings as JSON.

        Returns:
            The scene's counts (also kept as :attr:`stats`).
        """
        if self.stats is not None:
            return self.stats
        if self._stack is None or self._next_row != self.height:
            raise RuntimeError(f"scene incomplete: {self._next_row} of {self.height} rows written")
        for ds in self._datasets.values():
            ds.close()
        cloud, shadow = self._cloud, self._shadow
        if self.dilate:
            cloud, buffered_shadow = self._buffer_clouds()
            shadow = None if shadow is None else buffered_shadow
        stats = SceneStats(
            self.width, self.height, self._valid, cloud, self._threshold, shadow,
            self.qa_confusion,
        )  # fmt: skip
        common = {k.upper(): _tag_value(v) for k, v in (tags or {}).items()}
        common |= stats.tags() | {"SOFTWARE": f"cloudseg {__version__}"}
        if self.dilate:
            common["CLOUD_BUFFER_PIXELS"] = str(self.dilate)
        shadow = ", 2 cloud shadow" if self._shadow is not None else ""
        codes = (CLEAR, CLOUD, *((SHADOW,) if self._shadow is not None else ()), NODATA)
        classes = {c: (MASK_CODES[c], MASK_COLOURS[c]) for c in codes}
        finish_geotiff(self._tmp["mask"], RESAMPLING["mask"], common,
                       f"cloud mask: 0 clear, 1 cloud{shadow}, 255 no data",
                       classes=classes)  # fmt: skip
        if self.probabilities:
            finish_geotiff(self._tmp["prob"], RESAMPLING["prob"], common,
                           "cloud probability (%), 255 no data", 1.0 / PROB_SCALE)  # fmt: skip
        if self.polygons:
            self.polygon_counts = vector.write_polygons(self._tmp["mask"], self._tmp["vector"])
        self.preview.render().save(self._tmp["preview"], format="PNG")
        self.stats = stats
        return stats

    def _buffer_clouds(self) -> tuple[int, int]:
        """Grow cloud by :attr:`dilate` pixels in the finished mask; the new cloud and shadow
        counts."""
        src = self._tmp["mask"]
        grown = src.with_name(src.name + ".buffered")
        try:
            # The preview's mask rows are replaced by the buffered ones (bands stay).
            count = dilate_file(src, grown, self.dilate, self.preview.add)
            os.replace(grown, src)
        finally:
            grown.unlink(missing_ok=True)
        return count

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        stack = self._stack
        if stack is None:
            return
        try:
            if exc is None:
                self.finish()
        except BaseException as err:
            self._stack = None
            stack.__exit__(type(err), err, err.__traceback__)  # removes every temporary
            raise
        self._stack = None
        if exc is None:
            stack.close()  # renames every temporary to its final name
        else:
            stack.__exit__(exc_type, exc, tb)  # closes datasets, removes temporaries
