"""What every command shares: error handling (one line per problem, exit codes) and the common options."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from gpufleet.config import DEFAULT_CONFIG
from gpufleet.errors import RuntimeFailure, UserInputError

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn gpufleet's errors into one-line messages and exit codes; tracebacks only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = bool(ctx.find_root().params.get("debug"))
        try:
            return fn(*args, **kwargs)
        except UserInputError as exc:
            if debug:
                raise
            for line in exc.problems:
                click.echo(line, err=True)
            sys.exit(exc.exit_code)
        except RuntimeFailure as exc:
            if debug:
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except ModuleNotFoundError as exc:
            if debug:
                raise
            click.echo(f"error: {exc.name} is not installed (pip install 'gpufleet[platform]' for synth and "
                       "deploy, 'gpufleet[dev]' for everything)", err=True)
            sys.exit(1)
        except Exception as exc:  # the last line of defence: never a bare traceback
            if debug:
                raise
            click.echo(f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                       err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


config_option = click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True,
                             type=click.Path(dir_okay=False, path_type=Path), help="Platform config file.")
target_option = click.option("--target", type=click.Choice(["local", "aws"]), default=None,
                             help="Where to deploy (default: $GPUFLEET_TARGET or local).")
out_option = click.option("--out", "outdir", default="cdktf.out", show_default=True,
                          type=click.Path(file_okay=False, path_type=Path), help="Synth output folder.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
