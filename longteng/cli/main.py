"""`longteng` entry point. Sub-commands import their heavy modules lazily so `--help`,
`predict` and `score` never pay for training code (or torch)."""

from __future__ import annotations

import os
import signal
import sys
import threading

import typer

from longteng import __version__
from longteng.cli import exitcodes
from longteng.cli.commands import register
from longteng.cli.data import data_app
from longteng.errors import LongtengError, OutputError

# Usage errors are click's ClickException, from click itself or from the copy of click that
# newer typer versions vendor; typer.BadParameter lives in whichever one this typer uses.
COMMAND_LINE_ERROR = sys.modules[typer.BadParameter.__module__].ClickException

app = typer.Typer(
    name="longteng",
    help="Tell genuine goods from counterfeits in inspection photos.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
register(app)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"longteng {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Show the version."),
) -> None:
    """Tell genuine goods from counterfeits in inspection photos."""


INTERRUPTED_MESSAGE = "interrupted (score keeps what it journaled: rerun the same command to resume)"


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; errors become one line on stderr."""
    # SIGTERM (kill, systemd, a batch scheduler) ends a run as Ctrl-C does: pools torn down,
    # journal kept, "interrupted" and the exit code that says "rerun to resume".
    previous = signal.signal(signal.SIGTERM, _interrupt) if threading.current_thread() is threading.main_thread() else None
    try:
        result = app(args=argv, standalone_mode=False, prog_name="longteng")
    except typer.Exit as exc:
        return exc.exit_code
    except COMMAND_LINE_ERROR as exc:
        exc.show()
        return exitcodes.USAGE
    except (typer.Abort, KeyboardInterrupt):
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        return exitcodes.INTERRUPTED
    except OutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exitcodes.OUTPUT
    except LongtengError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exitcodes.ERROR
    except OSError as exc:
        # Something the disk or the user did (a full disk, a folder made read-only), not a bug.
        print(f"error: {_os_error_text(exc)}", file=sys.stderr)
        return exitcodes.OUTPUT
    except Exception as exc:  # noqa: BLE001 - the last line of defence against a traceback
        if os.environ.get("LONGTENG_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (rerun with LONGTENG_DEBUG=1 for details)", file=sys.stderr)
        return exitcodes.INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if result == exitcodes.INTERRUPTED:
        # typer catches Ctrl-C itself and, outside standalone mode, returns 130 without a word.
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
    return result if isinstance(result, int) else exitcodes.OK


def _os_error_text(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else "input/output"
    return f"{os.fsdecode(where)}: {exc.strerror or exc}"


def run() -> None:
    sys.exit(main())
