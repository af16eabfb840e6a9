"""What a SCENE argument names, opened as a :class:`cloudseg.scene.Scene`.

One place turns the words a user types into a scene, so every command accepts the same things:

* ``<split folder>::<scene id>`` or a 38-Cloud split folder: a 38-Cloud scene
  (:mod:`cloudseg.data.cloud38_scene`);
* a Landsat 8/9 scene folder or a 4-band GeoTIFF (:mod:`cloudseg.data.landsat`).
"""

from __future__ import annotations

import os

from cloudseg.data.cloud38_scene import is_cloud38_path, open_cloud38_scene
from cloudseg.data.landsat import open_scene
from cloudseg.scene import Scene


def open_any(spec: str | os.PathLike[str]) -> Scene:
    """Open the scene ``spec`` names; reads headers only.

    Raises:
        SceneError: the scene cannot be read as the band contract needs (one line).
    """
    if is_cloud38_path(spec):
        return open_cloud38_scene(spec)
    return open_scene(spec)
