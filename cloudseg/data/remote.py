"""Rasters and text over HTTP(S) and S3: GDAL names, GDAL's settings for COGs, and retries.

Pixels are read window by window with HTTP range requests through GDAL's ``/vsicurl/`` (and
``s3://`` through ``/vsis3/``, with the usual ``AWS_*`` environment variables: keys, region,
``AWS_NO_SIGN_REQUEST``, ``AWS_REQUEST_PAYER=requester`` for USGS's requester-pays bucket).
:data:`GDAL_REMOTE` is how the field configures GDAL for COGs (GDAL's "Cloud optimized GeoTIFF"
and ``/vsicurl/`` pages): no directory listing on open (without it GDAL sends about ten extra
requests looking for sidecar files), only TIFF names probed, merged and multi-range reads,
timeouts, and retries with a doubling delay for HTTP 429 and 5xx answers. A variable already set
in the environment wins. Not ``VSI_CACHE``: its cache is per open file, local files included, up
to ``VSI_CACHE_SIZE`` each; with 64 MiB it held every compressed byte of a scene's band files
read so far in each of the engine's three readers, so peak RSS grew with the scene's area (r34
end to end: 1.13 GB at 8000 px against 0.31 GB without it, on a trivial model). ``/vsicurl/``
keeps its own bounded cache of downloaded ranges, and GDAL's block cache (fixed in
:func:`cloudseg.engine.scene_task.gdal_env`) holds decoded blocks.

GDAL retries HTTP errors by itself but not a connection dropped while a file is opened, and then
says only that the name "does not exist in the file system". So :func:`open_with_retries` asks
the server itself what went wrong (:func:`http_reason`: a status, or the connection's fate),
retries what may pass (dropped connections, timeouts, 5xx) with a doubling delay, and gives up
with one line naming the URL and the reason.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rasterio.errors import RasterioIOError

from cloudseg.data.gdal_errors import describe
from cloudseg.errors import SceneError

#: GDAL configuration for reading COGs over the network (see the module docstring).
GDAL_REMOTE = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.TIFF",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",  # a COG's header in the first request
    "GDAL_HTTP_TIMEOUT": "30",
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
}
#: Attempts and first delay (s, doubled each time) for opens and text fetches.
ATTEMPTS = 4
FIRST_DELAY = 0.5
#: Seconds a text fetch (STAC item, MTL) may take.
TIMEOUT = 30.0

T = TypeVar("T")


def is_url(spec: str | os.PathLike[str]) -> bool:
    """``http://``, ``https://`` or ``s3://``."""
    return str(spec).startswith(("http://", "https://", "s3://"))


def gdal_name(href: str) -> str:
    """The GDAL dataset name of an href: ``/vsicurl/`` for HTTP(S), ``/vsis3/`` for S3, else
    the local path itself."""
    if href.startswith(("http://", "https://")):
        return f"/vsicurl/{href}"
    if href.startswith("s3://"):
        return f"/vsis3/{href[len('s3://') :]}"
    return href.removeprefix("file://")


def url_of(name: str) -> str:
    """The URL (or path) a GDAL name stands for, for messages."""
    if name.startswith("/vsicurl/"):
        return name[len("/vsicurl/") :]
    if name.startswith("/vsis3/"):
        return "s3://" + name[len("/vsis3/") :]
    return name


def gdal_options() -> dict[str, str]:
    """:data:`GDAL_REMOTE`, less what the environment already sets."""
    return {k: v for k, v in GDAL_REMOTE.items() if k not in os.environ}


#: Words of a failure worth trying again: the network, not the file.
_TRANSIENT = (
    "curl error", "timed out", "timeout", "connection", "reset", "empty reply",
    "response code: 5", "response code: 429", "http error code: 5", "temporarily",
)  # fmt: skip


def transient(exc: BaseException) -> bool:
    """A failure that another try may not meet: dropped connections, timeouts, HTTP 5xx/429
    (not a 404, a 403 or a file that is not a TIFF)."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code == 429
    if isinstance(exc, (urllib.error.URLError, ConnectionError, TimeoutError)):
        return True
    text = (describe(exc) if isinstance(exc, RasterioIOError) else str(exc)).lower()
    return any(word in text for word in _TRANSIENT)


def _retrying(
    what: str,
    action: Callable[[], T],
    catch: tuple[type[BaseException], ...],
    judge: Callable[[BaseException], tuple[bool, str]],
) -> T:
    """``action()``, tried up to :data:`ATTEMPTS` times with a doubling delay while it fails
    with an error of a type in ``catch`` that ``judge`` calls transient.

    Raises:
        SceneError: it failed for good; names ``what`` and the reason (and the tries).
    """
    delay = FIRST_DELAY
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return action()
        except catch as exc:
            again, reason = judge(exc)
            if not again:
                raise SceneError(f"{what}: {reason}") from None
            if attempt == ATTEMPTS:
                raise SceneError(f"{what}: failed after {ATTEMPTS} tries: {reason}") from None
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def with_retries(what: str, action: Callable[[], T], catch: tuple[type[BaseException], ...]) -> T:
    """``action()``, retried while it fails with a :func:`transient` error of a type in
    ``catch``.

    Raises:
        SceneError: it failed for good; names ``what`` and the reason (and the tries).
    """

    def judge(exc: BaseException) -> tuple[bool, str]:
        reason = describe(exc) if isinstance(exc, RasterioIOError) else _reason(exc)
        return transient(exc), reason

    return _retrying(what, action, catch, judge)


def http_reason(url: str) -> tuple[bool, str]:
    """Ask an http(s) server about ``url`` with a one-byte range request.

    Returns:
        ``(transient, reason)``: whether another try may succeed, and what happened, in words.
    """
    request = urllib.request.Request(url, headers={"Range": "bytes=0-0", "User-Agent": "cloudseg"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            return True, f"the server answered HTTP {answer.status} now, GDAL could not open it"
    except urllib.error.HTTPError as exc:
        return exc.code >= 500 or exc.code == 429, f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return True, f"connection failed ({' '.join(str(reason).split()) or type(reason).__name__})"


def open_with_retries(name: str, open_: Callable[[], T]) -> T:
    """``open_()`` of the GDAL dataset ``name``, retried while the network fails.

    Raises:
        SceneError: it failed for good; one line naming the URL and why.
    """
    url = url_of(name)

    def judge(exc: BaseException) -> tuple[bool, str]:
        if url.startswith(("http://", "https://")):
            return http_reason(url)
        return transient(exc), describe(exc)  # s3: GDAL's own words are all there is

    return _retrying(url, open_, (RasterioIOError,), judge)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason}"
    return " ".join(str(exc).split()) or type(exc).__name__


def read_text(href: str) -> str:
    """The text at a URL or local path (a STAC item, an MTL), fetched with retries.

    Raises:
        SceneError: it cannot be fetched (one line naming it and why).
    """
    if not is_url(href):
        try:
            return Path(href.removeprefix("file://")).read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise SceneError(f"{href}: cannot read it ({exc.strerror or exc})") from None
    if href.startswith("s3://"):  # GDAL reads s3 pixels; text would need an S3 client
        raise SceneError(f"{href}: text assets are read over http(s) only, not s3://")

    def fetch() -> str:
        request = urllib.request.Request(href, headers={"User-Agent": "cloudseg"})
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            return answer.read().decode("utf-8-sig")

    return with_retries(href, fetch, (urllib.error.URLError, OSError))
