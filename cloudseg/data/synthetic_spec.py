"""What decides a synthetic scene: :class:`SceneSpec`, and :func:`random_spec` to draw one.

A spec holds every parameter of :func:`cloudseg.data.synthetic.make_scene`, from the seed of the
pixels to the WRS-2 path/row and dates that name the product, so equal specs give equal scenes.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SceneSpec:
    """Everything that decides a synthetic scene; equal specs give identical scenes.

    Attributes:
        seed: seed of every pixel-level random draw.
        height, width: raster size in pixels (``pixel_size`` metres each).
        cloud_fraction: share of valid pixels that the truth calls cloud (exact, see
            :func:`cloudseg.data.synthetic.cloud_thickness`).
        thin_cloud_share: 0 gives thick, opaque cumulus; 1 thin, semi-transparent sheets.
        cirrus: share of streaky, stretched cloud mixed into the cloud field (0-1).
        cloud_scale_px: typical size of cloud fields, in pixels.
        cloud_height_m: cloud height; with the sun angles it sets the shadow offset.
        water_fraction, snow_fraction, desert_fraction: shares of the raster (lakes in the
            lowest ground, snow on the highest, sand where a smooth field is highest).
        vegetation: greenness bias (negative: dry, bare; positive: forest).
        relief: standard deviation of terrain slope, for hill shading.
        aerosol: path-radiance factor (haze of the clear atmosphere).
        collar_angle_deg: rotation of the valid footprint (WRS-2 scenes: about 12-14 degrees).
        sun_azimuth, sun_elevation: degrees, as in the MTL.
        wrs_path, wrs_row, acquired, processed: name the product (and place it on Earth).
    """

    seed: int = 0
    height: int = 2000
    width: int = 2000
    cloud_fraction: float = 0.3
    thin_cloud_share: float = 0.3
    cirrus: float = 0.0
    cloud_scale_px: float = 250.0
    cloud_height_m: float = 2000.0
    water_fraction: float = 0.06
    snow_fraction: float = 0.05
    desert_fraction: float = 0.05
    vegetation: float = 0.0
    relief: float = 0.3
    aerosol: float = 1.0
    collar_angle_deg: float = 13.0
    sun_azimuth: float = 140.0
    sun_elevation: float = 55.0
    pixel_size: float = 30.0
    wrs_path: int = 44
    wrs_row: int = 34
    acquired: dt.date = dt.date(2016, 6, 20)
    processed: dt.date = dt.date(2017, 2, 24)

    def __post_init__(self) -> None:
        if min(self.height, self.width) < 32:
            raise ValueError(f"scene must be at least 32 x 32 pixels, got {self.shape}")
        for name in ("cloud_fraction", "thin_cloud_share", "cirrus", "water_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.water_fraction + self.snow_fraction > 0.9 or self.desert_fraction > 0.9:
            raise ValueError("water + snow and desert fractions must each stay below 0.9")
        if not 5.0 <= self.sun_elevation <= 90.0:
            raise ValueError(f"sun_elevation must be in [5, 90] degrees, got {self.sun_elevation}")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def product_id(self) -> str:
        """Collection 1 Level-1 product id, e.g. ``LC08_L1TP_044034_20160620_20170224_01_T1``."""
        return (
            f"LC08_L1TP_{self.wrs_path:03d}{self.wrs_row:03d}_{self.acquired:%Y%m%d}"
            f"_{self.processed:%Y%m%d}_01_T1"
        )


def wrs_centre(path: int, row: int) -> tuple[float, float]:
    """Approximate ``(lat, lon)`` of a WRS-2 scene centre, in degrees.

    Row 60 is on the equator and rows are about 1.37 degrees apart; path 1 crosses the equator
    near 64.6 W and each next path lies 360/233 degrees further west. Good to a degree or two,
    which is all a synthetic scene needs to sit in the right UTM zone and sun.
    """
    lat = (60 - row) * 80.8 / 59
    lon = (-64.6 - (path - 1) * 360.0 / 233 + 180.0) % 360.0 - 180.0
    return lat, lon


def sun_position(lat: float, day_of_year: int, solar_hour: float = 10.2) -> tuple[float, float]:
    """``(azimuth, elevation)`` of the sun in degrees at local solar time ``solar_hour`` (Landsat 8
    crosses the equator at about 10:10 local time)."""
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + day_of_year) / 365)
    hour_angle = math.radians(15.0 * (solar_hour - 12.0))
    phi = math.radians(lat)
    sin_el = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(hour_angle)
    el = math.asin(sin_el)
    cos_az = (math.sin(decl) - sin_el * math.sin(phi)) / (math.cos(el) * math.cos(phi))
    az = math.degrees(math.acos(max(-1.0, min(1.0, cos_az))))
    return (az if hour_angle < 0 else 360.0 - az), math.degrees(el)


def random_spec(
    seed: int, height: int = 2000, width: int | None = None, cloud_fraction: float | None = None
) -> SceneSpec:
    """A plausible scene drawn from ``seed``: place, date, sun, land cover and clouds.

    Every draw happens whether or not it is overridden, so ``cloud_fraction`` changes only the
    clouds. Sun angles follow from the WRS-2 row (latitude) and the date; dates fall between
    mid-March and mid-October and the sun elevation is floored at 20 degrees.
    """
    rng = np.random.default_rng([seed, 0x4C38])  # metadata stream, apart from the pixel streams
    path, row = int(rng.integers(1, 234)), int(rng.integers(22, 51))
    acquired = dt.date(int(rng.integers(2014, 2018)), 1, 1) + dt.timedelta(
        days=int(rng.integers(70, 290))
    )
    delay = dt.timedelta(days=int(rng.integers(2, 60)))
    # Collection 1 reprocessed the archive from February 2017 on (the real 38-Cloud ids show it).
    processed = max(acquired, dt.date(2017, 2, 20)) + delay
    azimuth, elevation = sun_position(wrs_centre(path, row)[0], acquired.timetuple().tm_yday)
    drawn_fraction = float(rng.uniform(0.02, 0.95))
    return SceneSpec(
        seed=seed,
        height=height,
        width=width or height,
        cloud_fraction=drawn_fraction if cloud_fraction is None else cloud_fraction,
        thin_cloud_share=float(rng.uniform(0.0, 0.7)),
        cirrus=float(rng.uniform(0.3, 0.8)) if rng.random() < 0.3 else 0.0,
        cloud_scale_px=float(rng.uniform(120, 400)),
        cloud_height_m=float(rng.uniform(800, 4000)),
        water_fraction=float(rng.uniform(0.0, 0.12)),
        snow_fraction=float(rng.uniform(0.05, 0.25)) if rng.random() < 0.3 else 0.0,
        desert_fraction=float(rng.uniform(0.1, 0.4)) if rng.random() < 0.3 else 0.0,
        vegetation=float(rng.uniform(-1.5, 2.0)),
        relief=float(rng.uniform(0.05, 0.5)),
        aerosol=float(rng.uniform(0.6, 1.6)),
        collar_angle_deg=float(rng.uniform(12.0, 14.0)),
        sun_azimuth=azimuth,
        sun_elevation=max(elevation, 20.0),
        wrs_path=path,
        wrs_row=row,
        acquired=acquired,
        processed=processed,
    )
