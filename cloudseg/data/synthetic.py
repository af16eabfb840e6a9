"""Synthetic Landsat 8 scenes: seeded, fast, and realistic enough to train a cloud UNet on.

A scene is built in top-of-atmosphere (TOA) reflectance and converted to Level-1 digital numbers
with the real OLI rescaling (``DN = (rho * sin(sun elevation) + 0.1) / 2e-5``), so the MTL written
beside it converts the DNs back to the reflectances used here. Levels were calibrated against the
12 real 38-Cloud patches (the sample the tests read; clear land ~7,000-20,000 DN, clouds
~10,000-45,000 DN, blue above red over clear land, NIR highest over vegetation).

Every layer is a vectorised function of FFT-filtered noise; there are no per-pixel Python loops.
Each layer draws from its own child of the scene seed, so changing the cloud fraction leaves the
land underneath unchanged. The parameters live in :mod:`cloudseg.data.synthetic_spec`, random
fields in :mod:`cloudseg.data.synthetic_fields`, writers in :mod:`cloudseg.data.synthetic_write`
(scene folders) and :mod:`cloudseg.data.synthetic_dataset` (38-Cloud layout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cloudseg.data.synthetic_fields import (
    collar_mask,
    dunes,
    hillshade,
    noise_field,
    parcels,
    shift,
    sigmoid,
    smoothstep,
    top_fraction,
)
from cloudseg.data.synthetic_spec import SceneSpec, random_spec, sun_position, wrs_centre

__all__ = [
    "CLEAR",
    "CLOUD",
    "CLOUD_TAU",
    "MASK_NODATA",
    "REFLECTANCE_ADD",
    "REFLECTANCE_MULT",
    "SceneSpec",
    "SyntheticScene",
    "cloud_thickness",
    "compose",
    "land_cover",
    "make_scene",
    "random_spec",
    "shadow_offset",
    "sun_position",
    "wrs_centre",
]

#: Level-1 reflectance rescaling of every OLI band (MTL ``REFLECTANCE_MULT/ADD_BAND_n``).
REFLECTANCE_MULT = 2.0e-5
REFLECTANCE_ADD = -0.1

#: Truth-mask values: clear, cloud, no data.
CLEAR, CLOUD, MASK_NODATA = 0, 1, 255

#: Cloud optical thickness above which the truth says cloud; thinner haze counts as clear.
CLOUD_TAU = 0.2

# Surface reflectance per cover type in contract band order (red, green, blue, nir).
_SPECTRA = {
    "forest": (0.030, 0.055, 0.030, 0.33),
    "crop": (0.060, 0.090, 0.050, 0.30),
    "soil": (0.200, 0.160, 0.120, 0.27),
    "water": (0.025, 0.045, 0.055, 0.012),
    # Snow and sand are the false friends: as bright as cloud in the visible. Snow is told apart
    # only by a lower NIR/visible ratio and rough, terrain-shaded texture; sand by red > blue.
    "snow": (0.74, 0.77, 0.80, 0.62),
    "sand": (0.40, 0.33, 0.24, 0.45),
}
# Rayleigh + aerosol path reflectance: strongest in blue, which is why clear land is bluish in DN.
_PATH = (0.030, 0.045, 0.075, 0.010)
# Cloud colour: nearly white; NIR slightly higher, as in the real patches.
_CLOUD_COLOUR = (1.00, 0.99, 0.98, 1.05)
# Share of light a cloud shadow removes; diffuse sky light is bluish, so blue darkens least.
_SHADOW_DEPTH = (0.60, 0.58, 0.45, 0.70)
# Sensor noise, in DN.
_NOISE_DN = 25.0


@dataclass(frozen=True, eq=False)
class SyntheticScene:
    """A generated scene.

    Attributes:
        spec: what made it.
        bands: ``(4, H, W)`` uint16 Level-1 DN in contract order (red, green, blue, nir); 0 outside
            the collar, at least 1 inside.
        mask: ``(H, W)`` uint8 truth: 0 clear, 1 cloud, 255 no data.
        layers: ``(H, W)`` diagnostics: ``water``, ``snow``, ``sand`` (bool), ``shadow`` (float32
            shadow opacity 0-1) and ``tau`` (float32 cloud optical thickness).
    """

    spec: SceneSpec
    bands: np.ndarray
    mask: np.ndarray
    layers: dict[str, np.ndarray]

    @property
    def cloud_cover(self) -> float:
        """Percentage of valid pixels that are cloud (MTL ``CLOUD_COVER``)."""
        valid = np.count_nonzero(self.mask != MASK_NODATA)
        return 100.0 * np.count_nonzero(self.mask == CLOUD) / max(valid, 1)


def land_cover(
    rng: np.random.Generator, spec: SceneSpec
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Surface reflectance of the ground: vegetation and soil, fields, sand, snow, water.

    Returns:
        ``(4, H, W)`` float32 surface reflectance in contract order, and bool ``(H, W)`` layers
        ``water``, ``snow`` and ``sand``.
    """
    shape = spec.shape
    side = min(shape)
    spectra = {k: np.asarray(v, np.float32)[:, None, None] for k, v in _SPECTRA.items()}
    elevation = noise_field(rng, shape, beta=3.6, scale=side) + 0.15 * noise_field(
        rng, shape, beta=3.0, scale=side / 10
    )
    shade = hillshade(elevation, spec.sun_azimuth, spec.sun_elevation, spec.relief)

    green = sigmoid(1.5 * noise_field(rng, shape, beta=2.6, scale=side / 3) + spec.vegetation)
    surface = spectra["soil"] + (spectra["forest"] - spectra["soil"]) * green
    # Farmland: brick-like parcels of crop or bare soil in part of the scene.
    farm = smoothstep(noise_field(rng, shape, beta=3.0, scale=side / 2), 0.0, 0.6)
    crops = parcels(rng, shape, rng.uniform(8, 25), rng.uniform(0, 90))
    fields = spectra["soil"] + (spectra["crop"] - spectra["soil"]) * crops
    surface += (fields - surface) * farm
    surface *= 1.0 + 0.06 * noise_field(rng, shape, beta=2.4, scale=side / 10)

    sand_w = snow_w = np.zeros(shape, np.float32)
    if spec.desert_fraction > 0:
        sand_field = noise_field(rng, shape, beta=3.2, scale=side / 2)
        sand_w = top_fraction(sand_field, spec.desert_fraction, 0.15)
        ridges = dunes(rng, shape, rng.uniform(6, 14), rng.uniform(0, 180))
        surface += (spectra["sand"] * (0.92 + 0.16 * ridges) - surface) * sand_w
    surface *= shade
    if spec.snow_fraction > 0:
        ragged = elevation + 0.2 * noise_field(rng, shape, beta=2.0)
        snow_w = top_fraction(ragged, spec.snow_fraction, 0.08)
        # Snow is rougher than cloud: it carries twice the terrain shading.
        surface += (spectra["snow"] * np.clip(2.0 * shade - 1.0, 0.3, 1.3) - surface) * snow_w
    water_w = top_fraction(-elevation, spec.water_fraction, 0.03)
    surface += (spectra["water"] - surface) * water_w
    layers = {"water": water_w > 0.5, "snow": snow_w > 0.5, "sand": sand_w > 0.5}
    return surface, layers


