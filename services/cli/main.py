"""The ``volstream`` command line: one entry point for the stack, the services and the trainer.

Foundation commands live here (broker, topics, status, tail) and in ``stack.py`` (up, down).
Each component adds its own verbs through a ``register(app)`` function in its ``cli`` module
(listed in ``PLUGINS``), so this file only wires.
"""

from __future__ import annotations

import importlib
import importlib.util

import typer

from services.cli import inspect_cmds, stack

app = typer.Typer(
    name="volstream",
    help="Real-time crypto volatility prediction: run the stack, feed it, train and inspect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: Modules that contribute commands with ``register(app: typer.Typer) -> None``.
PLUGINS = (
    "services.ingestor.cli",
    "services.validator.cli",
    "services.featurizer.cli",
    "services.featurizer.batch",
    "services.predictor.cli",
    "trainer.cli",
    "monitoring.report",
    "bench.cli",
)

stack.register(app)
inspect_cmds.register(app)
for _name in PLUGINS:
    if importlib.util.find_spec(_name.rpartition(".")[0]) and importlib.util.find_spec(_name):
        importlib.import_module(_name).register(app)


if __name__ == "__main__":
    app()
