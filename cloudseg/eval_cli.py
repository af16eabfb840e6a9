"""``cloudseg-eval``: score cloud masks against ground truth."""

from __future__ import annotations

from pathlib import Path

import click

from cloudseg.cli_options import one_line_errors, progress_disabled, quiet_option

PATCHES_EPILOG = """\b
Examples:
  cloudseg-eval patches ~/.cache/cloudseg/runs/r18-20261126-101500 ~/data/38-Cloud --split test
  cloudseg-eval patches runs/r34 demo/38cloud --split train --scenes LC08_L1TP_...

Writes scores.json and scores.csv (per scene, mean over scenes, pooled) into --out.
"""


@click.group()
def main() -> None:
    """Score cloud masks against ground truth (Jaccard, precision, recall, specificity,
    accuracy, dice), per scene, as the mean over scenes and pooled."""


@main.command(epilog=PATCHES_EPILOG)
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--split",
    type=click.Choice(["train", "test", "train95"]),
    default="test",
    show_default=True,
    help="test: stitched scenes vs Entire_scene_gts.",
)
@click.option("--scenes", multiple=True, help="Only these scene ids (repeatable).")
@click.option("--threshold", type=float, default=None, help="Default: the card's threshold.")
@click.option("--bs", type=int, default=4, show_default=True, help="Patches per forward pass.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Report folder (default: RUN_DIR/eval-<split>).",
)
@quiet_option
@one_line_errors
def patches(
    run_dir: Path,
    data_dir: Path,
    split: str,
    scenes: tuple[str, ...],
    threshold: float | None,
    bs: int,
    out: Path | None,
    quiet: bool,
) -> None:
    """Score the best model of RUN_DIR on the 38-Cloud-layout patches of DATA_DIR."""
    from cloudseg.train.evaluate_patches import evaluate, model_predictor, report, write_report
    from cloudseg.train.predict import load_run

    model, card = load_run(run_dir)
    confusions = evaluate(
        data_dir,
        split,
        model_predictor(model, card, bs),
        card.threshold if threshold is None else threshold,
        scenes or None,
        bs,
        progress=not progress_disabled(quiet),
    )
    result = report(confusions)
    out = out or Path(run_dir) / f"eval-{split}"
    write_report(result, out)
    for label in ("mean_over_scenes", "pooled"):
        s = result[label]
        click.echo(f"{label:>16}: " + ", ".join(f"{k} {v:.4f}" for k, v in s.items()))
    click.echo(f"report in {out}")
