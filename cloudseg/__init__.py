"""cloudseg: cloud segmentation for Landsat 8 imagery.

The base package (data readers, the engine) needs only numpy, rasterio and ONNX Runtime;
training and export live behind the ``[train]`` extra.

From Python (:mod:`cloudseg.api`)::

    import cloudseg
    toa = cloudseg.read_scene("LC08_L1TP_.../")          # xarray: TOA reflectance, NaN = no data
    mask = cloudseg.predict(toa, model="ukis-l1c")        # same grid: 0/1/2, 255 = no data
    outcome = cloudseg.mask_scenes(["a/", "b/"], out="masks/")   # what cloudseg-run does
"""

from cloudseg.api import mask_scenes, predict, read_scene

__version__ = "0.1.0"
__all__ = ["__version__", "mask_scenes", "predict", "read_scene"]
