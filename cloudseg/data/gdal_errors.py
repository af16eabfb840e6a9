"""GDAL's reasons, in one line: what went wrong reading a raster, without GDAL's error stream.

rasterio raises ``RasterioIOError("Read failed. See previous exception for details.")`` with the
real reason chained below it (``TIFFFillTile: Read error ...; got 9443 bytes, expected 46065``)
and logs every GDAL error on the ``rasterio`` logger. Commands keep that logger quiet
(:func:`cloudseg.cli_options.one_line_errors`) and say the deepest reason once, in words a user
acts on (:func:`describe`).
"""

from __future__ import annotations

#: GDAL messages that mean the file ends early or its bytes are damaged.
_DAMAGE = ("read error", "truncat", "tiffreadencoded", "tifffilltile", "tiffreaddirectory",
           "not a tiff", "cannot read tiff", "ireadblock failed", "decompress")  # fmt: skip


def reason(exc: BaseException) -> str:
    """The deepest message in ``exc``'s chain of causes (GDAL's own), on one line."""
    messages = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = " ".join(str(exc).split())
        if text and "see previous exception" not in text.lower():
            messages.append(text)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return messages[-1] if messages else "unknown GDAL error"


def describe(exc: BaseException) -> str:
    """``the file is truncated or corrupt (GDAL: ...)`` for damaged bytes, else GDAL's reason."""
    why = reason(exc)
    if any(word in why.lower() for word in _DAMAGE):
        return f"the file is truncated or corrupt ({why})"
    return why
