"""``cloudseg-synth``: synthetic Landsat 8 scene folders and 38-Cloud-layout datasets."""

from __future__ import annotations

from pathlib import Path

import click
from tqdm import tqdm

from cloudseg.atomic import check_writable
from cloudseg.cli_options import (
    FiniteFloatRange,
    OneLineGroup,
    one_line_errors,
    overwrite_option,
    progress_disabled,
    quiet_option,
    seed_option,
)
from cloudseg.data.cloud38 import PATCH_SIZE
from cloudseg.data.synthetic import make_scene, random_spec
from cloudseg.data.synthetic_dataset import write_38cloud_dataset
from cloudseg.data.synthetic_level2 import level2_product_id, write_level2_folder
from cloudseg.data.synthetic_write import write_scene_folder

_out_dir = click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Make synthetic Landsat 8 data: one Level-1 scene folder, or a 38-Cloud-layout dataset.

    Scenes are seeded and reproducible: uint16 DN in realistic ranges for B2-B5, a rotated
    no-data collar, land, water, snow and sand, thick and thin clouds with shadows, and the true
    cloud mask.

    \b
    Examples:
      cloudseg-synth scene demo/scene --size 2000 --seed 1 --cloud-fraction 0.3
      cloudseg-synth dataset demo/38cloud --train-scenes 6 --test-scenes 2 --size 1152 --seed 0
    """


@main.command()
@_out_dir
@click.option(
    "--size", type=click.IntRange(min=64), default=2000, show_default=True, help="Scene side, px."
)
@click.option(
    "--cloud-fraction",
    type=FiniteFloatRange(0.0, 1.0),
    default=None,
    help="Share of valid pixels that are cloud (default: drawn from the seed).",
)
@click.option(
    "--level",
    type=click.Choice(["1", "2"]),
    default="1",
    show_default=True,
    help="1: a Collection 1 Level-1 folder (DN); 2: a Collection 2 Level-2 folder (surface "
    "reflectance, QA_PIXEL, MTL text and JSON).",
)
@seed_option
@overwrite_option
@quiet_option
@one_line_errors
def scene(
    out_dir: Path,
    size: int,
    cloud_fraction: float | None,
    level: str,
    seed: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Write one scene folder: OUT_DIR itself (Collection 1 Level-1, or with --level 2 the
    Collection 2 Level-2 layout).

    OUT_DIR gets <id>_B2.TIF ... <id>_B5.TIF (Level-2: <id>_SR_B2.TIF ... and
    <id>_QA_PIXEL.TIF), <id>_MTL.txt and <id>_cloudmask_truth.TIF (0 clear, 1 cloud, 255 no
    data), where <id> is a product id derived from the seed.

    \b
    Example:
      cloudseg-synth scene demo/scene --size 2000 --seed 1 --cloud-fraction 0.3
    """
    check_writable(out_dir, overwrite)  # refuse before the work, not after
    spec = random_spec(seed, size, cloud_fraction=cloud_fraction)
    with tqdm(total=2, desc="scene", unit="step", disable=progress_disabled(quiet)) as bar:
        synthetic = make_scene(spec)
        bar.update()
        write = write_level2_folder if level == "2" else write_scene_folder
        paths = write(synthetic, out_dir, overwrite=overwrite)
        bar.update()
    product = level2_product_id(synthetic) if level == "2" else spec.product_id
    click.echo(
        f"wrote {out_dir}: {product}, {size} x {size} px, "
        f"cloud cover {synthetic.cloud_cover:.1f} % of valid pixels"
    )
    for path in paths.values():
        click.echo(f"  {path.name}")


@main.command()
@_out_dir
@click.option("--train-scenes", type=click.IntRange(min=0), default=6, show_default=True)
@click.option("--test-scenes", type=click.IntRange(min=0), default=2, show_default=True)
@click.option(
    "--size", type=click.IntRange(min=64), default=1152, show_default=True, help="Scene side, px."
)
@click.option(
    "--patch-size",
    type=click.IntRange(min=16),
    default=PATCH_SIZE,
    show_default=True,
    help="Patch side, px (38-Cloud uses 384).",
)
@seed_option
@overwrite_option
@quiet_option
@one_line_errors
def dataset(
    out_dir: Path,
    train_scenes: int,
    test_scenes: int,
    size: int,
    patch_size: int,
    seed: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Write a 38-Cloud-layout dataset of synthetic scenes to OUT_DIR.

    Scenes are split into train and test whole; each is zero-padded (centred) to a multiple of
    the patch size and cut into patches named as in 38-Cloud. Cloud fractions vary from
    near-clear to mostly cloudy.

    \b
    Example:
      cloudseg-synth dataset demo/38cloud --train-scenes 6 --test-scenes 2 --size 1152 --seed 0
    """
    if train_scenes + test_scenes < 1:
        raise click.BadParameter("give at least one scene", param_hint="--train-scenes")
    check_writable(out_dir, overwrite)
    total = train_scenes + test_scenes
    with tqdm(total=total, desc="scenes", unit="scene", disable=progress_disabled(quiet)) as bar:
        summary = write_38cloud_dataset(
            out_dir,
            train_scenes=train_scenes,
            test_scenes=test_scenes,
            size=size,
            seed=seed,
            patch_size=patch_size,
            overwrite=overwrite,
            on_scene=lambda _: bar.update(),
        )
    click.echo(
        f"wrote {out_dir}: {train_scenes} train scenes ({summary.patches['train']} patches, "
        f"{summary.nonempty} non-empty), {test_scenes} test scenes "
        f"({summary.patches['test']} patches) of {size} x {size} px, {patch_size} px patches"
    )
