"""Which tile size a scene runs at: the one that computes the fewest pixels per valid pixel.

A tile grid computes more pixels than it keeps: every tile shares ``overlap`` pixels with each
neighbour (at 384 / 32 a tile computes 1.44x the pixels its stride advances), the last tile of
a row or column is shifted inward over its neighbour, and tiles on the edge of a scene's no-data
collar compute the no-data part too. Bigger tiles waste less on overlap and more at the collar;
which wins depends on the scene. Where the pipeline trims edge tiles to their valid pixels (a
model of any size on the CPU providers, :func:`cloudseg.engine.tiling.trim`), the collar costs
far less and the plan counts each tile at its trimmed size. :func:`plan_tiles` lays the grid
of every tile size the model's card allows, up to what the provider's memory budget holds,
over a coarse validity map of the scene, and keeps the size with the lowest *computed / valid*
ratio.

The map is only a guide: the engine still reads every tile and runs exactly those with a valid
pixel, so a map that misses a few valid pixels changes the size chosen, never the mask.

Memory: inference memory grows with tile area. Measured on this project's exports (peak RSS
at 768 px minus 384 px, over the pixels added, batch 1): r18 with ONNX Runtime CPU about 2,000
bytes per pixel, with OpenVINO bf16 about 700; r34 about 330 and 160. :data:`BYTES_PER_PIXEL`
holds the larger (r18) figures, so the budget holds for either UNet.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cloudseg.card import ModelCard
from cloudseg.engine.tiling import TileSpec, tile_grid, trim
from cloudseg.errors import ModelError
from cloudseg.scene import Scene

#: Inference memory per pixel of a batch of tiles, by provider (see the module docstring). GPU
#: figures assume fp16 activations (TensorRT, CUDA with an fp16 file) and are not measured here.
BYTES_PER_PIXEL = {"cpu": 2048, "openvino": 700, "torch": 2048, "cuda": 1024, "tensorrt": 512}
#: Default inference memory budget, GiB: the CPU shares the machine's RAM with everything else;
#: a GPU's memory is the engine's.
BUDGET_GIB = {"cpu": 2.0, "openvino": 2.0, "torch": 2.0, "cuda": 8.0, "tensorrt": 8.0}
#: Providers whose backends run trimmed edge tiles (``dynamic_shapes``) of a dynamic model.
TRIMS = ("cpu", "openvino")
#: Smallest tile considered (overlap then costs more than half of every tile).
SMALLEST = 256
#: Largest tile considered at any budget: past it, overlap waste is already under 15 %.
LARGEST = 2048
#: Side of a validity-map cell, pixels (the map is read decimated by this factor).
CELL = 32


@dataclass(frozen=True)
class TilePlan:
    """One tile size laid over one scene, with what it would compute.

    Attributes:
        tile: tile side, pixels.
        overlap: overlap on each side, pixels.
        tiles: tiles holding a valid pixel (the ones that run).
        computed: pixels those tiles compute (``tile ** 2`` each, less what trimming cuts).
        valid: valid pixels of the scene (from the map).
        candidates: ``{tile: computed / valid}`` of every size weighed.
    """

    tile: int
    overlap: int
    tiles: int
    computed: int
    valid: int
    candidates: dict[int, float]

    @property
    def ratio(self) -> float:
        """Pixels computed per valid pixel."""
        return self.computed / self.valid if self.valid else math.inf

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": round(self.ratio, 4)}


def largest_tile(provider: str, batch: int, budget_gib: float | None = None) -> int:
    """The largest tile side whose batch fits the provider's memory budget."""
    budget = (budget_gib or BUDGET_GIB.get(provider, 2.0)) * 2**30
    side = math.sqrt(budget / (batch * BYTES_PER_PIXEL.get(provider, 2048)))
    return int(min(side, LARGEST))


def check_tile_budget(
    card: ModelCard, tile: int, provider: str, batch: int, budget_gib: float | None = None
) -> None:
    """Refuse an explicit ``--tile`` whose batch would not fit the memory budget, in one line,
    before a runtime tries to allocate it (ONNX Runtime and OpenVINO fail with a traceback)."""
    if card.fixed_size or tile <= largest_tile(provider, batch, budget_gib):
        return
    need = batch * tile * tile * BYTES_PER_PIXEL.get(provider, 2048) / 2**30
    budget = budget_gib or BUDGET_GIB.get(provider, 2.0)
    raise ModelError(
        f"--tile {tile} needs about {need:.1f} GiB for inference on {provider} at batch {batch}, "
        f"over the memory budget of {budget:g} GiB: pass a smaller --tile (at most "
        f"{largest_tile(provider, batch, budget_gib)} here) or a larger --memory-budget"
    )


