"""The inference engine: tiled, overlap-blended, streamed scene inference (numpy, rasterio,
ONNX Runtime or OpenVINO; torch only behind the torch backend).

The road of a scene: reader threads -> bounded queue -> batcher -> backend -> blender -> writer
(``ARCHITECTURE.md`` at the repository root draws it; :mod:`~cloudseg.engine.pipeline` runs it).
"""
