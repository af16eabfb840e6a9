"""cloudseg: cloud segmentation for Landsat 8 imagery.

The base package (data readers, the engine) needs only numpy, rasterio and ONNX Runtime;
training and export live behind the ``[train]`` extra.
"""

__version__ = "0.1.0"
