"""cloudseg from Python: mask an array or an ``xarray.DataArray``, or a list of scenes.

Three functions, re-exported by `cloudseg`:

* ``predict`` masks what the caller holds in memory (numpy, or xarray from rioxarray, odc-stac
  or stackstac) and returns the same kind of object, on the same grid;
* ``mask_scenes`` does what ``cloudseg-run`` does (the command is a thin layer over it);
* ``read_scene`` reads a scene ``cloudseg-run`` takes into an ``xarray.DataArray`` of the values
  a model reads, for ``predict``.

``predict`` runs the engine itself, not a copy of it: the scene is tiled, normalised as the
model's card says, run on the provider and precision ``cloudseg-run`` would choose (the fastest
proven path on a CPU), blended and thresholded by the same code, so an array gives the mask the
command writes for the file it came from, pixel for pixel. The array is read window by window
(a dask-backed one is computed a window at a time), so besides the caller's input and the
returned mask (1 byte a pixel; probabilities only if asked) nothing scene-sized is made.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cloudseg.bands import BANDS
from cloudseg.errors import CloudsegError

if TYPE_CHECKING:  # xarray is the [xarray] extra: imported only when a DataArray is given
    import xarray

    from cloudseg.engine.report import RunOutcome

__all__ = ["BAND_NAMES", "mask_scenes", "predict", "read_scene"]

#: Names a ``band`` coordinate may give each model band (lower case): cloudseg's own, Landsat 8
#: OLI's band numbers (Level-1 and Level-2 asset names) and the STAC common names USGS's and
#: Planetary Computer's Landsat collections use (``nir08``).
BAND_NAMES = {
    "red": ("red", "b4", "sr_b4"),
    "green": ("green", "b3", "sr_b3"),
    "blue": ("blue", "b2", "sr_b2"),
    "nir": ("nir", "nir08", "b5", "sr_b5"),
}
#: The attribute ``read_scene`` sets and ``predict`` reads: what the values are.
VALUES_ATTR = "cloudseg_values"


def predict(
    data: np.ndarray | xarray.DataArray,
    model: str | os.PathLike[str] | None = None,
    *,
    values: str | None = None,
    provider: str = "auto",
    precision: str = "auto",
    probabilities: bool = False,
    shadow: bool = False,
    threshold: float | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    batch: int | None = None,
    threads: int | None = None,
    device: int | None = None,
    nodata: float | None = None,
) -> Any:
    """Mask clouds in an array: ``(4, H, W)`` numpy in band order, or an ``xarray.DataArray``.

    Args:
        data: red, green, blue, nir as a ``(4, H, W)`` array; or a DataArray with a ``band``
            dimension whose labels (or, from rioxarray's ``open_rasterio``, band descriptions)
            name the bands (``red``/``B4``/``SR_B4``, ... see `BAND_NAMES`; other bands are
            ignored) and two spatial dimensions (rioxarray's
            CRS and transform are kept); size-1 extra dimensions (``time``) are dropped. Dask-
            backed arrays are read a window at a time.
        model: a name (``ukis-l1c``, ``r34``, ... ``cloudseg-info --models``), an ONNX file or a
            run folder, as ``cloudseg-run --model``; None: the default ``cloudseg-run`` picks.
        values: what ``data`` holds: ``toa_reflectance``, ``surface_reflectance`` or ``dn``.
            Default: the DataArray's ``cloudseg_values`` attribute
            ([`read_scene`][cloudseg.read_scene] sets it), else what the model reads. A model
            that reads other values is refused.
        provider: ``auto`` (the fastest that starts here), ``cpu``, ``openvino``, ``cuda``,
            ``tensorrt`` or ``torch``, as ``cloudseg-run --provider``.
        precision: ``auto`` (on a CPU, the fastest path whose accuracy is proven here, int8
            variants included), ``f32``, ``bf16`` or ``f16``, as ``--precision``.
        threshold: cloud where the probability is above it; default: the model card's.
        tile: tile size in pixels; default: the tile plan's choice for this array.
        overlap: tile overlap in pixels; default: the card's for the tile.
        batch: tiles per inference call; default: 1 on CPUs, 4 on GPUs.
        threads: inference threads; default: every core.
        device: GPU index, for the GPU providers.
        probabilities: also return the blended probabilities.
        shadow: the cloud-shadow class too (models that have one).
        nodata: a value marking no data where every band holds it (besides NaN, and 0 in every
            band); a DataArray's ``nodata`` / ``_FillValue`` is used when not given.

    Returns:
        The mask: ``(H, W)`` uint8 codes 0 clear, 1 cloud, 2 cloud shadow, 255 no data, as the
        same kind of object as ``data`` (a DataArray keeps its coordinates, CRS and transform).
        With ``probabilities``, ``(mask, probs)``: ``probs`` is ``(K, H, W)`` float32, cloud
        and (with ``shadow``) cloud shadow, NaN where no data.

    Raises:
        CloudsegError: the array is not four named bands, the values are not what the model
            reads, or the model or provider cannot be had (one line, in the user's words).

    Examples:
        A real Landsat 8 tile (L8 Biome, ``../shared/data``) read as TOA reflectance:

        >>> import cloudseg
        >>> toa = cloudseg.read_scene(
        ...     "../shared/data/biome-l8/LC08_L1TP_110010_20160101_20170101_01_T1")
        >>> mask = cloudseg.predict(toa, model="ukis-l1c")
        >>> print(mask.dims, mask.rio.crs, f"cloud {float((mask == 1).mean()):.1%}")
        ('y', 'x') EPSG:32633 cloud 57.3%

        A plain numpy array in band order; NaN is no data:

        >>> import numpy as np
        >>> arr = toa.values.copy()
        >>> arr[:, :, -10:] = np.nan
        >>> codes, probs = cloudseg.predict(arr, model="ukis-l1c", probabilities=True)
        >>> type(codes).__name__, codes.shape, int(codes[0, -1]), probs.shape
        ('ndarray', (256, 256), 255, (1, 256, 256))
    """
    from cloudseg.engine.config import RunConfig

    config = RunConfig(
        model=model, provider=provider, precision=precision, shadow=shadow,
        threshold=threshold, tile=tile, overlap=overlap, batch=batch, threads=threads,
        device=device, progress=False,
    )  # fmt: skip
    if not _is_dataarray(data):
        scene = _array_scene(np.asarray(data), _values_for(values, data, config), nodata)
        codes, probs = _mask_array_scene(scene, config, probabilities)
        return (codes, probs) if probabilities else codes
    dims = _spatial_dims(data)
    scene = _scene_of_dataarray(data, dims, values, nodata, config)
    codes, probs = _mask_array_scene(scene, config, probabilities)
    return _as_dataarrays(data, dims, scene, codes, probs)


def mask_scenes(
    scenes: Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    *,
    model: str | os.PathLike[str] | None = None,
    **options: Any,
) -> RunOutcome:
    """What ``cloudseg-run SCENES --out OUT`` does: mask every scene, write masks, previews,
    summaries and the run report, and return the run's outcome.

    Args:
        scenes: scene folders, GeoTIFFs, STAC items, COG URLs or ``@manifest`` files, as the
            command takes them.
        out: the folder for every output (default: a ``cloudseg`` folder beside each scene).
        model: as ``--model``.
        **options: any other ``cloudseg-run`` option by its Python name (``provider``,
            ``probabilities``, ``shadow``, ``keep_going``, ``overwrite``, ``ray``, ...): the
            fields of `cloudseg.engine.config.RunConfig`. ``progress`` is off unless
            asked.

    Returns:
        `cloudseg.engine.report.RunOutcome`: ``summaries`` (one dict per scene masked,
        as its ``_summary.json``) and ``report`` (every scene's status, the failures with
        their reasons, and the report files' folder).

    Raises:
        CloudsegError: bad input or an output that exists (without ``overwrite=True``), in
            one line; with ``keep_going=True`` a failed scene is reported instead.
        TypeError: an option ``cloudseg-run`` does not have.

    Examples:
        >>> import tempfile, cloudseg
        >>> outcome = cloudseg.mask_scenes(
        ...     ["../shared/data/biome-l8/LC08_L1TP_101001_20160101_20170101_01_T1"],
        ...     out=tempfile.mkdtemp(), model="ukis-l1c")
        >>> [(s["scene_id"], round(s["cloud_cover"])) for s in outcome.summaries]
        [('LC08_L1TP_101001_20160101_20170101_01_T1', 100)]
    """
    from cloudseg.engine.config import RunConfig
    from cloudseg.engine.run import run

    known = {f.name for f in fields(RunConfig)} - {"model", "out"}
    if unknown := sorted(set(options) - known):
        raise TypeError(f"mask_scenes() has no option {', '.join(unknown)}; it takes "
                        f"{', '.join(sorted(known))}")  # fmt: skip
    options.setdefault("progress", False)
    config = RunConfig(model=model, out=None if out is None else Path(out), **options)
    return run([os.fspath(s) for s in scenes], config)


def read_scene(scene: str | os.PathLike[str], values: str | None = None) -> xarray.DataArray:
    """Read a scene ``cloudseg-run`` takes (a Landsat folder, a GeoTIFF stack, a STAC item, a
    COG URL) into a ``(band, y, x)`` float32 DataArray of the values a model reads.

    Args:
        scene: what ``cloudseg-run`` would be given.
        values: ``toa_reflectance``, ``surface_reflectance`` or ``dn``; default: reflectance,
            top of atmosphere for a Level-1 product with its metadata, surface for Level-2.

    Returns:
        Bands ``red, green, blue, nir``; NaN where the scene has no data (and where its
        quality band says fill); ``x`` and ``y`` at pixel centres, the CRS and transform
        written the rioxarray way, and the ``cloudseg_values`` attribute
        [`predict`][cloudseg.predict] reads. The whole scene is read: 16 bytes a pixel.

    Raises:
        CloudsegError: the scene cannot be read or cannot give ``values``.

    Examples:
        >>> import cloudseg
        >>> toa = cloudseg.read_scene(
        ...     "../shared/data/biome-l8/LC08_L1TP_110010_20160101_20170101_01_T1")
        >>> [str(b) for b in toa.band.values], toa.shape, toa.attrs["cloudseg_values"]
        (['red', 'green', 'blue', 'nir'], (4, 256, 256), 'toa_reflectance')
    """
    import xarray as xr
    from rasterio.windows import Window

    from cloudseg.bands import valid_pixels
    from cloudseg.data.sources import open_any
    from cloudseg.engine.scene_task import gdal_env

    with gdal_env():
        opened = open_any(scene)
        kinds = opened.value_kinds
        kind = values or next((k for k in ("toa_reflectance", "surface_reflectance") if k in kinds),
                              "dn")  # fmt: skip
        if kind not in kinds:
            raise CloudsegError(f"{opened.source}: {opened.product} cannot give {kind} values")
        out = np.empty((len(BANDS), opened.height, opened.width), np.float32)
        step = max(1, 2**22 // opened.width)  # a few MB of rows a read
        with opened.open() as reader:
            for row0 in range(0, opened.height, step):
                window = Window(0, row0, opened.width, min(step, opened.height - row0))
                raw = reader.read(window)
                rows = out[:, row0 : row0 + raw.shape[1]]
                rows[:] = opened.to_values(raw, kind)
                rows[:, ~valid_pixels(raw)] = np.nan
    t = opened.transform
    x = t.c + t.a * (np.arange(opened.width) + 0.5)
    y = t.f + t.e * (np.arange(opened.height) + 0.5)
    array = xr.DataArray(
        out, dims=("band", "y", "x"), coords={"band": list(BANDS), "y": y, "x": x},
        name=opened.scene_id, attrs={VALUES_ATTR: kind, "source": opened.source},
    )  # fmt: skip
    return _write_grid(array, opened.crs, t)


# -- the engine on an in-memory scene --------------------------------------------------------


def _mask_array_scene(
    scene: Any, config: Any, probabilities: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    from cloudseg.engine.in_memory import mask_scene
    from cloudseg.engine.pipeline import SceneJob
    from cloudseg.engine.registry import open_backend
    from cloudseg.engine.run import plan_engine
    from cloudseg.scene import check_value_kind

    setup = plan_engine(scene, config)
    check_value_kind(setup.card, scene)
    backend = open_backend(setup.config.model, setup.choice,
                           lambda p: setup.config.options(p, setup.spec.tile))  # fmt: skip
    try:
        readers, lookahead = setup.config.reading(remote=False)
        job = SceneJob.start(scene, setup.card, setup.spec, readers, lookahead)
        return mask_scene(job, backend, setup.threshold, probabilities)
    finally:
        backend.close()


def _values_for(values: str | None, data: Any, config: Any) -> str:
    """What the array holds: as said, else what the model reads (refusing integers where it
    reads reflectance: those are digital numbers)."""
    if values is not None:
        return values
    from cloudseg.engine import models
    from cloudseg.engine.run import model_card

    if config.model is None:
        raise CloudsegError(
            "say what the array holds (values='toa_reflectance', 'surface_reflectance' or "
            "'dn') or which model to run (model=...)"
        )
    kind = model_card(models.resolve(config.model)).value_kind
    if kind != "dn" and np.dtype(data.dtype).kind in "iu":
        raise CloudsegError(
            f"the array holds integers ({data.dtype}) but model {config.model} reads {kind}: "
            "convert digital numbers to reflectance first (cloudseg.read_scene does), or say "
            "values='dn'"
        )
    return kind


def _array_scene(data: Any, values: str, nodata: float | None, **grid: Any) -> Any:
    from cloudseg.data.array_scene import ArrayScene

    return ArrayScene(data, values, nodata=nodata, **grid)


def _is_dataarray(data: Any) -> bool:
    return type(data).__name__ == "DataArray" and hasattr(data, "dims")


def _spatial_dims(data: Any) -> tuple[str, str]:
    try:
        import rioxarray  # noqa: F401  (registers .rio)

        return data.rio.y_dim, data.rio.x_dim
    except Exception:  # no rioxarray, or dims it cannot name
        if "y" in data.dims and "x" in data.dims:
            return "y", "x"
        raise CloudsegError(
            f"a DataArray with dims {data.dims} has no y and x dimensions"
        ) from None


def _scene_of_dataarray(
    data: Any, dims: tuple[str, str], values: str | None, nodata: float | None, config: Any
) -> Any:
    if "band" not in data.dims:
        raise CloudsegError(f"a DataArray with dims {data.dims} has no 'band' dimension")
    ydim, xdim = dims
    extra = [d for d in data.dims if d not in ("band", ydim, xdim)]
    if any(data.sizes[d] != 1 for d in extra):
        sizes = ", ".join(f"{d}={data.sizes[d]}" for d in extra)
        raise CloudsegError(f"predict masks one image: select one along {sizes} first")
    data = data.isel({d: 0 for d in extra}).transpose("band", ydim, xdim)
    labels = [str(b).lower() for b in data["band"].values] if "band" in data.coords else []
    names = data.attrs.get("long_name")  # rioxarray.open_rasterio: band descriptions, bands 1..N
    if isinstance(names, (list, tuple)) and len(names) == data.sizes["band"]:
        if not any(label in sum(BAND_NAMES.values(), ()) for label in labels):
            labels = [str(n).lower() for n in names]
    index = []
    for band in BANDS:
        found = [i for i, label in enumerate(labels) if label in BAND_NAMES[band]]
        if not found:
            raise CloudsegError(
                f"the DataArray's bands {labels or 'have no labels'}: none is {band} (name "
                f"them {', '.join(BANDS)}, or one of {', '.join(BAND_NAMES[band])})"
            )
        index.append(found[0])
    values = _values_for(values or data.attrs.get(VALUES_ATTR), data, config)
    if nodata is None:
        nodata = data.attrs.get("nodata", data.attrs.get("_FillValue"))
        if nodata is None and hasattr(data, "rio"):
            nodata = data.rio.nodata
    crs, transform = _grid_of(data)
    band_index = None if index == [0, 1, 2, 3] and len(labels) == 4 else tuple(index)
    return _array_scene(data.data, values, nodata, crs=crs, transform=transform,
                        scene_id=str(data.name or "array"), band_index=band_index)  # fmt: skip


def _grid_of(data: Any) -> tuple[Any, Any]:
    from affine import Affine

    try:
        import rioxarray  # noqa: F401

        return data.rio.crs, data.rio.transform()
    except Exception:  # no rioxarray, or no grid it can read: outputs keep the coordinates
        return None, Affine.identity()


def _write_grid(array: Any, crs: Any, transform: Any) -> Any:
    try:
        import rioxarray  # noqa: F401
    except ImportError:
        return array
    if crs is not None:
        array = array.rio.write_crs(crs)
    return array.rio.write_transform(transform)


def _as_dataarrays(
    data: Any, dims: tuple[str, str], scene: Any, codes: np.ndarray, probs: np.ndarray | None
) -> Any:
    """The mask (and probabilities) on ``data``'s grid: its spatial coordinates, the CRS and
    transform its scene was read with, the codes named in CF attributes."""
    import xarray as xr

    from cloudseg.engine.summary import MASK_CODES, NODATA

    coords = {d: data[d] for d in dims if d in data.coords}
    attrs = {"flag_values": list(MASK_CODES),
             "flag_meanings": " ".join(n.replace(" ", "_") for n in MASK_CODES.values()),
             "long_name": "cloudseg cloud mask"}  # fmt: skip
    mask = xr.DataArray(codes, dims=dims, coords=coords, name="cloudmask", attrs=attrs)
    mask = _write_grid(mask, scene.crs, scene.transform)
    if hasattr(mask, "rio"):
        mask = mask.rio.write_nodata(NODATA)
    if probs is None:
        return mask
    classes = ["cloud", "cloud_shadow"][: len(probs)]
    prob = xr.DataArray(probs, dims=("class", *dims), coords={"class": classes, **coords},
                        name="probability")  # fmt: skip
    return mask, _write_grid(prob, scene.crs, scene.transform)
