"""``cloudseg-export``: a trained model to ONNX files the engine runs with nothing beside them."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from cloudseg.cli_options import (
    OneLineCommand,
    one_line_errors,
    overwrite_option,
    seed_option,
    setup_logging,
)
from cloudseg.errors import ModelError

MODELS = ("r18", "r34")
OPSETS = (17, 21)  # the range of cloudseg.export.onnx_export.OPSETS, kept here: --help is fast

EPILOG = """\b
Examples:
  cloudseg-export --model r18                  # newest r18 run -> $CLOUDSEG_HOME/models
  cloudseg-export --model r34 --run ~/.cache/cloudseg/runs/r34-20250101-120000 --fp16
  cloudseg-export --model r18 --tile 384 --int8 --calib ~/data/38-Cloud
  cloudseg-export --model r34 --random-init --tile 64 --out /tmp/smoke.onnx
  cloudseg-export --model ukis-l1c --int8      # int8 variant of an ONNX model, real calibration

\b
Writes cloudseg-<model>.onnx (float32) and, when asked, -fp16 and -int8 variants beside it,
each with the model card in its metadata. A file appears only if it passes its checks: fp32
logits within 1e-4 of PyTorch and identical masks away from the threshold; variants at least
99.5 % mask agreement with fp32 on held-out patches. The figures are printed either way.

