"""The ``volstream`` command line: one entry point for the stack, the services and the trainer.

Every sub-app is imported by name here, so a missing module is an import error, not a silently
absent command. Foundation commands live in ``stack.py`` (up, down, status, broker, topics) and
``inspect_cmds.py`` (tail); each component contributes its verbs through ``register(app)``.
"""

from __future__ import annotations

import typer

import monitoring.report
import services.featurizer.batch
import services.featurizer.cli
import services.ingestor.cli
import services.predictor.cli
import services.validator.cli
import trainer.cli
from devstack import emulator, inspect_cmds, monitor_replay, stack
from devstack.data_fetch import cli as data_fetch_cli

app = typer.Typer(
    name="volstream",
    help="Real-time crypto volatility prediction: run the stack, feed it, train and inspect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

stack.register(app)
inspect_cmds.register(app)
emulator.register(app)
services.ingestor.cli.register(app)
services.validator.cli.register(app)
services.featurizer.cli.register(app)
services.featurizer.batch.register(app)
services.predictor.cli.register(app)
trainer.cli.register(app)
monitoring.report.register(app)
data_fetch_cli.register(app)
monitor_replay.register(app)


if __name__ == "__main__":
    app()
