"""Options and error handling shared by every ``cloudseg-*`` command (as rasterio's ``rio``).

A :class:`~cloudseg.errors.CloudsegError` reaches the user as one line on stderr and exit code 1;
click's own usage errors (a bad option value, a missing argument) are one ``Error:`` line and
exit code 1 too, without click's usage block (:class:`OneLineCommand`).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cloudseg.errors import CloudsegError

F = TypeVar("F", bound=Callable[..., Any])


class _OneLineMain:
    """``main`` of a click command or group: every error as one ``Error:`` line and exit 1,
    click's usage errors included (no usage block, not click's exit 2), no traceback."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,  # type: ignore[override]
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)  # type: ignore[misc]
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)  # type: ignore[misc]
        except click.UsageError as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("Error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


class FiniteFloatRange(click.FloatRange):
    """:class:`click.FloatRange` that also refuses nan and infinity (which compare false with
    every bound, so a plain range lets them through to crash mid-scene)."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class OneLineCommand(_OneLineMain, click.Command):
    """A command whose every error is one line (module docstring)."""


class OneLineGroup(_OneLineMain, click.Group):
    """A group whose every error, its subcommands' included, is one line."""


#: A temporary of :mod:`cloudseg.atomic`: ``.<final name>.<8 hex>.part``.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.part$")


def _os_error_line(exc: OSError) -> str:
    """``cannot write OUT: <reason>`` for an output's temporary, ``PATH: <reason>`` otherwise."""
    reason = exc.strerror or str(exc)
    if not exc.filename:
        return reason
    path = Path(os.fsdecode(exc.filename))
    found = _TEMPORARY.match(path.name)
    if found:
        return f"cannot write {path.with_name(found['name'])}: {reason}"
    return f"{path}: {reason}"


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
        except OSError as exc:  # the machine said no: a read-only or missing folder, a full disk
            raise click.ClickException(_os_error_line(exc)) from exc

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