def cloud_thickness(rng: np.random.Generator, spec: SceneSpec, valid: np.ndarray) -> np.ndarray:
    """Cloud optical thickness whose cloudy share of valid pixels is exactly ``cloud_fraction``.

    A smooth potential ``p`` is cut at its ``1 - cloud_fraction`` quantile ``q``; thickness is
    ``CLOUD_TAU + gain * (p - q)``, clipped at 0. Because ``gain > 0`` everywhere, the truth
    (``tau > CLOUD_TAU``) is exactly ``p > q``, whatever the gain. A slowly varying gain makes
    thick clouds (sharp, opaque) in some parts and thin ones (wide haze, see-through) in others.

    Returns:
        ``(H, W)`` float32, >= 0.
    """
    shape, s = spec.shape, spec.cloud_scale_px
    p = noise_field(rng, shape, beta=3.0, scale=s) + 0.15 * noise_field(
        rng, shape, beta=2.5, scale=s / 4
    )
    if spec.cirrus > 0:
        streaks = noise_field(
            rng, shape, beta=2.6, scale=2 * s, anisotropy=6.0, angle_deg=rng.uniform(0, 180)
        )
        p = (1 - spec.cirrus) * p + spec.cirrus * streaks * float(p.std())
    if spec.cloud_fraction <= 0:
        q = float(p.max()) + 10.0
    elif spec.cloud_fraction >= 1:
        q = float(p.min()) - 1e-3
    else:
        q = float(np.quantile(p[valid] if valid.any() else p, 1.0 - spec.cloud_fraction))
    thick_logit = math.log((1 - spec.thin_cloud_share + 1e-3) / (spec.thin_cloud_share + 1e-3))
    thick = sigmoid(2.0 * noise_field(rng, shape, beta=2.5, scale=2 * s) + thick_logit)
    gain = np.exp(np.float32(math.log(0.8)) + np.float32(math.log(40 / 0.8)) * thick)
    tau = CLOUD_TAU + gain * (p - np.float32(q))
    return np.maximum(tau, 0.0, out=tau)


