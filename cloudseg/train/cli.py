"""``cloudseg-train``: train r18 (fastai) or r34 (PyTorch) on a 38-Cloud-layout folder."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Any

import click

from cloudseg.cli_options import (
    FiniteFloatRange,
    OneLineCommand,
    one_line_errors,
    out_dir_option,
    overwrite_option,
    precision_option,
    quiet_option,
    seed_option,
)

log = logging.getLogger("cloudseg.train")

#: Module holding each model's ``train(config, data, run_dir) -> TrainResult``.
PIPELINES = {"r18": "cloudseg.train.fastai_r18", "r34": "cloudseg.train.torch_r34"}

EPILOG = """\b
Examples:
  cloudseg-train --model r18 ~/data/38-Cloud --epochs 10 --fine-tune-epochs 5
  cloudseg-train --model r34 demo/38cloud --size 128 --epochs 3 --no-pretrained --limit 64

The run folder (default: $CLOUDSEG_HOME/runs/<model>-<time>, CLOUDSEG_HOME defaulting to
~/.cache/cloudseg) receives best.pth, card.json, log.csv and the plots; cloudseg-export takes
the newest run of a model from there.
"""


@click.command(cls=OneLineCommand, epilog=EPILOG)
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--model",
    type=click.Choice(sorted(PIPELINES)),
    required=True,
    help="r18: fastai UNet on ResNet18; r34: PyTorch UNet on ResNet34.",
)
@out_dir_option("default: a new folder under $CLOUDSEG_HOME/runs", what="Run folder")
@click.option(
    "--size",
    type=int,
    default=192,
    show_default=True,
    help="Patch size of the first stage (patches are resized from 384).",
)
@click.option(
    "--fine-tune-size",
    type=int,
    default=384,
    show_default=True,
    help="Patch size of the fine-tuning stage; 0 skips it.",
)
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--fine-tune-epochs", type=click.IntRange(0), default=5, show_default=True)
@click.option("--bs", type=click.IntRange(1), default=8, show_default=True, help="Batch size.")
@click.option(
    "--lr",
    type=FiniteFloatRange(0, min_open=True),
    default=None,
    help="Learning rate (default: lr_find's suggestion for r18, 1e-3 for r34).",
)
@click.option("--lr-find-iters", type=click.IntRange(1), default=100, show_default=True)
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Use only N patches (smoke runs).")  # fmt: skip
@click.option(
    "--val-fraction",
    type=FiniteFloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of scenes held out for validation.",
)
@click.option("--nonempty", is_flag=True, help="Only patches in the dataset's _nonempty list.")
@click.option(
    "--stats",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="band_stats.json from cloudseg-eda (default: measure).",
)
@click.option(
    "--pretrained/--no-pretrained",
    default=True,
    show_default=True,
    help="Start from ImageNet weights in the local torch cache ($TORCH_HOME).",
)
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True,
              help="DataLoader workers.")  # fmt: skip
@click.option("--cache", is_flag=True, help="Keep patches in memory after the first epoch.")
@precision_option(
    "Training precision: auto is bf16 on CPUs with AMX or AVX512-BF16 and on GPUs that run it, "
    "fp16 with loss scaling on older GPUs, fp32 elsewhere. Checkpoints stay fp32."
)
@seed_option
@overwrite_option
@quiet_option
@one_line_errors
def main(
    data_dir: Path,
    model: str,
    out: Path | None,
    size: int,
    fine_tune_size: int,
    epochs: int,
    fine_tune_epochs: int,
    bs: int,
    lr: float | None,
    lr_find_iters: int,
    limit: int | None,
    val_fraction: float,
    nonempty: bool,
    stats: Path | None,
    pretrained: bool,
    workers: int,
    cache: bool,
    precision: str,
    seed: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Train a cloud-segmentation UNet on the training split of DATA_DIR."""
    from cloudseg.cli_options import progress_disabled, setup_logging
    from cloudseg.train.common import (
        TrainConfig,
        pick_device,
        seed_everything,
    )
    from cloudseg.train.data import prepare_data
    from cloudseg.train.models import MODELS, check_input_size
    from cloudseg.train.precision import resolve as resolve_precision
    from cloudseg.train.pretrained import require_cached
    from cloudseg.train.runs import new_run_dir

    setup_logging()
    # Everything that can be refused is checked before a run folder exists.
    for s in (size, fine_tune_size or 32):
        check_input_size(s, s)
    if pretrained:
        require_cached(MODELS[model].body)
    resolve_precision(precision, pick_device())  # fp16 on a CPU is refused here, not later
    config = TrainConfig(
        model=model,
        data_dir=data_dir,
        size=size,
        fine_tune_size=fine_tune_size or None,
        epochs=epochs,
        fine_tune_epochs=fine_tune_epochs,
        bs=bs,
        lr=lr,
        limit=limit,
        seed=seed,
        pretrained=pretrained,
        nonempty=nonempty,
        val_fraction=val_fraction,
        stats=stats,
        workers=workers,
        cache=cache,
        lr_find_iters=lr_find_iters,
        quiet=progress_disabled(quiet),
        precision=precision,
    )
    seed_everything(seed)
    data = prepare_data(data_dir, val_fraction, seed, limit, nonempty, stats)
    try:
        with new_run_dir(model, out, overwrite) as (run_dir, writing):
            result = _train(model, config, data, run_dir, writing)
    except _NothingToKeep:
        click.echo("training interrupted before a checkpoint: nothing written, and an earlier "
                   "run in the folder is kept", err=True)  # fmt: skip
        sys.exit(130)
    scores = ", ".join(f"{k} {v:.4f}" for k, v in sorted(result.scores.items()))
    click.echo(f"{run_dir}: best validation {scores}")
    if result.interrupted:
        click.echo("training interrupted: the best checkpoint so far is kept", err=True)
        sys.exit(130)


class _NothingToKeep(Exception):
    """Interrupted before the first checkpoint: the new run folder is discarded."""


def _train(model: str, config: Any, data: Any, run_dir: Path, writing: Path) -> Any:
    """Train into ``writing`` (renamed to ``run_dir`` when this returns) and write the card."""
    from cloudseg.train.common import run_card, save_run_card
    from cloudseg.train.runs import BEST_WEIGHTS

    log.info(
        "run folder %s: %d training patches (%d scenes), %d validation patches (%d scenes)",
        run_dir,
        len(data.train),
        len(data.train_scenes),
        len(data.valid),
        len(data.valid_scenes),
    )
    pipeline = importlib.import_module(PIPELINES[model])
    result = pipeline.train(config, data, writing)
    if result.interrupted and not (writing / BEST_WEIGHTS).is_file():
        raise _NothingToKeep
    save_run_card(writing, run_card(config, data, result.scores, result.history))
    return result
