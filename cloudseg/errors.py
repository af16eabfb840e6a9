"""Errors a user can cause, each carrying one line that names the file and the problem.

Every subclass also inherits the builtin it resembles (as rasterio's errors do), so callers that
catch ``ValueError`` or ``FileNotFoundError`` keep working. Commands turn these into one line on
stderr and a non-zero exit (see :mod:`cloudseg.cli_options`); anything else is a bug and keeps
its traceback.
"""


class CloudsegError(Exception):
    """Root of every error that is the input's fault rather than a bug."""


class DataError(CloudsegError, ValueError):
    """A dataset folder, patch, CSV or band file is missing, malformed or inconsistent."""


class MissingFileError(DataError, FileNotFoundError):
    """A file or folder the layout requires is not there."""


class SceneError(CloudsegError, ValueError):
    """A Landsat scene (folder or GeoTIFF) cannot be read as the band contract needs."""


class MissingBandError(SceneError, FileNotFoundError):
    """A Landsat scene folder lacks a band file the band contract needs."""


class ModelError(CloudsegError, ValueError):
    """A model file, checkpoint or model card does not fit what the tool needs."""


class ProviderError(CloudsegError, RuntimeError):
    """An inference provider was asked for but cannot run here."""


class OutputExistsError(CloudsegError, FileExistsError):
    """An output is already on disk and ``--overwrite`` was not given."""

    def __init__(self, path: object, why: str = "; pass --overwrite to replace it") -> None:
        super().__init__(f"{path} exists{why}")
        self.path = path


class OutputError(CloudsegError, OSError):
    """An output folder or file cannot be written (read-only, full, not a folder)."""
