"""The model card of ukis-csmask's 4-band Landsat Level-1 model, so ``cloudseg-run`` runs it.

ukis-csmask (DLR, Apache-2.0, https://github.com/dlr-eoc/ukis-csmask) ships ``model_4b_l1c.onnx``
and ``model_4b_l1c.json`` inside its package. What the model expects, read from ukis-csmask
1.0.0's ``mask.py`` and the ONNX graph:

* layout: NCHW. ``CSmask`` tiles an ``(H, W, C)`` image and moves the band axis to 1
  (``np.moveaxis(tiles, -1, 1)``) before ``session.run``; the graph's input is
  ``input: (batch_size, 4, 256, 256)`` float32. No Transpose adapter is needed: the engine's
  ``(N, 4, tile, tile)`` batches fit as they are.
* tile: fixed 256 x 256 (height and width are constants in the graph, ``target_size`` in the
  JSON), so the card's ``tile_size`` and ``size_multiple`` are both 256: any other tile is refused
  by the backend's shape check with one clear line instead of failing inside ONNX Runtime.
* bands: blue, green, red, nir (``dataset_statistics.band_names``); the engine permutes from its
  (red, green, blue, nir) contract by name.
* values: top-of-atmosphere reflectance in [0, 1], float32, with no further scaling;
  normalised ``(x - mean) / std`` per band with ``dataset_statistics.img = [mean, std]``.
* output: ``(batch, 3, 256, 256)`` logits (ukis applies ``scipy.special.softmax(axis=1)``), classes
  0 background (clear), 1 cloud, 2 cloud shadow; no fill class (no-data is handled outside
  the network). The graph's output labels its height axis ``batch_size`` (an export slip); ONNX
  Runtime does not enforce output dim names, so it runs with any batch size.
* decision: ``CSmask.csm`` is the argmax of the 3 blended softmax probabilities; ours is
  ``P(cloud) > threshold`` (0.5). They differ only where cloud is the largest of three
  probabilities but below one half; see ``tests/engine/test_ukis_csmask.py`` for the agreement.

``cloud_classes`` is ``("cloud",)`` alone: the engine's mask is 38-Cloud's cloud / clear, in which
a shadowed pixel is clear (the ground is seen, only darker) and the cloud cover in the summary
is the share of pixels that hide the ground. Adding shadow would raise cloud cover by the shadow
area and disagree with every truth the engine is scored against. ukis's own "valid" mask (cloud
or shadow, dilated) answers a different question: which pixels are usable for surface analysis.

Usage (ukis-csmask installed, see the README's "Foreign models")::

    python -m cloudseg.engine.foreign.ukis_csmask models/
    cloudseg-run SCENE --model models/model_4b_l1c.onnx --out masks/

or, for a copy of the model you already have (its ``.json`` beside it, else the packaged one)::

    python -c "from cloudseg.engine.foreign.ukis_csmask import write_card; write_card(PATH)"
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from cloudseg.card import InputTransform, ModelCard, sidecar_path, write_json
from cloudseg.errors import MissingFileError, ModelError

#: The one ukis-csmask model the engine can run: 4 bands, Level-1 (TOA reflectance). The 6-band
#: models need SWIR bands the engine does not read; the L2A ones want surface reflectance.
MODEL_STEM = "model_4b_l1c"
#: Class names in output-channel order, as ukis-csmask's ``CSmask._csm`` docstring names them.
CLASSES = ("background", "cloud", "cloud_shadow")
CLOUD_CLASSES = ("cloud",)
TILE = 256


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


def packaged_model() -> Path:
    """Path of the packaged ``model_4b_l1c.onnx``."""
    path = package_dir() / f"{MODEL_STEM}.onnx"
    if not path.is_file():
        raise MissingFileError(f"{path}: this ukis-csmask has no {MODEL_STEM}.onnx (need >= 1.0)")
    return path


def _metadata_path(model_path: Path) -> Path:
    """ukis's JSON for ``model_path``: beside it (ukis's own layout), else the packaged one."""
    beside = model_path.with_suffix(".json")
    return beside if beside.is_file() else package_dir() / f"{MODEL_STEM}.json"


def _ukis_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("ukis-csmask")
    except Exception:  # not installed as a distribution (e.g. a copied model); not needed
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_card(metadata: dict[str, Any], model_path: Path | None = None) -> ModelCard:
    """The card for ukis-csmask's 4-band L1C model from its parsed JSON metadata.

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
    if (
        bands != ("blue", "green", "red", "nir")
        or n_classes != len(CLASSES)
        or size
        != (
            TILE,
            TILE,
        )
    ):
        raise ModelError(
            f"not ukis-csmask's 4-band model: bands {bands}, {n_classes} classes, tile {size}"
        )
    extra: dict[str, Any] = {
        "source": "ukis-csmask (DLR), https://github.com/dlr-eoc/ukis-csmask, Apache-2.0",
        "ukis_csmask_version": _ukis_version(),
        "model_version": model.get("version"),
        "input_layout": "NCHW (batch, 4, 256, 256), fixed height and width",
        "output": "logits (batch, 3, 256, 256); ukis softmaxes over axis 1 and takes the argmax",
        "classes_meaning": "0 background (clear), 1 cloud, 2 cloud shadow; no fill class",
        "why_cloud_only": "the engine's mask is cloud / clear (38-Cloud): shadowed ground is "
        "seen, so it is clear; shadow would inflate cloud cover",
    }
    if model_path is not None:
        extra["model_file"] = model_path.name
        extra["sha256"] = _sha256(model_path)
    return ModelCard(
        name=f"ukis-csmask-{MODEL_STEM.removeprefix('model_').replace('_', '-')}",
        architecture=f"{model.get('decoder_name', 'unet')}-{model.get('encoder_name', '?')}",
        bands=bands,
        value_kind="toa_reflectance",
        # TOA reflectance goes in as it is (scale 1, offset 0), then ukis's per-band mean/std.
        transform=InputTransform(1.0, 0.0, tuple(map(float, mean)), tuple(map(float, std))),
        output_kind="softmax",
        classes=CLASSES,
        cloud_classes=CLOUD_CLASSES,
        tile_size=TILE,
        # The graph's height and width are constants: 256 is the only tile it accepts.
        size_multiple=TILE,
        training={
            "datasets": "SPARCS, CloudSEN12+ and custom samples (ukis-csmask >= 1.0 README)",
            "loss": model.get("loss_fn"),
            "class_weights": data.get("class_weights"),
            "encoder_weights": model.get("encoder_weights"),
        },
        extra=extra,
    )


