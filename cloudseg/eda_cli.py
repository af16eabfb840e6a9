"""``cloudseg-eda``: exploratory data analysis of a 38-Cloud-layout dataset."""

from __future__ import annotations

from pathlib import Path

import click

from cloudseg.cli_options import (
    OneLineCommand,
    one_line_errors,
    out_dir_option,
    overwrite_option,
    progress_disabled,
    quiet_option,
)
from cloudseg.data.cloud38 import SPLITS
from cloudseg.eda import run_eda


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("data_dir", type=click.Path(path_type=Path))
@out_dir_option("")
@click.option(
    "--split",
    type=click.Choice(list(SPLITS)),
    default="train",
    show_default=True,
    help="Split to analyse (train95: 95-Cloud's additional training scenes).",
)
@click.option(
    "--samples",
    type=click.IntRange(min=0),
    default=16,
    show_default=True,
    help="Sample patches drawn in samples.png (0: none).",
)
@overwrite_option
@quiet_option
@one_line_errors
def main(data_dir: Path, out: Path, split: str, samples: int, overwrite: bool, quiet: bool) -> None:
    """Analyse the 38-Cloud-layout dataset in DATA_DIR and write a report folder.

    DATA_DIR is the dataset root (holding 38-Cloud_training) or a split folder itself. The report
    gives the cloud share of valid pixels (overall and per scene), a histogram of cloud fraction
    per patch, the share of empty and of cloud-free patches, sample patches in false colour with
    their mask outlined, and band_stats.json: the per-band mean and std of valid dn / 65535 that
    training normalises with.

    \b
    Example:
      cloudseg-eda data/38-Cloud --out reports/eda --samples 16 --overwrite
    """
    summary = run_eda(
        data_dir,
        out,
        split=split,
        samples=samples,
        overwrite=overwrite,
        progress=not progress_disabled(quiet),
    )
    share = summary["cloud_share"]
    cloud = "no ground truth" if share is None else f"cloud share {100 * share:.2f} %"
    click.echo(
        f"{out}: {summary['n_patches']} patches, {summary['n_empty']} empty, {cloud}; "
        f"see {out / 'summary.md'}"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
