"""`longteng data ...`: dataset tools. Each command lives in its own module."""

from __future__ import annotations

import typer

data_app = typer.Typer(help="Dataset tools: synthesize demo data, check a dataset.", no_args_is_help=True)

# Imported for their side effect of registering commands on data_app.
from longteng.cli import data_check, data_synth  # noqa: E402,F401
