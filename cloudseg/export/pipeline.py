"""One export: model and card in, checked ONNX files out, each logged on one line.

Every file is born under a temporary name beside its destination
(:func:`cloudseg.atomic.atomic_path`), checked there (ONNX checker, strict shape inference, the
graph contract), run in ONNX Runtime against its reference, and renamed only when it passes; a
refused file is removed and whatever was at the destination stays untouched. The card, completed
with the figures, is appended to the checked bytes
(:func:`~cloudseg.export.onnx_export.append_card`) and read back before the rename.

* fp32: parity with PyTorch (:func:`~cloudseg.export.parity.check_parity`) on random inputs
  (batch 2 at the check size, and for dynamic exports batch 1 at a second, non-square size) and,
  with a dataset, on held-out real patches.
* fp16 and int8 (``-fp16`` / ``-int8`` beside the fp32 file, which is always written first as
  their source and reference): mask agreement with the fp32 file on held-out patches (real with
  a dataset, else synthetic for fp16; int8 requires a dataset to calibrate on).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort
import torch

from cloudseg.atomic import atomic_path, check_writable
from cloudseg.card import METADATA_KEY, ModelCard, read
from cloudseg.errors import DataError, ModelError
from cloudseg.export import parity as par
from cloudseg.export.fp16 import to_fp16
from cloudseg.export.onnx_export import (
    DEFAULT_OPSET,
    append_card,
    check_file,
    graph_facts,
    save,
    to_onnx,
)
from cloudseg.export.samples import PatchSet, dataset_patches, synthetic_patches
from cloudseg.export.sources import Source, load_source
from cloudseg.home import default_model_path, variant_path
from cloudseg.train.models import SIZE_MULTIPLE, check_input_size

log = logging.getLogger("cloudseg.export")

EXPORTER = "torch.onnx.export(dynamo=True)"
#: Real patches added to fp32 parity when a dataset is given.
PARITY_PATCHES = 4


@dataclass(frozen=True)
class ExportConfig:
    """What ``cloudseg-export`` was asked to do, built once by the CLI."""

    model: str
    run: Path | None = None
    checkpoint: Path | None = None
    random_init: bool = False
    out: Path | None = None  # default: default_model_path(model)
    tile: int | None = None  # fixed height and width; None: dynamic
    opset: int = DEFAULT_OPSET
    fp16: bool = False
    int8: bool = False
    int8_signed: bool = False  # S8S8 activations (TensorRT) instead of U8S8 (CPU)
    data: Path | None = None  # 38-Cloud-layout folder: real patches for checks and calibration
    calib_patches: int = 64
    held_out_patches: int = 16
    check_size: int | None = None  # side of check inputs; default: tile, else the card's tile
    overwrite: bool = False
    seed: int = 0

    def paths(self) -> dict[str, Path]:
        """Destination of every file this export writes, fp32 first."""
        base = Path(self.out) if self.out is not None else default_model_path(self.model)
        wanted = ["fp32", *(["fp16"] if self.fp16 else []), *(["int8"] if self.int8 else [])]
        return {v: variant_path(base, None if v == "fp32" else v) for v in wanted}


@dataclass(frozen=True)
class Exported:
    """One file written: where, how long it took, how big it is, and its figures."""

    variant: str
    path: Path
    seconds: float
    size_bytes: int
    figures: par.Parity | par.Agreement
    card: ModelCard = field(repr=False)


def export(config: ExportConfig, source: Source | None = None) -> list[Exported]:
    """Write the fp32 model and the variants ``config`` asks for; see the module docstring.

    Args:
        config: what to export and where.
        source: a model and card already loaded (tests, notebooks); by default the run,
            checkpoint or random init that ``config`` names is loaded.

    Raises:
        OutputExistsError: a destination exists and ``config.overwrite`` is false (before any
            work, so nothing is touched).
        DataError: int8 without a dataset, or a dataset without usable patches.
        ModelError: bad source, or a file refused by its checks (files already renamed, e.g.
            fp32 before a refused variant, stay).
    """
    if config.int8 and config.data is None:
        raise DataError("--int8 needs --calib DATA_DIR: a 38-Cloud-layout folder to calibrate on")
    paths = config.paths()
    for path in paths.values():
        check_writable(path, config.overwrite)
    if source is None:
        source = load_source(
            config.model, config.run, config.checkpoint, config.random_init, config.data,
            config.tile, config.seed,
        )  # fmt: skip
    size = config.check_size or config.tile or source.card.tile_size
    check_input_size(size, size)
    calib = held = None
    if config.data is not None:
        calib, held = dataset_patches(
            config.data, size, config.calib_patches if config.int8 else 0,
            config.held_out_patches, config.seed,
        )  # fmt: skip
    log.debug("%s from %s, check size %d", source.card.name, source.description, size)
    done = [_export_fp32(source, config, paths["fp32"], size, held)]
    variants = [v for v in paths if v != "fp32"]
    if variants:
        checks = held or synthetic_patches(config.held_out_patches, size, config.seed)
        for v in variants:
            done.append(_export_variant(v, done[0], source, config, paths[v], checks, calib))
    return done


def _export_fp32(
    source: Source, config: ExportConfig, path: Path, size: int, held: PatchSet | None
) -> Exported:
    start = time.perf_counter()
    card = source.card
    log.debug("exporting with %s, opset %d, tile %s", EXPORTER, config.opset, config.tile)
    proto = to_onnx(source.model, config.tile, config.opset)
    facts = graph_facts(proto)
    log.debug("graph: %s", facts)
    inputs = par.random_inputs([(2, size, size)], config.seed)
    if config.tile is None:  # a second, non-square size proves height and width are free
        inputs += par.random_inputs([(1, max(SIZE_MULTIPLE, size // 2 // 32 * 32), size)])
    if held is not None:
        real = held.raw[:PARITY_PATCHES]
        inputs.append((f"{len(real)} {held.source}", card.transform.apply(real)))
    with atomic_path(path, config.overwrite) as tmp:
        save(proto, tmp)
        del proto
        check_file(tmp, len(card.classes), config.tile)
        figures = par.check_parity(source.model, par.session(tmp), card, inputs)
        card = export_card(card, config, facts, "fp32", source, {"parity": figures.to_dict()})
        return _finish(tmp, path, "fp32", start, figures, card)


def _export_variant(
    variant: str,
    fp32: Exported,
    source: Source,
    config: ExportConfig,
    path: Path,
    patches: PatchSet,
    calib: PatchSet | None,
) -> Exported:
    start = time.perf_counter()
    card = source.card
    base = onnx.load_model(str(fp32.path))
    _drop_card(base)  # the variant gets its own card, and metadata keys must be unique
    log.debug("making the %s variant of %s", variant, fp32.path)
    with atomic_path(path, config.overwrite) as tmp:
        if variant == "fp16":
            save(to_fp16(base), tmp)
        else:
            from cloudseg.export.quantise import to_int8  # only int8 needs the quantiser

            if calib is None:
                raise DataError("int8 needs calibration patches: pass --calib DATA_DIR")
            to_int8(base, tmp, card.transform.apply(calib.raw), config.int8_signed)
        del base
        facts = graph_facts(check_file(tmp, len(card.classes), config.tile))
        figures = par.mask_agreement(
            par.session(fp32.path), par.session(tmp), card, patches.raw, variant, patches.source
        )
        extra = {"parity": fp32.figures.to_dict(), "agreement": figures.to_dict()}
        if calib is not None and variant == "int8":
            extra["calibration"] = {"patches": len(calib), "source": calib.source}
            extra["int8_activations"] = "int8 (S8S8)" if config.int8_signed else "uint8 (U8S8)"
        card = export_card(card, config, facts, variant, source, extra)
        return _finish(tmp, path, variant, start, figures, card)


def _drop_card(proto: onnx.ModelProto) -> None:
    props = proto.metadata_props
    for i in reversed(range(len(props))):
        if props[i].key == METADATA_KEY:
            del props[i]


def export_card(
    card: ModelCard,
    config: ExportConfig,
    facts: dict[str, Any],
    variant: str,
    source: Source,
    figures: dict[str, Any],
) -> ModelCard:
    """The run's card completed with export facts under ``extra["export"]``, and versions."""
    export_facts = {
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "variant": variant,
        "exporter": EXPORTER,
        "opset": facts["opset"],
        "input": facts["input"],
        "output": facts["output"],
        "source": source.description,
        **figures,
    }
    exported_with = {"torch_export": torch.__version__, "onnx": onnx.__version__}
    exported_with["onnxruntime"] = ort.__version__
    return replace(
        card,
        tile_size=config.tile or card.tile_size,
        fixed_size=config.tile is not None,  # --tile fixes the graph's height and width
        extra={**card.extra, "export": export_facts},
        versions={**card.versions, **exported_with},
    )


def _finish(
    tmp: Path,
    path: Path,
    variant: str,
    start: float,
    figures: par.Parity | par.Agreement,
    card: ModelCard,
) -> Exported:
    """Log the export's one line; refuse it (raise) or append the card and return."""
    seconds, size = time.perf_counter() - start, tmp.stat().st_size
    verdict = "passed" if figures.passed else "REFUSED"
    log.info(
        "export %s %s -> %s: %s in %.1f s, %.1f MB; %s",
        card.name, variant, path, verdict, seconds, size / 1e6, figures.summary(),
    )  # fmt: skip
    if not figures.passed:
        raise ModelError(f"{path}: {variant} export refused: {figures.summary()}")
    append_card(tmp, card)
    if read(tmp) != card:  # the file must carry exactly this card
        raise ModelError(f"{tmp}: the card read back differs from the card written")
    return Exported(variant, path, seconds, tmp.stat().st_size, figures, card)
