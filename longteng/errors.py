"""Typed errors raised by library code; only the CLI turns them into messages and exit codes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class LongtengError(Exception):
    """Base class of every error longteng raises on purpose."""


class ImageLoadError(LongtengError):
    """A file could not be turned into an RGB image.

    `reason` is a short machine-friendly key (e.g. ``truncated``), `detail` the human text.
    """

    def __init__(self, path: Path | str, reason: str, detail: str) -> None:
        self.path = Path(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{path}: {detail}")


@dataclass(frozen=True)
class UnusableFile:
    """A file (or input) that cannot be used, as a value rather than an exception: batches,
    folder walks, data checks and training report it and go on with the rest.

    The one type for it across the project; ``reason`` is a machine-friendly key (the
    loader's ``truncated``, ``not_an_image``, ..., or discovery's ``no_match``,
    ``symlink_loop``, ...), ``detail`` the human text.
    """

    path: Path | str
    reason: str
    detail: str

    @classmethod
    def from_error(cls, error: ImageLoadError, path: Path | str | None = None) -> "UnusableFile":
        return cls(error.path if path is None else path, error.reason, error.detail)


class DatasetError(LongtengError):
    """A dataset root or manifest is unusable as a whole."""


class ConfigError(LongtengError):
    """An option or configuration value is invalid."""


class CheckpointError(LongtengError):
    """A checkpoint or model file is missing, corrupt, unsafe or incompatible."""


class OutputError(LongtengError):
    """Results could not be written (disk full, folder made read-only, I/O error) after work began.

    What was journaled is safe; the message says how to resume.
    """
