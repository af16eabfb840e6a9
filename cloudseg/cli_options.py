"""Options and error handling shared by every ``cloudseg-*`` command (as rasterio's ``rio``).

A :class:`~cloudseg.errors.CloudsegError` reaches the user as one line on stderr and exit code 1;
click's own usage errors keep exit code 2.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cloudseg.errors import CloudsegError

F = TypeVar("F", bound=Callable[..., Any])


def one_line_errors(func: F) -> F:
    """Turn a :class:`CloudsegError` raised by a command into click's one-line error."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # GDAL's own error records would reach the terminal before our one line says the same.
        logging.getLogger("rasterio").setLevel(logging.CRITICAL)
        try:
            return func(*args, **kwargs)
        except CloudsegError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace outputs that already exist (default: refuse)."
)

seed_option = click.option(
    "--seed", type=int, default=0, show_default=True, help="Random seed, for reproducible output."
)

quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")

#: ``--precision`` spellings: the short names OpenVINO and the run backends use, and the long
#: ones (fp16, fp32) training users expect; both mean the same.
PRECISION_ALIASES = {"fp32": "f32", "fp16": "f16"}
PRECISIONS = ("auto", "f32", "bf16", "f16")


def _precision(ctx: click.Context, param: click.Parameter, value: str) -> str:
    return PRECISION_ALIASES.get(value, value)


def precision_option(help_text: str) -> Callable[[F], F]:
    """``--precision auto|f32|bf16|f16`` (``fp32``/``fp16`` accepted too)."""
    return click.option(
        "--precision",
        type=click.Choice([*PRECISIONS, *PRECISION_ALIASES]),
        default="auto",
        show_default=True,
        callback=_precision,
        help=help_text,
    )


threads_option = click.option(
    "--threads",
    type=click.IntRange(1),
    default=None,
    help="CPU threads for inference (default: every core).",
)

device_option = click.option(
    "--device",
    type=click.IntRange(0),
    default=None,
    help="GPU number for cuda, tensorrt and torch (torch runs on the CPU without it).",
)


def out_dir_option(default_help: str, what: str = "Output folder") -> Callable[[F], F]:
    """``--out DIR``: the folder the command writes into; required when ``default_help`` is ""."""
    return click.option(
        "--out",
        "out",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        required=default_help == "",
        help=f"{what}{' (' + default_help + ')' if default_help else ''}.",
    )


def progress_disabled(quiet: bool) -> bool:
    """Progress bars are off when asked, and in CI, where they only flood the log.

    The one rule every command and pipeline follows (the fastai pipeline adds: stdout not a
    terminal, since fastai's bars print tables too).
    """
    return quiet or os.environ.get("CI", "").lower() in {"1", "true"}


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr as ``cloudseg: message``; INFO by default, DEBUG with ``verbose``."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(name)s: %(message)s"
    )
