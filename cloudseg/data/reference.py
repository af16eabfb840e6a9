"""The real reference set: the real Landsat items every precision, variant and default is judged
on (DESIGN.md, principle 1), found in one folder laid out as the project's shared data::

    <root>/biome-l8/<scene folder>/          16 L8 Biome tiles as Level-1 folders, with
                                             <id>_truth.TIF (0 clear, 1 cloud, 2 shadow, 255 fill)
    <root>/landsat-real/<product folder>/    real USGS products (Level-1, Level-2): no truth
    <root>/38cloud-sample/38-Cloud_training/ real 38-Cloud patches with cloud truth (DN only)

The root is ``$CLOUDSEG_REFERENCE``, else the ``shared/data`` folder beside this repository's
checkout (where the project keeps it). Items are Level-1 or Level-2 scenes that open through the
ordinary readers, so a judged answer is one ``cloudseg-run`` would give.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cloudseg.errors import MissingFileError

REFERENCE_ENV = "CLOUDSEG_REFERENCE"
#: Sub-folders of the root, by what they hold.
BIOME, PRODUCTS, CLOUD38 = "biome-l8", "landsat-real", "38cloud-sample/38-Cloud_training"
#: Suffix of a Biome tile's truth file inside its scene folder.
TRUTH_SUFFIX = "_truth.TIF"


@dataclass(frozen=True)
class ReferenceItem:
    """One real scene of the reference set.

    Attributes:
        name: the scene folder's name (a Landsat product id).
        path: the scene folder, as ``cloudseg-run`` takes it.
        group: ``biome-l8`` (labelled tiles) or ``landsat-real`` (products, no truth).
        truth: the truth GeoTIFF (cloudseg's mask codes), or None.
    """

    name: str
    path: Path
    group: str
    truth: Path | None = None

    @property
    def short(self) -> str:
        """The name with what tells items apart: path/row and processing level."""
        parts = self.name.split("_")
        return f"{parts[1]}_{parts[2]}" if len(parts) > 2 else self.name


def default_root() -> Path | None:
    """``$CLOUDSEG_REFERENCE``, else ``shared/data`` beside the checkout, if it exists."""
    env = os.environ.get(REFERENCE_ENV)
    if env:
        return Path(env).expanduser()
    beside = Path(__file__).resolve().parents[3] / "shared" / "data"
    return beside if beside.is_dir() else None


def reference_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The reference folder (``root`` or :func:`default_root`), checked to hold a set.

    Raises:
        MissingFileError: no such folder, or it holds neither ``biome-l8`` nor ``landsat-real``.
    """
    found = Path(root).expanduser() if root is not None else default_root()
    if found is None:
        raise MissingFileError(
            f"no real reference data: set {REFERENCE_ENV} to a folder holding {BIOME}/ and "
            f"{PRODUCTS}/ (the project's shared/data)"
        )
    if not ((found / BIOME).is_dir() or (found / PRODUCTS).is_dir()):
        raise MissingFileError(f"{found}: no {BIOME}/ or {PRODUCTS}/ folder of real scenes there")
    return found


def reference_items(root: str | os.PathLike[str] | None = None) -> list[ReferenceItem]:
    """Every real scene of the set: the Biome tiles (with truth), then the USGS products."""
    base = reference_root(root)
    items = []
    for group in (BIOME, PRODUCTS):
        folder = base / group
        for scene in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
            truth = scene / f"{scene.name}{TRUTH_SUFFIX}"
            found = truth if truth.is_file() else None
            items.append(ReferenceItem(scene.name, scene, group, found))
    return items


def cloud38_patches_dir(root: str | os.PathLike[str] | None = None) -> Path | None:
    """The real 38-Cloud training patches of the set, if it has them."""
    folder = reference_root(root) / CLOUD38
    return folder if folder.is_dir() else None
