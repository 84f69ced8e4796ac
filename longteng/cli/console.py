"""Shared rich consoles: results to stdout, messages and progress to stderr."""

from __future__ import annotations

import functools

from rich.console import Console


@functools.cache
def out() -> Console:
    return Console(soft_wrap=True)


@functools.cache
def err() -> Console:
    return Console(stderr=True, soft_wrap=True)


def warn(message: str) -> None:
    err().print(f"[yellow]warning:[/] {message}", markup=True, highlight=False)


def info(message: str) -> None:
    err().print(message, markup=False, highlight=False)
