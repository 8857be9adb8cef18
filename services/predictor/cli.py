"""``volstream predictor serve|latest|model|reload`` (plugin of the CLI)."""

from __future__ import annotations

from typing import Annotated

import typer

predictor_app = typer.Typer(help="The prediction service: run it, or ask the running one.")


def register(app: typer.Typer) -> None:
    app.add_typer(predictor_app, name="predictor")


def _url(path: str) -> str:
    from services.predictor.settings import PredictorSettings

    s = PredictorSettings()
    return f"http://{s.host}:{s.port}{path}"


def _show(response: object) -> None:
    import httpx

    assert isinstance(response, httpx.Response)
    typer.echo(response.text)
    if response.status_code >= 400:
        raise typer.Exit(1)


@predictor_app.command("serve")
def serve() -> None:
    """Run the predictor in the foreground (same as ``python -m services.predictor``)."""
    from services.predictor.__main__ import main

    main()


@predictor_app.command("latest")
def latest(symbol: Annotated[str, typer.Option(help="base symbol")] = "BTC") -> None:
    """Print the newest champion prediction of the running predictor."""
    import httpx

    _show(httpx.get(_url("/predictions/latest"), params={"symbol": symbol.upper()}, timeout=5))


@predictor_app.command("model")
def model() -> None:
    """Print the models the running predictor serves (champion, challenger, last error)."""
    import httpx

    _show(httpx.get(_url("/model"), timeout=5))


@predictor_app.command("reload")
def reload() -> None:
    """Ask the running predictor to reload its models now (needs PREDICTOR_ADMIN_API_KEY)."""
    import httpx

    from services.predictor.settings import PredictorSettings

    key = PredictorSettings().admin_api_key
    headers = {"X-API-Key": key.get_secret_value()} if key else {}
    _show(httpx.post(_url("/model/reload"), headers=headers, timeout=120))
