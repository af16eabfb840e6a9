"""Models by name: what ``--model`` accepts besides a path, and what ``cloudseg-info --models``
lists.

* ``r18``, ``r34``: the files ``cloudseg-export --model NAME`` writes
  (``$CLOUDSEG_HOME/models/cloudseg-<name>.onnx``); trained here on 38-Cloud (or the demo's
  synthetic data).
* ``ukis-l1c``, ``ukis-l2a``: ukis-csmask's published 4-band Landsat models (DLR, Apache-2.0),
  from the installed ukis-csmask package, with cards cloudseg writes. The package's files are
  linked (not copied) into ``$CLOUDSEG_HOME/models/ukis-csmask/`` with the card beside them; the
  card carries the model's SHA-256 and is rewritten when the package's file changes, so an
  upgrade of ukis-csmask never pairs a new model with an old card.

With no ``--model``, ``cloudseg-run`` takes the right model for the first scene's product
(:func:`default_for`): an exported model trained on real data if there is one, else ukis-l1c for
Level-1 and ukis-l2a for Level-2 products; a model trained on synthetic scenes only is the
default only for synthetic scenes, and gets one warning line on a real product
(:func:`warn_if_synthetic`).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudseg.card import ModelCard, read, sidecar_path, write_json
from cloudseg.errors import CloudsegError, MissingFileError, ModelError
from cloudseg.home import DEFAULT_MODEL, default_model_path, models_dir


@dataclass(frozen=True)
class NamedModel:
    """One model ``--model NAME`` resolves to."""

    name: str
    what: str
    source: str  # "export" (trained here) or "ukis" (the ukis-csmask package)
    level: str | None = None  # ukis product level


NAMED: dict[str, NamedModel] = {
    m.name: m
    for m in (
        NamedModel("r18", "cloudseg fastai UNet on ResNet18, Level-1 DN (cloudseg-export)",
                   "export"),
        NamedModel("r34", "cloudseg UNet on ResNet34, Level-1 DN (cloudseg-export)", "export"),
        NamedModel("ukis-l1c", "ukis-csmask 4-band UNet/EfficientNet-B4, top-of-atmosphere "
                   "reflectance (Level-1 with MTL), cloud + shadow, Apache-2.0", "ukis", "l1c"),
        NamedModel("ukis-l2a", "ukis-csmask 4-band UNet/EfficientNet-B4, surface reflectance "
                   "(Collection 2 Level-2), cloud + shadow, Apache-2.0", "ukis", "l2a"),
    )
}  # fmt: skip


def resolve(model: str | os.PathLike[str] | None) -> Path:
    """The file (or run folder) ``--model`` names: a path, a name of :data:`NAMED`, or None.

    Raises:
        MissingFileError: no model given and none exported, or a named model that is not here
            (the message says how to get it and which named models exist).
    """
    if model is None:
        default = default_model_path(DEFAULT_MODEL)
        if default.is_file():
            return default
        raise MissingFileError(
            f"no --model given and no exported model at {default}: train and export one "
            f"(cloudseg-train --model r18 DATA, then cloudseg-export --model r18), or use a "
            f"named model: {', '.join(available_names()) or 'none installed'} "
            "(cloudseg-info --models lists them)"
        )
    text = os.fspath(model)
    if text not in NAMED:
        return Path(text)
    named = NAMED[text]
    if named.source == "export":
        path = default_model_path(named.name)
        if not path.is_file():
            raise MissingFileError(
                f"model {named.name}: not exported yet ({path}); run cloudseg-export --model "
                f"{named.name} after training it"
            )
        return path
    return _ukis_link(named)


#: The named model for a scene's value kind when no exported model trained on real data fits.
REAL_DEFAULTS = {"toa_reflectance": "ukis-l1c", "surface_reflectance": "ukis-l2a"}


def data_origin(path: Path) -> str | None:
    """What a model file was trained on, from its card: ``real``, ``synthetic``, ``none``, or
    None where the card does not say (cards written before it did)."""
    from cloudseg.engine.run import model_card

    try:
        return model_card(path).training.get("data_origin")
    except (CloudsegError, OSError):
        return None


def default_for(scene: Any) -> tuple[Path, str]:
    """The model for ``scene`` when no ``--model`` is given, and why, in one line.

    An exported model (r18, then r34) trained on real data that reads a value kind the scene
    gives; else ukis-l1c / ukis-l2a by the scene's value kinds (TOA reflectance for Level-1 with
    an MTL, surface reflectance for Level-2); else, for a synthetic scene or a product with
    only DN, the exported r18 (trained on synthetic data or not).

    Raises:
        MissingFileError: nothing fits (the message names what to install or export).
    """
    from cloudseg.data.synthetic_write import is_synthetic_folder

    synthetic = is_synthetic_folder(scene.source)
    exported = [(n, default_model_path(n)) for n, m in NAMED.items() if m.source == "export"]
    for name, path in exported:
        if path.is_file() and data_origin(path) == "real":
            return path, f"{name}, exported and trained on real data"
    if not synthetic:
        for kind, name in REAL_DEFAULTS.items():
            if kind in scene.value_kinds and why_missing(name) is None:
                return resolve(name), f"{name}, the default for {scene.product}"
    return resolve(None), f"{DEFAULT_MODEL}, the exported model" + (
        " (a synthetic scene)" if synthetic else "")  # fmt: skip


def warn_if_synthetic(card: ModelCard, path: Path, scene: Any) -> str | None:
    """One warning line when a model trained on synthetic scenes only meets a real product it
    can read (None otherwise; one it cannot read is refused, not warned of), naming the real
    alternative."""
    from cloudseg.data.synthetic_write import is_synthetic_folder

    if (
        card.training.get("data_origin") != "synthetic"
        or card.value_kind not in (scene.value_kinds)
        or is_synthetic_folder(scene.source)
    ):
        return None
    real = next((n for k, n in REAL_DEFAULTS.items() if k in scene.value_kinds), "ukis-l1c")
    return (f"{Path(path).name} was trained on synthetic scenes only; on a real product such as "
            f"{scene.scene_id} use a model trained on real data, e.g. --model {real}")  # fmt: skip


def _ukis_link(named: NamedModel) -> Path:
    """``$CLOUDSEG_HOME/models/ukis-csmask/<model>.onnx``: a link to the packaged file, with a
    current card beside it."""
    from cloudseg.engine.foreign import ukis_csmask

    packaged = ukis_csmask.packaged_model(named.level or "l1c")
    folder = models_dir() / "ukis-csmask"
    link = folder / packaged.name
    folder.mkdir(parents=True, exist_ok=True)
    if not (link.exists() and link.resolve() == packaged.resolve()):
        tmp = folder / f".{packaged.name}.{uuid.uuid4().hex[:8]}"
        try:
            os.symlink(packaged, tmp)
        except OSError:  # no symlinks on this file system: copy once instead
            import shutil

            shutil.copyfile(packaged, tmp)
        os.replace(tmp, link)
    card_path = sidecar_path(link)
    current = ukis_csmask.card_for_file(link)
    try:
        stale = read(link) != current
    except CloudsegError:
        stale = True
    if stale:
        tmp_card = card_path.with_name(f".{card_path.name}.{uuid.uuid4().hex[:8]}")
        write_json(current, tmp_card)
        os.replace(tmp_card, card_path)
    return link


def available_names() -> list[str]:
    """Named models that resolve here (exported, or their package installed)."""
    return [name for name in NAMED if why_missing(name) is None]


def why_missing(name: str) -> str | None:
    """None if named model ``name`` can run here, else why not."""
    named = NAMED[name]
    if named.source == "export":
        path = default_model_path(named.name)
        return None if path.is_file() else f"not exported yet ({path})"
    import importlib.util

    if importlib.util.find_spec("ukis_csmask") is None:
        return "ukis-csmask is not installed (pip install --no-deps 'ukis-csmask>=1.0')"
    return None


def list_models() -> list[dict[str, Any]]:
    """Named models (with whether they run here) and every ONNX file in the models folder."""
    out: list[dict[str, Any]] = []
    for name, named in NAMED.items():
        why = why_missing(name)
        out.append({"name": name, "what": named.what, "available": why is None,
                    **({"missing": why} if why else {})})  # fmt: skip
    folder = models_dir()
    named_files = {default_model_path(n).name for n, m in NAMED.items() if m.source == "export"}
    for path in sorted(folder.glob("*.onnx")) if folder.is_dir() else []:
        if path.name in named_files and path.stem.removeprefix("cloudseg-") in NAMED:
            continue
        out.append(_file_entry(path))
    for entry in out:
        if (
            entry["name"] in NAMED
            and entry["available"]
            and NAMED[entry["name"]].source == "export"
        ):
            entry |= _file_entry(default_model_path(entry["name"]), name=entry["name"])
        if entry["available"]:
            path = Path(entry["path"]) if "path" in entry else resolve(entry["name"])
            entry |= _proven(path)
    return out


def _proven(path: Path) -> dict[str, Any]:
    """What the model was trained on, and its kept precision proofs (its own and its int8
    file's), one line each."""
    from cloudseg.engine import proof
    from cloudseg.home import variant_path

    int8 = variant_path(path, "int8") if path.suffix == ".onnx" else None
    files = [path, *([int8] if int8 is not None and int8.is_file() else [])]
    lines = [line for f in files for line in proof.summary_of(proof.load_records(proof.sha256(f)))]
    return {
        "trained_on": data_origin(path) or "not on its card",
        "precisions": ["f32: the reference", *lines] if lines else [
            "f32 only: no reduced precision proven (cloudseg-eval prove)"],
    }  # fmt: skip


def _file_entry(path: Path, name: str | None = None) -> dict[str, Any]:
    try:
        card = read(path)
    except (ModelError, MissingFileError) as exc:
        return {"name": name or str(path), "available": False, "missing": str(exc)}
    return {
        "name": name or str(path),
        "path": str(path),
        "available": True,
        "card": card.name,
        "value_kind": card.value_kind,
        "classes": list(card.classes),
        "tile": card.tile_size,
        "scores": json.loads(json.dumps(card.scores, default=str)),
    }
