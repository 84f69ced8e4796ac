"""`longteng serve`, `longteng users add` and `longteng station export-dataset`: the inspection
station (extra `serve`). Imports typer only; FastAPI and the runtime load when a command runs."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Optional

import typer

from longteng.cli import console
from longteng.cli.predict_cmd import resolve_model_path, usage_error

users_app = typer.Typer(help="Station accounts.", no_args_is_help=True)
station_app = typer.Typer(help="Station data.", no_args_is_help=True)


def _require_serve_extra() -> None:
    from longteng.errors import ConfigError

    try:
        import fastapi  # noqa: F401
        import multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError("the station needs the serve extra: pip install 'longteng[serve]'") from None


def serve_command(
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Exported model (.onnx). Default: $LONGTENG_MODEL, else runs/demo/model.onnx."),
    data: Path = typer.Option(..., "--data", help="Station folder: its database and photos (created if missing)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (keep 127.0.0.1 behind a TLS reverse proxy)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    max_upload_mb: int = typer.Option(50, "--max-upload-mb", help="Largest photo accepted, in MB."),
    max_pixels: int = typer.Option(100_000_000, "--max-pixels", help="Largest photo accepted, in pixels."),
    batch_size: int = typer.Option(8, "--batch-size", help="Most photos per inference call (the dynamic batcher)."),
) -> None:
    """Run the inspection station: officers' phone pages, expert review, reports and the JSON API."""
    if not 1 <= port <= 65535:
        usage_error("--port", f"must be 1 to 65535, got {port}")
    if not 1 <= max_upload_mb <= 1024:
        usage_error("--max-upload-mb", f"must be 1 to 1024, got {max_upload_mb}")
    if not 1 <= batch_size <= 64:
        usage_error("--batch-size", f"must be 1 to 64, got {batch_size}")
    from longteng.imageio import MAX_PIXELS_LIMIT

    if not 1 <= max_pixels <= MAX_PIXELS_LIMIT:
        usage_error("--max-pixels", f"must be 1 to {MAX_PIXELS_LIMIT}, got {max_pixels}")
    _require_serve_extra()
    from longteng.station.app import serve
    from longteng.station.service import StationConfig

    config = StationConfig(model=resolve_model_path(model), data=data, max_upload_bytes=max_upload_mb * 1024 * 1024,
                           max_pixels=max_pixels, batch_size=batch_size)
    console.info(f"station on http://{host}:{port}/ (data {data}, model {config.model}); Ctrl-C stops it")
    serve(config, host, port)


@users_app.command("add")
def add_user_command(
    name: str = typer.Argument(..., help="Login name."),
    role: str = typer.Option(..., "--role", help="officer, expert or admin."),
    data: Path = typer.Option(..., "--data", help="Station folder."),
) -> None:
    """Create an account: the password is read from a prompt (or the first line of stdin); the API token is printed once."""
    from longteng.station.accounts import add_user
    from longteng.station.db import ROLES, Database

    if role not in ROLES:
        usage_error("--role", f"{role!r} unknown; allowed: {', '.join(ROLES)}")
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            usage_error("password", "the two entries differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    user, token = add_user(Database(data), name, role, password)
    console.info(f"added {user.name} ({user.role}); API token (shown only now, keep it secret):")
    typer.echo(token)


@users_app.command("list")
def list_users_command(data: Path = typer.Option(..., "--data", help="Station folder.")) -> None:
    """The station's accounts: name, role, created."""
    from longteng.station.db import Database

    for row in Database(data).query("SELECT name, role, created_at FROM users ORDER BY id"):
        typer.echo(f"{row['name']}\t{row['role']}\t{row['created_at']}")


@users_app.command("remove")
def remove_user_command(
    name: str = typer.Argument(..., help="Login name."),
    data: Path = typer.Option(..., "--data", help="Station folder."),
) -> None:
    """Close an account: its token and sessions stop working at once; its cases and reviews stay, as evidence."""
    from longteng.station.accounts import remove_user
    from longteng.station.db import Database

    remove_user(Database(data), name)
    console.info(f"removed {name}: its token and sessions no longer work")


@station_app.command("export-dataset")
def export_dataset_command(
    out: Path = typer.Argument(..., help="New dataset folder."),
    data: Path = typer.Option(..., "--data", help="Station folder."),
) -> None:
    """Write the expert-reviewed photos as a dataset (folders + manifest.csv), ready for longteng train --init."""
    from longteng.station.export import export_dataset

    summary = export_dataset(data, out)
    console.info(f"wrote {summary.photos} reviewed photos of {summary.cases} cases to {summary.out} "
                 f"(check it with: longteng data check {summary.out})")
