"""Top-level commands. Each module imports its heavy dependencies only when it runs."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from longteng.cli.evaluate_cmd import evaluate_command
    from longteng.cli.export_cmd import export_command
    from longteng.cli.predict_cmd import EPILOG as PREDICT_EPILOG
    from longteng.cli.predict_cmd import predict_command
    from longteng.cli.reference_cmd import reference_app
    from longteng.cli.score_cmd import EPILOG as SCORE_EPILOG
    from longteng.cli.score_cmd import score_command
    from longteng.cli.station_cmd import serve_command, station_app, users_app
    from longteng.cli.train_cmd import train_command

    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    app.command("export")(export_command)
    app.command("predict", epilog=PREDICT_EPILOG)(predict_command)
    app.command("score", epilog=SCORE_EPILOG)(score_command)
    app.command("serve")(serve_command)
    app.add_typer(users_app, name="users")
    app.add_typer(station_app, name="station")
    app.add_typer(reference_app, name="reference")
