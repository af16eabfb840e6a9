"""One scene through the engine: read tiles in threads, batch, run, blend, write rows.

::

    reader threads -> bounded look-ahead -> batcher -> backend.run (in flight) -> RowBlender
                                                                                -> writer thread

* Readers: each thread keeps its own scene reader (GDAL handles are never shared between
  threads); a tile is read, its validity tested and, if it holds any valid pixel, normalised as
  the model card says. Tiles without a valid pixel are never run.
* At most ``lookahead`` tiles, and no more than :data:`READ_AHEAD_BYTES` of model input, are
  read ahead of inference, so a slow backend holds the readers back instead of filling memory
  (16 tiles of 928 px would hold 220 MB). :meth:`TileReader.prefetch` starts those reads
  early, so the next scene's first tiles are read while the current one still infers.
* Batches have the backend's fixed shape (the backend pads the last one), and up to
  ``backend.slots`` batches are in flight on an inference thread pool, so blending the finished
  batch (and, on GPUs and OpenVINO, copying the next one in) overlaps the running one.
* Edge tiles: where the backend runs any size (``dynamic_shapes``: ONNX Runtime's CPU provider
  with a model of dynamic height and width), a tile whose valid pixels fill only part of it (the
  no-data collar of a Landsat footprint) is trimmed to them, rounded up to the card's size
  multiple (:func:`cloudseg.engine.tiling.trim`), and runs in a batch of its own shape. On a
  full WRS-2 footprint this cuts the pixels computed per valid pixel (benchmarks/full_scene.py).
* The blender holds only the rows tiles still touch; finished rows go to the writer thread
  through a bounded queue, and the writer re-reads those rows' bands for validity, the preview
  and the scene's own quality band (cheap next to inference, and it keeps the blender free of
  band data).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from rasterio.windows import Window

from cloudseg.bands import BANDS, reorder, valid_pixels
from cloudseg.card import ModelCard
from cloudseg.engine.backend import N_BANDS, Backend
from cloudseg.engine.blend import RowBlender
from cloudseg.engine.tiling import Tile, TileSpec, pad_tile, tile_grid, trim
from cloudseg.scene import Scene, SceneReader, check_value_kind


class RowSink(Protocol):
    """Where finished rows go (:class:`cloudseg.engine.outputs.SceneWriter`, or a test's)."""

    def write_rows(
        self,
        row0: int,
        probs: np.ndarray,
        valid: np.ndarray,
        threshold: float,
        bands: np.ndarray | None = None,
        qa: np.ndarray | None = None,
    ) -> None: ...


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


#: Model input read ahead of inference at most (bytes): caps ``lookahead`` for large tiles.
#: Tiles in batches in flight come on top, so at 928 px (14 MB a tile) 64 MB held about 8
#: tiles once a wide scene's pipeline filled, which a 2000 px scene's short rows never did
#: (r34 int8, peak RSS 7800 px / 2000 px at one tile: 1.13 at 64 MB, 1.09 at 32 MB, reading no
#: slower: a local tile reads in a tenth of its inference time).
READ_AHEAD_BYTES = 32 * 2**20
#: Pixels of finished rows handed to the writer at once at most: a band of rows as wide as the
#: scene is divided out and handed on in pieces, so neither the blended rows nor the writer's
#: queue and re-read grow with the width (2 MP pieces: a 7800 px scene's peak RSS 26 % above a
#: 2000 px one's at the same tile, most of it these; 0.5 MP: see benchmarks/full_scene.py).
WRITE_CHUNK_PIXELS = 2**19


@dataclass
class RunStats:
    """What happened to one scene, for the summary."""

    tiles_run: int = 0
    tiles_skipped: int = 0
    batches_run: int = 0  # backend calls; a short batch is padded, so each costs a full batch
    tiles_trimmed: int = 0  # edge tiles cut down to their valid pixels
    pixels_computed: int = 0  # model input pixels of the tiles run (a padded batch's pad not)
    times: StageTimes = field(default_factory=StageTimes)


def make_normaliser(card: ModelCard, scene: Scene) -> Callable[[np.ndarray], np.ndarray]:
    """Raw ``(4, h, w)`` values in contract order -> model input ``(4, h, w)`` float32.

    Applies, in order: the value kind the card asks for (DN, or top-of-atmosphere or surface
    reflectance from the scene's metadata), the card's band order, and its affine transform.

    Raises:
        SceneError: the scene cannot give the card's value kind (one line, user's words).
    """
    check_value_kind(card, scene)

    def normalise(raw: np.ndarray) -> np.ndarray:
        values = scene.to_values(raw, card.value_kind)
        return card.transform.apply(reorder(values, BANDS, card.bands))

    return normalise


class TileReader:
    """Reads and normalises tiles in a thread pool, one scene reader per thread, in order."""

    def __init__(
        self,
        scene: Scene,
        tiles: list[Tile],
        spec: TileSpec,
        normalise: Callable[[np.ndarray], np.ndarray],
        threads: int,
        lookahead: int,
    ) -> None:
        self.scene, self.tiles, self.spec, self.normalise = scene, tiles, spec, normalise
        tile_bytes = N_BANDS * spec.tile**2 * 4  # one normalised float32 tile
        self.lookahead = max(1, min(lookahead, READ_AHEAD_BYTES // tile_bytes))
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cloudseg-read")
        self.local = threading.local()
        self.readers: list[SceneReader] = []
        self.lock = threading.Lock()
        self.seconds = 0.0
        self._pending: deque[tuple[Tile, Future]] = deque()
        self._next = 0

    def _reader(self) -> SceneReader:
        reader = getattr(self.local, "reader", None)
        if reader is None:
            reader = self.local.reader = self.scene.open()
            with self.lock:
                self.readers.append(reader)
        return reader

    def read(self, tile: Tile) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
        """``(4, tile, tile)`` float32 model input and the span of its valid pixels (``(row0,
        row1, col0, col1)`` in the window), or None if the tile has no valid pixel."""
        start = time.perf_counter()
        raw = self._reader().read(tile.window)
        out = None
        valid = valid_pixels(raw)
        if valid.any():
            rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
            span = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
            out = pad_tile(self.normalise(raw), self.spec.tile), span
        with self.lock:
            self.seconds += time.perf_counter() - start
        return out

    def prefetch(self) -> None:
        """Start reading the first ``lookahead`` tiles now (before :meth:`stream` is iterated)."""
        while len(self._pending) < self.lookahead and self._next < len(self.tiles):
            tile = self.tiles[self._next]
            self._pending.append((tile, self.pool.submit(self.read, tile)))
            self._next += 1

    def stream(self) -> Iterator[tuple[Tile, tuple[np.ndarray, tuple[int, ...]] | None]]:
        """Tiles in order with their inputs and valid spans (:meth:`read`); at most
        ``lookahead`` reads in flight."""
        self.prefetch()
        while self._pending:
            tile, future = self._pending.popleft()
            self.prefetch()
            yield tile, future.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for reader in self.readers:
            reader.close()


class BlockRows:
    """A scene's bands and QA read one block row at a time (the rows of the files' internal
    tiles), handed out in pieces: each block row is decoded once however the pieces cut it
    (pieces of 67 rows of a scene in 256-row blocks decoded each block about four times: 6.4 s
    of the writer's reading on a 7800 px scene against 1.7 s). Holds one block row."""

    def __init__(self, scene: Scene, reader: SceneReader) -> None:
        self.scene, self.reader = scene, reader
        # A scene without blocks (an array in memory) is read piece by piece, as asked.
        shape = getattr(scene, "block_shape", None)
        self.block = int(shape[0]) if shape else None
        self._start, self._raw, self._qa = 0, None, None

    def rows(self, row0: int, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``(4, n, W)`` raw values and ``(n, W)`` QA classes (or None) of rows ``row0 ..``."""
        raws, qas, row = [], [], row0
        while row < row0 + n:
            end = self._start + (0 if self._raw is None else self._raw.shape[1])
            if not self._start <= row < end:
                self._raw = self._qa = None  # freed before the next is read: one block row
                if self.block:
                    self._start = row // self.block * self.block
                    stop = min(self.scene.height, self._start + self.block)
                else:
                    self._start, stop = row, row0 + n
                window = Window(0, self._start, self.scene.width, stop - self._start)
                self._raw, self._qa = self.reader.read(window), self.reader.read_qa(window)
                end = stop
            take = slice(row - self._start, min(row0 + n, end) - self._start)
            # a piece that runs into the next block row keeps a copy of this one's part, not
            # the whole block row it is a view of
            last = row0 + n <= end
            raws.append(self._raw[:, take] if last else self._raw[:, take].copy())
            qa = None if self._qa is None else self._qa[take]
            qas.append(qa if last or qa is None else qa.copy())
            row += take.stop - take.start
        if len(raws) == 1:
            return raws[0], qas[0]
        qa = None if qas[0] is None else np.concatenate(qas)
        return np.concatenate(raws, axis=1), qa


class RowWriter(threading.Thread):
    """Writes finished rows in the background; re-reads their bands (and QA) for the writer."""

    def __init__(self, scene: Scene, sink: RowSink, threshold: float, depth: int = 4):
        super().__init__(name="cloudseg-write", daemon=True)
        self.scene, self.sink, self.threshold = scene, sink, threshold
        self.rows: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.seconds = 0.0

    def run(self) -> None:
        try:
            with self.scene.open() as reader:
                bands = BlockRows(self.scene, reader)
                while (item := self.rows.get()) is not None:
                    start = time.perf_counter()
                    row0, probs = item
                    raw, qa = bands.rows(row0, probs.shape[1])
                    self.sink.write_rows(row0, probs, valid_pixels(raw), self.threshold, raw, qa)
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


@dataclass
class SceneJob:
    """One scene, its grid and its started tile reader: made before the scene's turn comes, so
    its first tiles can be read while the previous scene still infers."""

    scene: Scene
    spec: TileSpec
    tiles: list[Tile]
    reader: TileReader

    @classmethod
    def start(
        cls, scene: Scene, card: ModelCard, spec: TileSpec, readers: int = 2, lookahead: int = 16
    ) -> SceneJob:
        """Check the scene fits the model, lay the grid, and open (not yet fill) the reader."""
        normalise = make_normaliser(card, scene)
        tiles = tile_grid(scene.height, scene.width, spec)
        return cls(
            scene, spec, tiles, TileReader(scene, tiles, spec, normalise, readers, lookahead)
        )

    def close(self) -> None:
        self.reader.close()


def run_scene(
    job: SceneJob,
    backend: Backend,
    sink: RowSink,
    threshold: float,
    progress: Callable[[int], None] | None = None,
    on_reads_done: Callable[[], None] | None = None,
) -> RunStats:
    """Run one scene through ``backend`` and hand every finished row to ``sink``.

    Args:
        job: the scene, its grid and tile reader (:meth:`SceneJob.start`); closed here.
        backend: ``run((N, 4, t, t) float32) -> (N, K, t, t)`` probabilities.
        sink: where rows go, e.g. a :class:`cloudseg.engine.outputs.SceneWriter`, entered.
        threshold: cloud where probability > threshold.
        progress: called with the number of scene pixels each finished row band holds.
        on_reads_done: called once every tile has been read, while the last batches still
            run (the runner starts reading the next scene's first tiles then).
    """
    scene, spec, tiles = job.scene, job.spec, job.tiles
    stats = RunStats()
    start = time.perf_counter()
    # One tile row at a time (ahead=False): a row's last batches are blended before the next
    # row's first is added, so the blender holds tile rows, not tile + stride, of the scene's
    # width (928 px tiles of a 7800 px scene: 58 MB less); it costs one batch of overlap a row.
    blender = RowBlender(scene.height, scene.width, spec, 2 if backend.options.shadow else 1,
                         ahead=False)  # fmt: skip
    row_writer = RowWriter(scene, sink, threshold)
    row_writer.start()
    batch_size = backend.options.batch
    depth = max(1, backend.slots)
    # Edge tiles trimmed to their valid pixels, where the backend runs any size (module doc).
    trimming = getattr(backend, "dynamic_shapes", False)
    multiple = backend.card.size_multiple
    infer_pool = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="cloudseg-infer")
    pending: list[tuple[Tile, np.ndarray]] = []
    in_flight: deque[tuple[list[Tile], Future]] = deque()

    def timed_run(batch: np.ndarray) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        out = backend.run(batch)
        return out, time.perf_counter() - t0

    def submit() -> None:
        # one tile: a view, not a copy (the backend makes it contiguous if it is not)
        batch = pending[0][1][None] if len(pending) == 1 else np.stack([x for _, x in pending])
        in_flight.append(([t for t, _ in pending], infer_pool.submit(timed_run, batch)))
        stats.tiles_run += len(pending)
        stats.tiles_trimmed += sum(any(t.cut) for t, _ in pending)
        stats.pixels_computed += batch[:, 0].size
        stats.batches_run += 1
        pending.clear()

    def collect() -> None:
        batch_tiles, future = in_flight.popleft()
        probs, seconds = future.result()
        t1 = time.perf_counter()
        for tile, prob in zip(batch_tiles, probs, strict=True):
            blender.add(tile, prob)
        stats.times.infer += seconds
        stats.times.blend += time.perf_counter() - t1

    def emit(frontier: int | None) -> None:
        piece_rows = max(1, WRITE_CHUNK_PIXELS // scene.width)
        for row0, piece in blender.finished(scene.height if frontier is None else frontier,
                                            piece_rows):  # fmt: skip
            row_writer.put(row0, piece)
            if progress is not None:
                progress(piece.shape[1] * scene.width)

    def first_unblended() -> Tile | None:
        if in_flight:
            return in_flight[0][0][0]
        return pending[0][0] if pending else None

    # Index of each tile's row of tiles: the blender holds one tile row, so a batch is cut
    # short (and every batch in flight blended) where the next tile starts a new row.
    row_index = {r: k for k, r in enumerate(sorted({t.row_off for t in tiles}))}
    try:
        for i, (tile, item) in enumerate(job.reader.stream()):
            x = None
            if item is not None:
                x, span = item
                if trimming:
                    tile = trim(tile, span, spec.tile, multiple)
                    top, bottom, left, right = tile.cut
                    # a copy, so the whole tile it was cut from is freed now, not when the
                    # batch is (the backend would copy the view anyway, to make it contiguous)
                    x = np.ascontiguousarray(
                        x[:, top : spec.tile - bottom, left : spec.tile - right]
                    )
            first = first_unblended()
            if first is not None and row_index[tile.row_off] > row_index[first.row_off]:
                if pending:
                    submit()
                while in_flight:
                    collect()
            if x is None:
                stats.tiles_skipped += 1
            else:
                if pending and pending[0][1].shape != x.shape:  # one shape a batch
                    submit()
                pending.append((tile, x))
                if len(pending) == batch_size:
                    submit()
                    while len(in_flight) > depth:  # keep at most `depth` batches running
                        collect()
            if in_flight and in_flight[0][1].done():
                collect()
            # Rows above the first tile not yet blended are final.
            first = first_unblended()
            nxt = tiles[i + 1] if i + 1 < len(tiles) else None
            frontier = first.row_off if first else (nxt.row_off if nxt else None)
            if frontier is not None:
                emit(frontier)
        if on_reads_done is not None:
            on_reads_done()
        if pending:
            submit()
        while in_flight:
            collect()
        emit(None)
        row_writer.finish()
    finally:
        infer_pool.shutdown(wait=True, cancel_futures=True)
        job.close()
        if row_writer.is_alive():
            row_writer.rows.put(None)
            row_writer.join()
    stats.times.read = job.reader.seconds
    stats.times.write = row_writer.seconds
    stats.times.wall = time.perf_counter() - start
    return stats