def write_card(model_path: Path) -> Path:
    """Write the sidecar ``<model>.onnx.card.json`` for ukis-csmask's 4-band L1C model.

    Args:
        model_path: the ONNX file (the packaged one or a copy); its ``.json`` metadata is read
            from beside it if there, else from the installed package.

    Returns:
        The card's path.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise MissingFileError(f"{model_path}: no model file there")
    metadata_path = _metadata_path(model_path)
    try:
        metadata = json.loads(metadata_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{metadata_path}: cannot read ukis-csmask metadata ({exc})") from None
    card = make_card(metadata, model_path)
    out = sidecar_path(model_path)
    write_json(card, out)
    return out


def install_model(out_dir: Path, overwrite: bool = False) -> Path:
    """Copy the packaged model (and its JSON) to ``out_dir`` and write its card beside it.

    A copy, not a card inside site-packages: pip would not remove a file it did not install,
    and an upgrade of ukis-csmask would silently pair a new model with an old card.

    Returns:
        Path of the copied ONNX model, ready for ``cloudseg-run --model``.
    """
    src = packaged_model()
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
    """``python -m cloudseg.engine.foreign.ukis_csmask OUT_DIR [--overwrite]``."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help") or len(args) > 2:
        print(
            "usage: python -m cloudseg.engine.foreign.ukis_csmask OUT_DIR [--overwrite]\n"
            "Copies ukis-csmask's model_4b_l1c.onnx to OUT_DIR with a cloudseg card beside it."
        )
        return 0 if args and args[0] in ("-h", "--help") else 2
    try:
        model = install_model(Path(args[0]), overwrite="--overwrite" in args[1:])
    except (ModelError, MissingFileError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{model}\n{sidecar_path(model)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
