"""``cloudseg-eval``: score cloud masks against ground truth."""

from __future__ import annotations

from pathlib import Path

import click

from cloudseg.cli_options import (
    OneLineGroup,
    one_line_errors,
    out_dir_option,
    overwrite_option,
    progress_disabled,
    quiet_option,
)

PATCHES_EPILOG = """\b
Examples:
  cloudseg-eval patches ~/.cache/cloudseg/runs/r18-20261126-101500 ~/data/38-Cloud --split test
  cloudseg-eval patches runs/r34 demo/38cloud --split train --scenes LC08_L1TP_...

Writes scores.json and scores.csv (per scene, mean over scenes, pooled) into --out.
"""


@click.group(cls=OneLineGroup)
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
@click.option("--bs", type=click.IntRange(1), default=4, show_default=True,
              help="Patches per forward pass.")  # fmt: skip
@out_dir_option("default: RUN_DIR/eval-<split>", what="Report folder")
@overwrite_option
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
    overwrite: bool,
    quiet: bool,
) -> None:
    """Score the best model of RUN_DIR on the 38-Cloud-layout patches of DATA_DIR."""
    from cloudseg.evaluate import check_report
    from cloudseg.train.evaluate_patches import evaluate, model_predictor
    from cloudseg.train.predict import load_run

    out = out or Path(run_dir) / f"eval-{split}"
    check_report(out, overwrite)  # an earlier score is never replaced without --overwrite

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
    _write_and_print(confusions, out)


def _write_and_print(confusions: dict, out: Path) -> None:
    from cloudseg.evaluate import report, write_report

    result = report(confusions)
    write_report(result, out)
    for label in ("mean_over_scenes", "pooled"):
        s = result[label]
        click.echo(f"{label:>16}: " + ", ".join(f"{k} {v:.4f}" for k, v in s.items()))
    click.echo(f"report in {out}")


SCENES_EPILOG = """\b
Examples:
  cloudseg-eval scenes out/LC08_..._cloudmask.tif --truth demo/scenes/LC08_.../
  cloudseg-eval scenes masks/*_cloudmask.tif --truth ~/data/38-Cloud/38-Cloud_test --out scores/
  cloudseg-eval scenes masks/LC08_L2SP_..._cloudmask.tif --truth qa

\b
Truth: the synthetic <id>_cloudmask_truth.TIF (0 clear, 1 cloud, 255 no data) or 38-Cloud's
Entire_scene_gts/edited_corrected_gts_<id>.TIF (0/1 or 0/255, compared by shape). A truth FILE
scores one mask; a FOLDER is searched for each mask's scene id (its name without
_cloudmask.tif). "--truth qa" scores against the scene's own USGS quality band (QA_PIXEL or
BQA cloud bit): the scene is the one the mask's <id>_summary.json names, or --scene. Pixels
that are no data (255) in the mask or the truth are not counted; shadow (2) is not cloud.
Writes scores.json and scores.csv (per scene, mean over scenes, pooled) into --out.
"""


