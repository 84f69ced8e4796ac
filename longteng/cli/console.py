"""Shared rich consoles: results to stdout, messages and progress to stderr."""

from __future__ import annotations

import functools
import sys

from rich.console import Console


@functools.cache
def out() -> Console:
    # Piped into a log (make demo, CI) rich would assume 80 columns and fold every cell.
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)


@functools.cache
def err() -> Console:
    return Console(stderr=True, soft_wrap=True)


def warn(message: str) -> None:
    from rich.markup import escape

    err().print(f"[yellow]warning:[/] {escape(message)}", markup=True, highlight=False)


def info(message: str) -> None:
    err().print(message, markup=False, highlight=False)
