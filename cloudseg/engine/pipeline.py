"""One scene through the engine: read tiles in threads, batch, run, blend, write rows.

::

    reader threads -> bounded look-ahead -> batcher -> backend.run -> RowBlender -> writer thread

* Readers: each thread keeps its own scene reader (GDAL handles are never shared between
  threads); a tile is read, its validity tested and, if it holds any valid pixel, normalised as
  the model card says. Tiles without a valid pixel are never run.
* At most ``queue`` tiles are read ahead of inference, so a slow backend holds the readers back
  instead of filling memory.
* Batches always have the backend's fixed shape (the backend pads the last one).
* The blender holds only the rows tiles still touch; finished rows go to the writer thread
  through a bounded queue, and the writer re-reads those rows' bands for validity and the
  preview (cheap next to inference, and it keeps the blender free of band data).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rasterio.windows import Window

from cloudseg.bands import BANDS, reorder, valid_pixels
from cloudseg.card import ModelCard
from cloudseg.data.landsat import LandsatScene, toa_reflectance
from cloudseg.engine.blend import RowBlender
from cloudseg.engine.tiling import Tile, TileSpec, pad_tile, tile_grid
from cloudseg.errors import ModelError, SceneError


@dataclass
class StageTimes:
    """Seconds spent in each stage (summed over threads for reading and writing)."""

    read: float = 0.0
    infer: float = 0.0
    blend: float = 0.0
    write: float = 0.0
    wall: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.__dict__.items()}


@dataclass
class RunStats:
    """What happened to one scene, for the summary."""

    tiles_run: int = 0
    tiles_skipped: int = 0
    batches_run: int = 0  # backend calls; a short batch is padded, so each costs a full batch
    times: StageTimes = field(default_factory=StageTimes)


def make_normaliser(card: ModelCard, scene: LandsatScene) -> Callable[[np.ndarray], np.ndarray]:
    """Raw ``(4, h, w)`` uint16 DN in contract order -> model input ``(4, h, w)`` float32.

    Applies, in order: the value kind the card asks for (top-of-atmosphere reflectance from the
    scene's MTL), the card's band order, and its affine transform.
    """
    if card.value_kind == "toa_reflectance":
        if scene.mtl is None or not scene.mtl.toa:
            raise SceneError(
                f"{scene.path}: model {card.name} wants top-of-atmosphere reflectance, which "
                "needs the scene's MTL with REFLECTANCE_MULT/ADD coefficients"
            )
        mtl = scene.mtl

        def to_values(dn: np.ndarray) -> np.ndarray:
            return toa_reflectance(dn, BANDS, mtl)
    elif scene.kind == "L2":
        raise SceneError(
            f"{scene.path}: a Level-2 (surface reflectance) scene, but model {card.name} was "
            "trained on Level-1 digital numbers"
        )
    else:

        def to_values(dn: np.ndarray) -> np.ndarray:
            return dn

    def normalise(dn: np.ndarray) -> np.ndarray:
        return card.transform.apply(reorder(to_values(dn), BANDS, card.bands))

    return normalise


class TileReader:
    """Reads and normalises tiles in a thread pool, one scene reader per thread, in order."""

    def __init__(self, scene: LandsatScene, spec: TileSpec, normalise: Callable, threads: int):
        self.scene, self.spec, self.normalise = scene, spec, normalise
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cloudseg-read")
        self.local = threading.local()
        self.readers: list[Any] = []
        self.lock = threading.Lock()
        self.seconds = 0.0

    def _reader(self) -> Any:
        reader = getattr(self.local, "reader", None)
        if reader is None:
            reader = self.local.reader = self.scene.open()
            with self.lock:
                self.readers.append(reader)
        return reader

    def read(self, tile: Tile) -> np.ndarray | None:
        """``(4, tile, tile)`` float32 model input, or None if the tile has no valid pixel."""
        start = time.perf_counter()
        dn = self._reader().read(tile.window)
        valid = valid_pixels(dn)
        out = None
        if valid.any():
            out = pad_tile(self.normalise(dn), self.spec.tile)
        with self.lock:
            self.seconds += time.perf_counter() - start
        return out

    def stream(self, tiles: list[Tile], lookahead: int) -> Iterator[tuple[Tile, np.ndarray | None]]:
        """Tiles in order with their inputs; at most ``lookahead`` reads in flight."""
        pending: deque[tuple[Tile, Future]] = deque()
        it = iter(tiles)
        for tile in it:
            pending.append((tile, self.pool.submit(self.read, tile)))
            if len(pending) >= lookahead:
                break
        while pending:
            tile, future = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, self.pool.submit(self.read, nxt)))
            yield tile, future.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for reader in self.readers:
            reader.close()


class RowWriter(threading.Thread):
    """Writes finished rows in the background; re-reads their bands for validity and preview."""

    def __init__(self, scene: LandsatScene, writer: Any, threshold: float, depth: int = 4):
        super().__init__(name="cloudseg-write", daemon=True)
        self.scene, self.writer, self.threshold = scene, writer, threshold
        self.rows: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.seconds = 0.0

    def run(self) -> None:
        try:
            with self.scene.open() as reader:
                while (item := self.rows.get()) is not None:
                    start = time.perf_counter()
                    row0, probs = item
                    window = Window(0, row0, self.scene.width, probs.shape[0])
                    dn = reader.read(window)
                    self.writer.write_rows(row0, probs, valid_pixels(dn), self.threshold, dn)
                    self.seconds += time.perf_counter() - start
        except BaseException as exc:  # handed to the main thread, which re-raises it
            self.error = exc
            while self.rows.get() is not None:  # drain so the producer never blocks forever
                pass

    def put(self, row0: int, probs: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        self.rows.put((row0, probs))

    def finish(self) -> None:
        self.rows.put(None)
        self.join()
        if self.error is not None:
            raise self.error


def check_spec(card: ModelCard, spec: TileSpec) -> None:
    if spec.tile % card.size_multiple:
        raise ModelError(
            f"tile {spec.tile} is not a multiple of {card.size_multiple}, which model "
            f"{card.name} needs"
        )


def run_scene(
    scene: LandsatScene,
    backend: Any,
    writer: Any,
    spec: TileSpec,
    batch: int,
    threshold: float,
    readers: int = 2,
    lookahead: int = 16,
    progress: Callable[[int], None] | None = None,
) -> RunStats:
    """Run one scene through ``backend`` and hand every finished row to ``writer``.

    Args:
        scene: opened with :func:`cloudseg.data.landsat.open_scene`.
        backend: ``run((N, 4, t, t) float32) -> (N, t, t)`` cloud probability.
        writer: a :class:`cloudseg.engine.outputs.SceneWriter`, already entered.
        spec: tile size and overlap.
        batch: tiles per ``backend.run``.
        threshold: cloud where probability > threshold.
        readers: reader threads.
        lookahead: tiles read ahead of inference (bounds memory).
        progress: called with the number of scene pixels each finished row band holds.
    """
    check_spec(backend.card, spec)
    stats = RunStats()
    start = time.perf_counter()
    tiles = tile_grid(scene.height, scene.width, spec)
    blender = RowBlender(scene.height, scene.width, spec)
    tile_reader = TileReader(scene, spec, make_normaliser(backend.card, scene), readers)
    row_writer = RowWriter(scene, writer, threshold)
    row_writer.start()
    pending: list[tuple[Tile, np.ndarray]] = []

    def run_batch() -> None:
        t0 = time.perf_counter()
        probs = backend.run(np.stack([x for _, x in pending]))
        t1 = time.perf_counter()
        for (tile, _), prob in zip(pending, probs, strict=True):
            blender.add(tile, prob)
        stats.times.infer += t1 - t0
        stats.times.blend += time.perf_counter() - t1
        stats.tiles_run += len(pending)
        stats.batches_run += 1
        pending.clear()

    def emit(next_row_off: int | None) -> None:
        rows = blender.flush() if next_row_off is None else blender.finished(next_row_off)
        for row0, probs in rows:
            row_writer.put(row0, probs)
            if progress is not None:
                progress(probs.shape[0] * scene.width)

    # Index of each tile's row of tiles: a batch may span two rows of tiles (the blender holds
    # about tile + stride rows), never three, so a batch is run early where it would.
    row_index = {r: k for k, r in enumerate(sorted({t.row_off for t in tiles}))}
    try:
        for i, (tile, x) in enumerate(tile_reader.stream(tiles, lookahead)):
            if pending and row_index[tile.row_off] - row_index[pending[0][0].row_off] >= 2:
                run_batch()
            if x is None:
                stats.tiles_skipped += 1
            else:
                pending.append((tile, x))
                if len(pending) == batch:
                    run_batch()
            # Rows above the first tile not yet blended are final.
            nxt = tiles[i + 1] if i + 1 < len(tiles) else None
            frontier = pending[0][0].row_off if pending else (nxt.row_off if nxt else None)
            if frontier is not None:
                emit(frontier)
        if pending:
            run_batch()
        emit(None)
        row_writer.finish()
    finally:
        tile_reader.close()
        if row_writer.is_alive():
            row_writer.rows.put(None)
            row_writer.join()
    stats.times.read = tile_reader.seconds
    stats.times.write = row_writer.seconds
    stats.times.wall = time.perf_counter() - start
    return stats
