"""``python -m trainer train|evaluate|promote``: the trainer's commands without the full CLI."""

from __future__ import annotations

import typer

from trainer.cli import register

app = typer.Typer(name="trainer", no_args_is_help=True, pretty_exceptions_enable=False)
register(app)

if __name__ == "__main__":
    app()
