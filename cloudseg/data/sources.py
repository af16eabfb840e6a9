"""What a SCENE argument names, opened as a :class:`cloudseg.scene.Scene`.

One place turns the words a user types into a scene, so every command accepts the same things:

* ``<split folder>::<scene id>`` or a 38-Cloud split folder: a 38-Cloud scene
  (:mod:`cloudseg.data.cloud38_scene`);
* a STAC item, a local ``.json`` file or an http(s) URL (:mod:`cloudseg.data.stac`);
* the http(s) or ``s3://`` URL of a 4-band COG (read window by window, :mod:`cloudseg.data.remote`);
* a Landsat 8/9 scene folder or a 4-band GeoTIFF (:mod:`cloudseg.data.landsat`).

A manifest, ``@scenes.txt``, names one of these per line (:func:`read_manifest`).
"""

from __future__ import annotations

import os
from pathlib import Path

from cloudseg.data import remote
from cloudseg.data.cloud38_scene import is_cloud38_path, open_cloud38_scene
from cloudseg.data.landsat import open_scene, open_stack
from cloudseg.data.stac import is_item, open_item
from cloudseg.errors import DataError, MissingFileError
from cloudseg.scene import Scene


def open_any(spec: str | os.PathLike[str]) -> Scene:
    """Open the scene ``spec`` names; reads headers (and metadata) only, never pixels.

    Raises:
        SceneError: the scene cannot be read as the band contract needs (one line).
    """
    text = os.fspath(spec)
    if is_item(text):
        return open_item(text)
    if remote.is_url(text):
        return open_stack(remote.gdal_name(text), source=text, remote=True)
    if is_cloud38_path(spec):
        return open_cloud38_scene(spec)
    return open_scene(spec)


def read_manifest(path: str | os.PathLike[str]) -> list[str]:
    """The scenes a manifest lists: one per line; blank lines and lines starting with ``#``
    skipped; relative paths are relative to the manifest's folder.

    Raises:
        MissingFileError: no manifest there.
    """
    manifest = Path(path)
    try:
        lines = manifest.read_text().splitlines()
    except OSError as exc:
        raise MissingFileError(f"{manifest}: cannot read the manifest ({exc.strerror})") from None
    out = []
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.startswith("@"):  # read as a path it would fail later, far from its cause
            raise DataError(
                f"{manifest}, line {number}: {entry} names another manifest; manifests are not "
                "nested: list its scenes here, or pass both on the command line"
            )
        if remote.is_url(entry) or Path(entry).is_absolute():
            out.append(entry)
        else:
            out.append(str(manifest.parent / entry))
    return out


def expand(specs: list[str]) -> list[str]:
    """Command-line SCENE arguments with every ``@manifest`` replaced by its lines."""
    out = []
    for spec in specs:
        out.extend(read_manifest(spec[1:]) if spec.startswith("@") else [spec])
    return out
