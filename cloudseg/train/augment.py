"""Augmentations that are valid for satellite images, in numpy so both pipelines share them.

A nadir image has no "up": any of the 8 dihedral symmetries (rotations by 90 degrees, with or
without a flip) is another plausible image, and the mask moves with it. Brightness and contrast
jitter is applied to all bands alike so the spectral ratios that separate cloud from snow,
desert and water are kept; no-data pixels stay exactly 0 so validity is never blurred.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentSpec:
    """How strong the photometric jitter is; ``dihedral`` turns the geometric part on."""

    dihedral: bool = True
    brightness: float = 0.03  # additive, in units of dn / 65535 reflectance-like values
    contrast: float = 0.10  # multiplicative, around each patch's valid mean


def dihedral(array: np.ndarray, k: int) -> np.ndarray:
    """Apply symmetry ``k`` in ``0..7`` to the last two axes of ``array``."""
    out = np.rot90(array, k % 4, axes=(-2, -1))
    if k >= 4:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


def augment(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, spec: AugmentSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Randomly transform one patch.

    Args:
        image: ``(4, H, W)`` float32 scaled values (``dn / 65535``), 0 where no data.
        mask: ``(H, W)`` label array (any dtype).
        rng: the generator to draw from (one per worker, seeded, so runs repeat).
        spec: strengths.

    Returns:
        ``(image, mask)`` transformed, same shapes and dtypes.
    """
    if spec.dihedral:
        k = int(rng.integers(8))
        image, mask = dihedral(image, k), dihedral(mask, k)
    if spec.brightness or spec.contrast:
        valid = np.any(image != 0, axis=0)
        if valid.any():
            c = np.float32(1.0 + rng.uniform(-spec.contrast, spec.contrast))
            b = np.float32(rng.uniform(-spec.brightness, spec.brightness))
            centre = np.float32(image[:, valid].mean())
            jittered = np.clip((image - centre) * c + centre + b, 1e-6, 1.0)
            image = np.where(valid, jittered, np.float32(0)).astype(np.float32)
    return image, mask