@main.command(epilog=SCENES_EPILOG)
@click.argument("masks", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--truth",
    required=True,
    help="Truth raster (one mask), a folder searched for <id>_cloudmask_truth.TIF / "
    "edited_corrected_gts_<id>.TIF, or 'qa': the scene's own USGS quality band.",
)
@click.option(
    "--scene",
    default=None,
    help="With --truth qa: the scene of the (one) mask, when no summary beside it names it.",
)
@out_dir_option("default: the first mask's folder", what="Report folder")
@click.option("--chunk-rows", type=int, default=512, show_default=True, help="Rows read per block.")
@overwrite_option
@quiet_option
@one_line_errors
def scenes(
    masks: tuple[Path, ...],
    truth: str,
    scene: str | None,
    out: Path | None,
    chunk_rows: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Score MASK files (<id>_cloudmask.tif: 0 clear, 1 cloud, 255 no data) against truth."""
    from tqdm import tqdm

    from cloudseg.evaluate import check_report, evaluate_masks, mask_rows

    out = out or Path(masks[0]).parent
    check_report(out, overwrite)  # an earlier score is never replaced without --overwrite

    if chunk_rows < 1:
        raise click.BadParameter("must be >= 1", param_hint="--chunk-rows")
    if scene is not None and truth != "qa":
        raise click.BadParameter("--scene goes with --truth qa", param_hint="--scene")
    with tqdm(total=mask_rows(masks), unit="row", disable=progress_disabled(quiet)) as bar:
        if truth == "qa":
            from cloudseg.evaluate_qa import evaluate_against_qa

            confusions = evaluate_against_qa(list(masks), scene, chunk_rows, bar.update)
        else:
            confusions = evaluate_masks(masks, Path(truth), chunk_rows, progress=bar.update)
    _write_and_print(confusions, out)


PROVE_EPILOG = """\b
Examples:
  cloudseg-eval prove --model ukis-l1c --provider openvino --precision bf16
  cloudseg-eval prove --model ukis-l2a --provider openvino --precision bf16 --reference shared/data
  cloudseg-eval prove --model ~/.cache/cloudseg/runs/r34-20261126 --provider torch --precision bf16
  cloudseg-eval prove --model ukis-l1c --provider openvino --precision int8

Runs every real reference scene that gives the model's values (the L8 Biome tiles and the real
USGS products of --reference) in f32 and in PRECISION on the same runtime, and keeps the result
in $CLOUDSEG_HOME/proofs (int8: the model's -int8 file, cloudseg-export --int8, against the float
file on the same runtime). The precision is proven when the mask codes agree on at least 99.5 %
of the valid pixels of every scene; then --precision auto runs it for this model file, runtime
and CPU. Exit 0 either way: the verdict is printed and kept.
"""


@main.command(epilog=PROVE_EPILOG)
@click.option("--model", required=True, help="A named model, an ONNX file or a torch run folder.")
@click.option(
    "--provider",
    type=click.Choice(["openvino", "torch", "cpu", "cuda", "tensorrt"]),
    required=True,
    help="The runtime to prove the precision on.",
)
@click.option(
    "--precision",
    type=click.Choice(["bf16", "f16", "int8"]),
    required=True,
    help="The reduced precision to prove against f32: bf16/f16 run the model in that "
    "precision; int8 runs its -int8 file (cloudseg-export --int8) against the float file.",
)
@click.option(
    "--reference",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of real reference scenes (biome-l8/, landsat-real/); default "
    "$CLOUDSEG_REFERENCE, else the project's shared/data.",
)
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads.")
@quiet_option
@one_line_errors
def prove(
    model: str,
    provider: str,
    precision: str,
    reference: Path | None,
    threads: int | None,
    quiet: bool,
) -> None:
    """Prove (or disprove) that PRECISION gives fp32's masks on every real reference scene."""
    from cloudseg.engine import models, proof
    from cloudseg.engine.registry import make_backend
    from cloudseg.engine.run import model_card

    path = models.resolve(model)
    card = model_card(path)
    shadow = bool(card.shadow_classes)  # judge the codes the model can write, shadow included

    candidate = proof.candidate_file(path, precision)

    def make(p: str):  # noqa: ANN202
        file, run_in = (candidate, "f32") if p == "int8" else (path, p)
        return make_backend(file, provider, proof.options_for(run_in, card.tile_size, shadow,
                                                                threads))  # fmt: skip

    fast = make(precision)  # fails here, in one line, if this runtime cannot run PRECISION
    key = proof.key_for(fast, candidate, precision)
    fast.close()

    def say(name: str, value: float) -> None:
        if not quiet:
            mark = "" if value >= proof.MIN_AGREEMENT else "   <- below the bar"
            click.echo(f"  {name}: {100 * value:.2f} % equal to f32{mark}")

    result = proof.measure(key, make, reference, say)
    kept = proof.save(result)
    click.echo(f"{card.name}: {result.line()}")
    click.echo(f"kept in {kept}")