def validity_map(scene: Scene, cell: int = CELL) -> np.ndarray:
    """``(ceil(H / cell), ceil(W / cell))`` bool: a cell holds a valid pixel (sampled)."""
    with scene.open() as reader:
        return np.any(reader.read_coarse(cell) != 0, axis=0)


def _valid_pixels(valid: np.ndarray, height: int, width: int) -> int:
    """Valid pixels the map stands for: each valid cell counts its area (edge cells are cut)."""
    rows = np.minimum(CELL, height - CELL * np.arange(valid.shape[0]))
    cols = np.minimum(CELL, width - CELL * np.arange(valid.shape[1]))
    return int((valid * rows[:, None] * cols[None, :]).sum())


def _grid_cost(
    valid: np.ndarray, height: int, width: int, spec: TileSpec, cell: int, multiple: int | None
) -> tuple[int, int]:
    """Tiles of the grid that hold a valid map cell, and the pixels they compute (each trimmed
    to its valid cells, as the pipeline trims it, when ``multiple`` is given)."""
    count = computed = 0
    for tile in tile_grid(height, width, spec):
        r0, r1 = tile.row_off // cell, -(-tile.row_end // cell)
        c0, c1 = tile.col_off // cell, -(-tile.col_end // cell)
        cells = valid[r0:r1, c0:c1]
        if not cells.any():
            continue
        count += 1
        if multiple is not None:
            rows, cols = np.flatnonzero(cells.any(axis=1)), np.flatnonzero(cells.any(axis=0))
            # the valid cells' extent in the tile's own pixels, each cell counted whole
            top, left = (r0 + rows[0]) * cell - tile.row_off, (c0 + cols[0]) * cell - tile.col_off
            bottom = (r0 + rows[-1] + 1) * cell - tile.row_off
            right = (c0 + cols[-1] + 1) * cell - tile.col_off
            span = tuple(int(np.clip(v, 0, spec.tile)) for v in (top, bottom, left, right))
            tile = trim(tile, span, spec.tile, multiple)  # type: ignore[arg-type]
        top, bottom, left, right = tile.cut
        computed += (spec.tile - top - bottom) * (spec.tile - left - right)
    return count, computed


def plan_tiles(
    card: ModelCard,
    scene: Scene,
    provider: str,
    batch: int,
    budget_gib: float | None = None,
    valid: np.ndarray | None = None,
    trimmed: bool | None = None,
) -> TilePlan:
    """The tile size (and its card's default overlap) with the fewest computed pixels per
    valid pixel, among the sizes ``card`` allows that fit the memory budget.

    Args:
        card: gives the sizes the model takes and the overlap for each.
        scene: the scene (its validity map is read unless ``valid`` is given).
        provider: the provider that will run (its memory figures).
        batch: tiles per inference call.
        budget_gib: inference memory budget; default :data:`BUDGET_GIB` of the provider.
        valid: a validity map at :data:`CELL` already read.
        trimmed: whether the pipeline will trim edge tiles to their valid pixels (default:
            where the model takes any size and the provider runs it so, :data:`TRIMS`).
    """
    if trimmed is None:
        trimmed = not card.fixed_size and provider in TRIMS
    sizes = card.tile_sizes(
        min(SMALLEST, card.tile_size), largest_tile(provider, batch, budget_gib)
    )
    if not sizes:  # a fixed-size model, or a budget below its one size: the card's size
        sizes = (card.tile_size,)
    valid = validity_map(scene) if valid is None else valid
    n_valid = _valid_pixels(valid, scene.height, scene.width)
    best: TilePlan | None = None
    candidates: dict[int, float] = {}
    for tile in sizes:
        overlap = card.default_overlap(tile)
        tiles, computed = _grid_cost(valid, scene.height, scene.width, TileSpec(tile, overlap),
                                     CELL, card.size_multiple if trimmed else None)  # fmt: skip
        candidates[tile] = round(computed / n_valid, 4) if n_valid else math.inf
        if best is None or computed < best.computed:
            best = TilePlan(tile, overlap, tiles, computed, n_valid, {})
    assert best is not None
    return TilePlan(best.tile, best.overlap, best.tiles, best.computed, n_valid, candidates)
