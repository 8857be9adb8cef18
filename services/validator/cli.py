"""``volstream dlq show`` and ``volstream dlq replay``: the dead-letter queue for operators."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

dlq_app = typer.Typer(
    help="Inspect and replay the dead-letter queue (ticks.dlq).", no_args_is_help=True
)

Reasons = Annotated[
    list[str] | None, typer.Option("--reason", help="only letters with this primary reason code")
]


def register(app: typer.Typer) -> None:
    app.add_typer(dlq_app, name="dlq")


@dlq_app.command("show")
def show(
    n: Annotated[int, typer.Option("-n", help="examples to print (the most recent)")] = 5,
    reason: Reasons = None,
) -> None:
    """Summarise the dead letters by reason, then print the last N examples."""
    from services.common.settings import get_settings
    from services.validator import dlq, dlq_io

    letters = asyncio.run(dlq_io.read_letters(get_settings()))
    letters = [d for d in letters if not reason or d.codes[0] in reason]
    for line in dlq.render_summary(dlq.summarize(letters)):
        typer.echo(line)
    if n > 0 and letters:
        typer.echo(f"\nlast {min(n, len(letters))} examples:")
        for d in sorted(letters, key=lambda d: d.dead_at)[-n:]:
            typer.echo("\n".join(dlq.render_example(d)))


@dlq_app.command("replay")
def replay(
    reason: Reasons = None,
    all_: Annotated[
        bool, typer.Option("--all", help="every letter, not only those not replayed yet")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count only, send nothing")] = False,
    to_lake: Annotated[
        bool,
        typer.Option(
            "--to-lake",
            help="write the candles of `revised` and `late` letters into the lake instead",
        ),
    ] = False,
) -> None:
    """Re-submit dead letters to ticks.raw after a fix (idempotent: the validator dedups).

    Each run replays the letters that arrived since the previous run (consumer group
    ``dlq-replay``), so letters rejected again are not re-sent in a loop; ``--all`` starts over.
    ``--to-lake`` is the batch path for revisions: the stream keeps the first values of a minute,
    the lake takes the revised (and late) ones, so the next training run sees them (group
    ``dlq-lake``).
    """
    from services.common.settings import get_settings
    from services.validator import dlq_io

    if to_lake:
        written, skipped = asyncio.run(
            dlq_io.replay_to_lake(get_settings(), set(reason or ()), all_, dry_run)
        )
        verb = "would write" if dry_run else "wrote"
        typer.echo(f"{verb} {written} candles into the lake ({skipped} letters skipped)")
        return
    sent, skipped = asyncio.run(
        dlq_io.replay_letters(get_settings(), set(reason or ()), all_, dry_run)
    )
    verb = "would re-send" if dry_run else "re-sent"
    typer.echo(f"{verb} {sent} messages to ticks.raw ({skipped} letters skipped)")
