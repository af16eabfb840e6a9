"""What ``cloudseg-run`` was asked to do: one frozen :class:`RunConfig`, built once by the CLI."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cloudseg.engine.backend import BackendOptions
from cloudseg.engine.preview import PREVIEW_MAX_SIDE

#: Tiles per inference call when ``--batch`` is not given. On the CPU, 1: batching made neither
#: UNet faster here (ORT fp32, tile 384: r18 0.80 s a tile at batch 1 and at batch 4, r34 faster
#: at 1 than at 4 or 8; benchmarks/backends.py), while ONNX Runtime's memory arena grows with
#: the batch (r18 peak RSS 0.85 GB at batch 1, 2.7 GB at batch 4). On a GPU, batches keep the
#: device busy.
DEFAULT_BATCH = {"cpu": 1, "openvino": 1, "torch": 1, "cuda": 4, "tensorrt": 4}
#: Reader threads and tiles read ahead: local disks need few; over the network more requests in
#: flight hide each one's latency (a COG tile is one or two range requests).
READERS = {"local": 2, "remote": 6}
LOOKAHEAD = {"local": 16, "remote": 48}


def default_batch(provider: str, device: int | None = None) -> int:
    """``--batch`` when not given: 1 on CPUs, 4 on GPUs (torch on a CUDA device included)."""
    if provider == "torch" and device is not None:
        return DEFAULT_BATCH["cuda"]
    return DEFAULT_BATCH.get(provider, 1)


@dataclass(frozen=True)
class RunConfig:
    """Everything ``cloudseg-run`` was asked to do, built once by the CLI."""

    model: str | Path | None  # a path or a name (cloudseg.engine.models); None: the default
    provider: str = "auto"
    out: Path | None = None  # default: a folder "cloudseg" beside each scene
    batch: int | None = None  # default: default_batch(provider)
    tile: int | None = None  # default: the tile plan's choice for the first scene
    overlap: int | None = None  # default: the card's default overlap for the tile
    threshold: float | None = None  # default: the card's
    probabilities: bool = False
    shadow: bool = False
    dilate: int = 0  # cloud buffer, pixels
    vector: bool = False  # also write <id>_clouds.gpkg
    overwrite: bool = False
    skip_existing: bool = False
    keep_going: bool = False
    sequential: bool = False  # no overlap between scenes (for comparison)
    readers: int | None = None  # default: READERS, by where the scene is
    lookahead: int | None = None  # default: LOOKAHEAD
    progress: bool = True
    threads: int | None = None
    device: int | None = None
    precision: str = "auto"
    fp16: bool = False
    trt_cache: Path | None = None
    preview_size: int = PREVIEW_MAX_SIDE
    memory_budget: float | None = None  # GiB for inference; default: the provider's
    ray: str | None = None  # "auto" or a Ray address: scale out (cloudseg.engine.ray_runner)
    retries: int = 1  # Ray: tries more of a scene whose worker died

    def options(self, provider: str, tile: int) -> BackendOptions:
        """The backend's options once the provider and tile are known."""
        return BackendOptions(
            batch=self.batch or default_batch(provider, self.device),
            tile=tile,
            threads=self.threads,
            device=self.device,
            precision=self.precision,
            fp16=self.fp16,
            trt_cache=self.trt_cache,
            shadow=self.shadow,
        )

    def reading(self, remote: bool) -> tuple[int, int]:
        """Reader threads and look-ahead for a local or a remote scene."""
        where = "remote" if remote else "local"
        return self.readers or READERS[where], self.lookahead or LOOKAHEAD[where]

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
