"""Model cards for ukis-csmask's 4-band Landsat models, so ``cloudseg-run`` runs them by name.

ukis-csmask (DLR, Apache-2.0, https://github.com/dlr-eoc/ukis-csmask) ships ``model_4b_l1c.onnx``
and ``model_4b_l2a.onnx`` with their ``.json`` metadata inside its package. What the models
expect, read from ukis-csmask 1.0.0's ``mask.py`` and the ONNX graphs:

* layout: NCHW, ``input: (batch_size, 4, 256, 256)`` float32 (``CSmask`` moves the band axis to
  1 before ``session.run``): the engine's ``(N, 4, tile, tile)`` batches fit as they are.
* tile: fixed 256 x 256 (constants in the graph, ``target_size`` in the JSON): the card says
  ``fixed_size``, so any other tile is refused in one line instead of inside ONNX Runtime.
* bands: blue, green, red, nir (``dataset_statistics.band_names``); the engine permutes from its
  (red, green, blue, nir) contract by name.
* values: reflectance in [0, 1], float32, no further scaling: top-of-atmosphere reflectance for
  ``l1c`` (from a Level-1 scene's MTL), surface reflectance for ``l2a`` (Collection 2 Level-2);
  normalised ``(x - mean) / std`` per band with ``dataset_statistics.img = [mean, std]``.
* output: ``(batch, 3, 256, 256)`` logits, softmaxed over axis 1: 0 background (clear), 1 cloud,
  2 cloud shadow; no fill class (no data is handled outside the network).
* decision: ``CSmask.csm`` is the argmax of the three blended probabilities; cloudseg's cloud is
  ``P(cloud) > threshold`` (0.5) and, with ``--shadow``, shadow where it is the likeliest class of
  a pixel that is not cloud; see ``tests/engine/test_ukis_csmask.py`` for the agreement.

Without ``--shadow`` the mask is cloud / clear (38-Cloud's classes): a shadowed pixel is clear,
since the ground is seen, only darker, and shadow would inflate cloud cover.

Usage::

    cloudseg-run SCENE --model ukis-l1c              # named: resolved by cloudseg.engine.models
    python -m cloudseg.engine.foreign.ukis_csmask models/   # or a copy with its card beside it
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from cloudseg.card import InputTransform, ModelCard, sidecar_path, write_json
from cloudseg.errors import MissingFileError, ModelError

#: Product level -> the packaged 4-band model and the value kind it reads. The 6-band models
#: need SWIR bands the engine does not read.
VARIANTS = {
    "l1c": ("model_4b_l1c", "toa_reflectance"),
    "l2a": ("model_4b_l2a", "surface_reflectance"),
}
#: Class names in output-channel order, as ukis-csmask's ``CSmask._csm`` docstring names them.
CLASSES = ("background", "cloud", "cloud_shadow")
CLOUD_CLASSES = ("cloud",)
SHADOW_CLASSES = ("cloud_shadow",)
TILE = 256
SOURCE = "ukis-csmask (DLR), https://github.com/dlr-eoc/ukis-csmask"
LICENCE = "Apache-2.0"


def package_dir() -> Path:
    """The installed ``ukis_csmask`` package folder, found without importing it.

    (Importing ``ukis_csmask.mask`` needs onnxruntime and scipy; finding the files needs neither.)

    Raises:
        ModelError: ukis-csmask is not installed.
    """
    spec = importlib.util.find_spec("ukis_csmask")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "ukis-csmask is not installed: pip install --no-deps 'ukis-csmask>=1.0' "
            "(its base dependencies, numpy and scipy, are already here)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def variant_of(stem: str) -> str:
    """``model_4b_l2a`` -> ``l2a``; a one-line error for a model this module has no card for."""
    for level, (model_stem, _) in VARIANTS.items():
        if stem == model_stem:
            return level
    raise ModelError(f"{stem}: not one of ukis-csmask's 4-band models ({', '.join(VARIANTS)})")


def packaged_model(level: str = "l1c") -> Path:
    """Path of the packaged 4-band model of ``level`` (``l1c`` or ``l2a``)."""
    if level not in VARIANTS:
        raise ModelError(f"unknown ukis-csmask level {level!r}; expected one of {list(VARIANTS)}")
    path = package_dir() / f"{VARIANTS[level][0]}.onnx"
    if not path.is_file():
        raise MissingFileError(f"{path}: this ukis-csmask has no {path.name} (need >= 1.0)")
    return path


def _ukis_version() -> str | None:
    try:
        return version("ukis-csmask")
    except PackageNotFoundError:  # a copied model without the package: not needed
        return None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_card(metadata: dict[str, Any], level: str, model_path: Path | None = None) -> ModelCard:
    """The card of one of ukis-csmask's 4-band models from its parsed JSON metadata.

    Raises:
        ModelError: the JSON is not that of a 4-band, 3-class, 256 px model.
    """
    try:
        data, model = metadata["data"], metadata["model"]
        stats = data["dataset_statistics"]
        bands = tuple(b.lower() for b in stats["band_names"])
        mean, std = stats["img"]
        size = tuple(data["target_size"])
        n_classes = int(data["classes"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"ukis-csmask model JSON lacks or mangles {exc}") from None
    if bands != ("blue", "green", "red", "nir") or n_classes != len(CLASSES) or size != (TILE,) * 2:
        raise ModelError(
            f"not ukis-csmask's 4-band model: bands {bands}, {n_classes} classes, tile {size}"
        )
    stem, value_kind = VARIANTS[level]
    extra: dict[str, Any] = {
        "source": SOURCE,
        "licence": LICENCE,
        "ukis_csmask_version": _ukis_version(),
        "model_version": model.get("version"),
        "input_layout": "NCHW (batch, 4, 256, 256), fixed height and width",
        "output": "logits (batch, 3, 256, 256); ukis softmaxes over axis 1 and takes the argmax",
        "classes_meaning": "0 background (clear), 1 cloud, 2 cloud shadow; no fill class",
    }
    if model_path is not None:
        extra["model_file"] = model_path.name
        extra["sha256"] = sha256(model_path)
    return ModelCard(
        name=f"ukis-csmask-{stem.removeprefix('model_').replace('_', '-')}",
        architecture=f"{model.get('decoder_name', 'unet')}-{model.get('encoder_name', '?')}",
        bands=bands,
        value_kind=value_kind,
        # Reflectance goes in as it is (scale 1, offset 0), then ukis's per-band mean/std.
        transform=InputTransform(1.0, 0.0, tuple(map(float, mean)), tuple(map(float, std))),
        output_kind="softmax",
        classes=CLASSES,
        cloud_classes=CLOUD_CLASSES,
        shadow_classes=SHADOW_CLASSES,
        tile_size=TILE,
        size_multiple=TILE,
        fixed_size=True,  # the graph's height and width are constants
        training={
            "data_origin": "real",
            "datasets": "SPARCS, CloudSEN12+ and custom samples (ukis-csmask >= 1.0 README)",
            "loss": model.get("loss_fn"),
            "class_weights": data.get("class_weights"),
            "encoder_weights": model.get("encoder_weights"),
        },
        extra=extra,
    )


def _metadata_path(model_path: Path) -> Path:
    """ukis's JSON for ``model_path``: beside it (ukis's own layout), else the packaged one."""
    beside = model_path.with_suffix(".json")
    return beside if beside.is_file() else package_dir() / f"{model_path.stem}.json"


def card_for_file(model_path: Path) -> ModelCard:
    """The card of a ukis-csmask 4-band model file (packaged or a copy), from its JSON."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise MissingFileError(f"{model_path}: no model file there")
    level = variant_of(model_path.resolve().stem)
    metadata_path = _metadata_path(model_path.resolve())
    try:
        metadata = json.loads(metadata_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{metadata_path}: cannot read ukis-csmask metadata ({exc})") from None
    return make_card(metadata, level, model_path)


def write_card(model_path: Path) -> Path:
    """Write the sidecar ``<model>.onnx.card.json`` for a ukis-csmask 4-band model.

    Returns:
        The card's path.
    """
    out = sidecar_path(model_path)
    write_json(card_for_file(Path(model_path)), out)
    return out


def install_model(out_dir: Path, level: str = "l1c", overwrite: bool = False) -> Path:
    """Copy the packaged model (and its JSON) to ``out_dir`` and write its card beside it.

    Returns:
        Path of the copied ONNX model, ready for ``cloudseg-run --model``.
    """
    src = packaged_model(level)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / src.name
    if dst.exists() and not overwrite:
        raise ModelError(f"{dst} exists; pass --overwrite to replace it")
    shutil.copyfile(src, dst)
    shutil.copyfile(src.with_suffix(".json"), dst.with_suffix(".json"))
    write_card(dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    """``python -m cloudseg.engine.foreign.ukis_csmask OUT_DIR [--level l1c|l2a] [--overwrite]``."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(
            "usage: python -m cloudseg.engine.foreign.ukis_csmask OUT_DIR [--level l1c|l2a] "
            "[--overwrite]\nCopies ukis-csmask's 4-band model to OUT_DIR with a cloudseg card."
        )
        return 0 if args else 2
    level = args[args.index("--level") + 1] if "--level" in args else "l1c"
    try:
        model = install_model(Path(args[0]), level, overwrite="--overwrite" in args[1:])
    except (ModelError, MissingFileError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{model}\n{sidecar_path(model)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
