"""What the three CLIs share: the Typer app settings and `run_app`, which turns known errors
and usage mistakes into one `error: ...` line with exit code 1 (never a traceback)."""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import typer

try:  # typer >= 0.20 vendors its own copy of click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import UsageError


def make_app(help: str) -> typer.Typer:
    return typer.Typer(help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def run_app(app: typer.Typer, known_errors: tuple[type[BaseException], ...], interrupted: str) -> NoReturn:
    """Run `app` on `sys.argv`; `known_errors` (user mistakes) and usage errors print as one line
    and exit 1, Ctrl-C prints `interrupted` and exits 130."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if len(sys.argv) == 1:
        sys.argv.append("--help")
    try:
        # not standalone: usage errors reach us and become one line with exit code 1
        code = app(standalone_mode=False)
    except UsageError as err:
        typer.echo(f"error: {err.format_message()}", err=True)
        sys.exit(1)
    except known_errors as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo(interrupted, err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