def shadow_offset(spec: SceneSpec) -> tuple[int, int]:
    """``(rows, cols)`` from a cloud to its shadow: away from the sun, longer when it is low."""
    d = spec.cloud_height_m / math.tan(math.radians(spec.sun_elevation)) / spec.pixel_size
    az = math.radians(spec.sun_azimuth)
    return round(math.cos(az) * d), round(-math.sin(az) * d)


def compose(
    rng: np.random.Generator,
    spec: SceneSpec,
    surface: np.ndarray,
    tau: np.ndarray,
    valid: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shadow the ground, add the atmosphere, lay clouds over it, and quantise to Level-1 DN.

    Args:
        surface: ``(4, H, W)`` float32 surface reflectance; modified in place.
        tau: ``(H, W)`` float32 cloud optical thickness.
        valid: ``(H, W)`` bool footprint.

    Returns:
        ``(4, H, W)`` uint16 DN, ``(H, W)`` uint8 truth mask, ``(H, W)`` float32 shadow opacity.
    """
    shape, side = spec.shape, min(spec.shape)
    opacity = 1.0 - np.exp(-tau)
    shadow = shift(opacity, shadow_offset(spec))
    detail = noise_field(rng, shape, beta=2.2, scale=spec.cloud_scale_px / 3)
    # Cloud albedo grows with thickness and saturates; the real patches put thick cloud at
    # 0.4-0.8 TOA reflectance, so scenes draw their own maximum in that range.
    brightness = rng.uniform(0.45, 0.85) * (0.5 + 0.5 * (1.0 - np.exp(-tau / 10.0)))
    brightness *= 1.0 + 0.06 * detail
    aerosol = spec.aerosol * (1.0 + 0.2 * noise_field(rng, shape, beta=3.0, scale=side / 2))
    gain = math.sin(math.radians(spec.sun_elevation)) / REFLECTANCE_MULT
    bands = np.empty((4, *shape), np.uint16)
    for b in range(4):
        toa = surface[b]
        toa *= 1.0 - _SHADOW_DEPTH[b] * shadow
        toa += _PATH[b] * aerosol
        toa += (_CLOUD_COLOUR[b] * brightness - toa) * opacity
        dn = toa * np.float32(gain) + np.float32(-REFLECTANCE_ADD / REFLECTANCE_MULT)
        dn += rng.standard_normal(shape, dtype=np.float32) * np.float32(_NOISE_DN)
        np.clip(np.rint(dn, out=dn), 1, 65535, out=dn)
        bands[b] = dn
        bands[b][~valid] = 0
    mask = np.where(tau > CLOUD_TAU, CLOUD, CLEAR).astype(np.uint8)
    mask[~valid] = MASK_NODATA
    return bands, mask, shadow


def make_scene(spec: SceneSpec) -> SyntheticScene:
    """Generate the scene ``spec`` describes (about 2-3 s for 2000 x 2000 on two cores)."""
    land_rng, cloud_rng, sky_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(3)
    )
    valid = collar_mask(spec.shape, spec.collar_angle_deg)
    surface, layers = land_cover(land_rng, spec)
    tau = cloud_thickness(cloud_rng, spec, valid)
    bands, mask, shadow = compose(sky_rng, spec, surface, tau, valid)
    layers.update(shadow=shadow, tau=tau)
    return SyntheticScene(spec=spec, bands=bands, mask=mask, layers=layers)
