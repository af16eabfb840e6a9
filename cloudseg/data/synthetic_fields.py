"""Vectorised random fields behind the synthetic scenes: noise, footprints, shading, patterns.

Pure numpy; every function takes ``(H, W)`` shapes and returns float32 or bool arrays of that
shape. Nothing here knows about Landsat; :mod:`cloudseg.data.synthetic` composes these into scenes.
"""

from __future__ import annotations

import math

import numpy as np


def noise_field(
    rng: np.random.Generator,
    shape: tuple[int, int],
    *,
    beta: float = 3.0,
    scale: float | None = None,
    anisotropy: float = 1.0,
    angle_deg: float = 0.0,
) -> np.ndarray:
    """Fractal noise: a random spectrum with power ``1 / f**beta``, made real by an inverse FFT.

    Drawing the spectrum directly (rather than filtering white noise) costs one FFT, not two.

    Args:
        rng: source of randomness.
        shape: ``(H, W)``.
        beta: spectral slope; 2 is rough, 3 smooth and blobby.
        scale: largest feature size in pixels (the spectrum is flat below ``1 / scale``).
        anisotropy: > 1 stretches features along ``angle_deg`` (streaks, cirrus).
        angle_deg: direction of the stretch, degrees anticlockwise from the x axis.

    Returns:
        ``(H, W)`` float32 with mean 0 and standard deviation 1. Periodic across the edges.
    """
    h, w = shape
    fy = np.fft.fftfreq(h).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(w).astype(np.float32)[None, :]
    if anisotropy != 1.0:
        a = math.radians(angle_deg)
        u = fx * math.cos(a) - fy * math.sin(a)
        v = fx * math.sin(a) + fy * math.cos(a)
        f2 = (u * anisotropy) ** 2 + v**2
    else:
        f2 = fx**2 + fy**2
    f0 = 1.0 / (scale if scale else max(h, w))
    f2 += np.float32(f0 * f0)
    amp = np.power(f2, np.float32(-beta / 4.0), out=f2)
    amp[0, 0] = 0.0
    # Real and imaginary parts side by side, viewed as complex64: no complex128 temporaries.
    spectrum = rng.standard_normal((h, w // 2 + 1, 2), dtype=np.float32).view(np.complex64)[..., 0]
    spectrum *= amp
    field = np.fft.irfft2(spectrum, s=shape)
    field -= field.mean()
    field /= max(float(field.std()), 1e-12)
    return field


def collar_mask(shape: tuple[int, int], angle_deg: float, margin: float = 0.005) -> np.ndarray:
    """Valid-data footprint of a WRS-2 scene: a rectangle rotated by ``angle_deg`` that fits the
    north-up raster with its corners near the edges, so all four raster corners are no data.

    Returns:
        ``(H, W)`` bool, True inside the footprint.
    """
    h, w = shape
    c, s = math.cos(math.radians(abs(angle_deg))), math.sin(math.radians(abs(angle_deg)))
    # Sides (a along x, b along y) of the largest rectangle at this angle inside w x h.
    a = (w * c - h * s) / (c * c - s * s)
    b = (h * c - w * s) / (c * c - s * s)
    if a <= 0 or b <= 0:
        raise ValueError(f"a {angle_deg} degree footprint does not fit a {h} x {w} raster")
    a, b = a * (1 - 2 * margin), b * (1 - 2 * margin)
    y = np.arange(h, dtype=np.float32)[:, None] - (h - 1) / 2
    x = np.arange(w, dtype=np.float32)[None, :] - (w - 1) / 2
    t = math.radians(angle_deg)
    u = x * math.cos(t) + y * math.sin(t)
    v = -x * math.sin(t) + y * math.cos(t)
    return (np.abs(u) <= a / 2) & (np.abs(v) <= b / 2)


def hillshade(
    elevation: np.ndarray, sun_azimuth: float, sun_elevation: float, slope: float
) -> np.ndarray:
    """Illumination of a surface relative to flat ground (1.0), lit from the sun's direction.

    Args:
        elevation: ``(H, W)`` float32 height field (any units).
        sun_azimuth: degrees clockwise from north.
        sun_elevation: degrees above the horizon.
        slope: standard deviation of the surface slope (rise over run) after rescaling.

    Returns:
        ``(H, W)`` float32, >= 0.1.
    """
    gy, gx = np.gradient(elevation)
    k = np.float32(slope / max(float(np.hypot(gx, gy).std()), 1e-12))
    az, el = math.radians(sun_azimuth), math.radians(sun_elevation)
    # Sun vector in (x east, y down the rows = south, z up).
    sx, sy, sz = math.sin(az) * math.cos(el), -math.cos(az) * math.cos(el), math.sin(el)
    gx *= k
    gy *= k
    lit = (sz - gx * sx - gy * sy) / np.sqrt(1.0 + gx * gx + gy * gy) / np.float32(sz)
    return np.maximum(lit, np.float32(0.1), out=lit)


def shift(field: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """Move ``(H, W)`` ``field`` by ``(rows, cols)``, filling the uncovered edge with 0
    (not wrapping round, as ``np.roll`` would: a shadow must not enter from the far side)."""
    dy, dx = offset
    h, w = field.shape
    out = np.zeros_like(field)
    if abs(dy) < h and abs(dx) < w:
        out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = field[
            max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
        ]
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, float32."""
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32, copy=False)


def smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below ``lo``, 1 above ``hi``, a smooth cubic between: soft edges without halos."""
    t = np.clip((x - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def top_fraction(field: np.ndarray, fraction: float, softness: float) -> np.ndarray:
    """Weight 0-1 covering about ``fraction`` of the raster where ``field`` is highest, with an
    edge ``softness`` (in units of ``field``) wide. The quantile uses every 4th pixel: fast, and
    exact enough for land cover."""
    if fraction <= 0:
        return np.zeros_like(field)
    q = float(np.quantile(field[::4, ::4], 1.0 - fraction))
    return smoothstep(field, q - softness, q + softness)


def _rotated_coords(shape: tuple[int, int], angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    t = math.radians(angle_deg)
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    return x * math.cos(t) + y * math.sin(t), -x * math.sin(t) + y * math.cos(t)


def parcels(
    rng: np.random.Generator, shape: tuple[int, int], size: float, angle_deg: float
) -> np.ndarray:
    """Fields: a brick pattern of parcels about ``size`` pixels wide, each a random value.

    Returns:
        ``(H, W)`` float32 in [0, 1], constant within each parcel.
    """
    u, v = _rotated_coords(shape, angle_deg)
    rows = np.floor(v / np.float32(size * rng.uniform(1.2, 2.5))).astype(np.int64)
    # Each row of parcels is offset along its length, as real field boundaries are.
    offsets = rng.uniform(0, size, 1024).astype(np.float32)[rows % 1024]
    cols = np.floor((u + offsets) / np.float32(size)).astype(np.int64)
    table = rng.random(4096, dtype=np.float32)
    return table[((rows * 73856093) ^ (cols * 19349663)) % 4096]


def dunes(
    rng: np.random.Generator, shape: tuple[int, int], period: float, angle_deg: float
) -> np.ndarray:
    """Dune ridges: a sinusoid of ``period`` pixels, warped by smooth noise.

    Returns:
        ``(H, W)`` float32 in [0, 1].
    """
    u, _ = _rotated_coords(shape, angle_deg)
    warp = noise_field(rng, shape, beta=3.0, scale=min(shape) / 4)
    return 0.5 + 0.5 * np.sin(u * np.float32(2 * math.pi / period) + 2.0 * warp)
