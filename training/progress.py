"""How library code reports progress without printing: the CLI passes a Reporter."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol


class Reporter(Protocol):
    def task(self, description: str, total: int) -> contextlib.AbstractContextManager[Callable[[int], None]]:
        """A long loop: yields `advance(n)`; the CLI shows a bar with rate and ETA."""

    def message(self, text: str) -> None: ...

    def warning(self, text: str) -> None: ...


class SilentReporter:
    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        yield lambda n=1: None

    def message(self, text: str) -> None:
        pass

    def warning(self, text: str) -> None:
        pass
