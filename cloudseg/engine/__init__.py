"""The inference engine: tiled, overlap-blended, streamed scene inference (numpy, rasterio,
ONNX Runtime; torch only behind the torch backend).

The road of a scene: reader threads -> bounded queue -> batcher -> backend -> blender -> writer
(see ``../shared/DESIGN.md``).
"""