\b
For an ONNX model with a card (--model ukis-l1c, ukis-l2a or a file), --int8 writes
<model>-int8.onnx beside it, calibrated on the real reference scenes that give its values
(--reference); float16 graphs are widened to float32 first. cloudseg-eval prove --precision
int8 then decides whether --precision auto may ever run it.
"""


@click.command(cls=OneLineCommand, epilog=EPILOG)
@click.option(
    "--model", required=True, metavar="MODEL",
    help="r18 or r34: the UNet to export. Or a named ONNX model (ukis-l1c, ukis-l2a) or an ONNX "
    "file with a card: with --int8, its int8 variant only.",
)  # fmt: skip
@click.option(
    "--run",
    type=click.Path(path_type=Path),
    default=None,
    help="Run folder (default: the newest run of the model under $CLOUDSEG_HOME/runs).",
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="A bare state_dict file; its run's card.json must sit beside it.",
)
@click.option(
    "--random-init", is_flag=True, help="Export an untrained model, for smoke tests only."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="fp32 file (default: $CLOUDSEG_HOME/models/cloudseg-<model>.onnx); variants get "
    "-fp16/-int8 before the suffix.",
)
@click.option(
    "--tile",
    type=int,
    default=None,
    help="Fix height and width to N (a multiple of 32; TensorRT likes fixed shapes). "
    "Default: dynamic, any multiple of 32.",
)
@click.option(
    "--opset",
    type=click.IntRange(*OPSETS),
    default=18,
    show_default=True,
    help="ONNX opset (18 is the exporter's own; others go through a version converter).",
)
@click.option("--fp16", is_flag=True, help="Also write a float16 variant (GPU).")
@click.option("--int8", is_flag=True, help="Also write an int8 QDQ variant; needs --calib.")
@click.option(
    "--int8-signed", is_flag=True,
    help="int8 with signed activations (S8S8), as TensorRT needs; the default U8S8 is about "
    "twice as fast on the CPU.",
)  # fmt: skip
@click.option(
    "--calib",
    "--data",
    "data",
    type=click.Path(path_type=Path),
    default=None,
    help="38-Cloud-layout folder: real patches for parity, int8 calibration and the variants' "
    "held-out check (split by scene).",
)
@click.option(
    "--calib-patches", type=click.IntRange(min=1), default=64, show_default=True,
    help="int8 calibration patches.",
)  # fmt: skip
@click.option(
    "--held-out-patches", type=click.IntRange(min=1), default=16, show_default=True,
    help="Patches the variants are checked on.",
)  # fmt: skip
@click.option(
    "--reference",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Real reference scenes an ONNX model's int8 variant is calibrated on (default "
    "$CLOUDSEG_REFERENCE, else the project's shared/data).",
)
@click.option(
    "--keep-float",
    multiple=True,
    metavar="TEXT",
    help="ONNX model int8: also keep float the nodes whose names contain TEXT (repeatable).",
)
@seed_option
@overwrite_option
@click.option("--verbose", "-v", is_flag=True, help="Log each step.")
@one_line_errors
def main(
    model: str,
    run: Path | None,
    checkpoint: Path | None,
    random_init: bool,
    out: Path | None,
    tile: int | None,
    opset: int,
    fp16: bool,
    int8: bool,
    int8_signed: bool,
    data: Path | None,
    calib_patches: int,
    held_out_patches: int,
    reference: Path | None,
    keep_float: tuple[str, ...],
    seed: int,
    overwrite: bool,
    verbose: bool,
) -> None:
    """Export a cloud UNet to ONNX, check it against PyTorch, and write the model card into it."""
    setup_logging(verbose)
    if not verbose:  # the exporter's libraries log every pass at INFO
        for name in ("onnxscript", "onnx_ir", "torch.onnx", "torch.export"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if model not in MODELS:
        onnx_variant(model, int8, out, reference, keep_float, overwrite)
        return
    if reference is not None or keep_float:
        raise ModelError(
            "--reference and --keep-float are for an ONNX model's int8 variant, "
            f"not {model} (its int8 calibrates on --calib)"
        )
    if sum((run is not None, checkpoint is not None, random_init)) > 1:
        raise ModelError("give one of --run, --checkpoint and --random-init")
    if tile is not None and (tile <= 0 or tile % 32):
        raise ModelError(f"--tile {tile} is not a positive multiple of 32")
    # Imported here: torch and the exporter take seconds to load, --help should not.
    from cloudseg.export.pipeline import ExportConfig, export

    config = ExportConfig(
        model=model, run=run, checkpoint=checkpoint, random_init=random_init, out=out,
        tile=tile, opset=opset, fp16=fp16, int8=int8, int8_signed=int8_signed, data=data,
        calib_patches=calib_patches, held_out_patches=held_out_patches, overwrite=overwrite,
        seed=seed,
    )  # fmt: skip
    for done in export(config):
        click.echo(done.path)


#: Options that only a training run's export reads.
TRAINED_ONLY = ("run", "checkpoint", "random_init", "tile", "opset", "fp16", "int8_signed",
                "data", "calib_patches", "held_out_patches")  # fmt: skip


def onnx_variant(
    model: str, int8: bool, out: Path | None, reference: Path | None,
    keep_float: tuple[str, ...], overwrite: bool,
) -> None:  # fmt: skip
    """``--model`` an ONNX model with a card: write its int8 variant (nothing else applies)."""
    from cloudseg.engine import models

    ctx = click.get_current_context()
    given = [
        f"--{n.replace('_', '-')}"
        for n in TRAINED_ONLY
        if ctx.get_parameter_source(n) is not click.core.ParameterSource.DEFAULT
    ]
    if given:
        raise ModelError(f"{', '.join(given)}: for r18 or r34 only; an ONNX model {model!r} "
                         "takes --int8 (with --out, --reference, --keep-float)")  # fmt: skip
    if not int8:
        raise ModelError(
            f"--model {model}: an ONNX model is exported already; give --int8 for "
            f"its int8 variant, or --model {' or '.join(MODELS)} to export a UNet"
        )
    path = models.resolve(model)
    if path.suffix != ".onnx" or not path.is_file():
        raise ModelError(f"--model {model}: not r18, r34, a named ONNX model "
                         f"({', '.join(models.NAMED)}) or an ONNX file")  # fmt: skip
    from cloudseg.export.variant import write_int8

    click.echo(write_int8(path, out, reference, keep_float, overwrite))
