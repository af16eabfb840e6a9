"""Model cards for ONNX segmentation models made elsewhere, so ``cloudseg-run`` can run them.

A foreign model needs no code in the engine: a sidecar ``<model>.onnx.card.json`` says which bands
it eats in which order, in what values, normalised how, and which output classes are cloud. Each
module here knows one such model and writes its card.
"""
