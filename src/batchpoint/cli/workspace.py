"""``workspace show`` and ``server start|stop|status`` (the embedded local server)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from batchpoint.cli.main import client
from batchpoint.cli.output import emit, output_options


@click.group("workspace")
def workspace() -> None:
    """The workspace this server serves."""


@workspace.command("show")
@output_options
def workspace_show(output, query) -> None:
    emit(client().workspaces.get(), output, query)


def _home() -> Path:
    return Path(os.environ.get("BATCHPOINT_HOME") or Path.home() / ".batchpoint").expanduser()


@click.group("server")
def server() -> None:
    """The embedded local server under BATCHPOINT_HOME (or, with BATCHPOINT_SERVER_URL set, the server there)."""


def _remote() -> str | None:
    """BATCHPOINT_SERVER_URL: the server every other command talks to, when it is set."""
    url = os.environ.get("BATCHPOINT_SERVER_URL", "").strip().rstrip("/")
    return url or None


def _health(url: str) -> dict | None:
    """The server's /health answer (its id under "server"), or None when nothing healthy answers."""
    import httpx

    try:
        response = httpx.get(f"{url}/health", timeout=5.0)
        return response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def _running(url: str, health: dict) -> str:
    return f"running at {url}" + (f" (server {health['server']})" if health.get("server") else "")


@server.command("start")
def server_start() -> None:
    """Start it (or find it running) and print its URL. With BATCHPOINT_SERVER_URL set, nothing is
    started: it checks the server there, which the other commands use (exit 1 if none answers)."""
    from batchpoint.sdk.local_server import ensure_local_server

    url = _remote()
    if url is not None:
        health = _health(url)
        if health is None:
            raise click.ClickException(
                f"no Batchpoint server answers at {url} (BATCHPOINT_SERVER_URL); start it there, or unset "
                "BATCHPOINT_SERVER_URL to start the local server under BATCHPOINT_HOME")
        click.echo(url)
        click.echo(f"BATCHPOINT_SERVER_URL is set: commands use the server {_running(url, health)[len('running '):]}; "
                   "no local server was started", err=True)
        return
    click.echo(ensure_local_server(_home()))


@server.command("stop")
def server_stop() -> None:
    """Stop the local one under BATCHPOINT_HOME; running jobs resume when it starts again."""
    from batchpoint.sdk.local_server import stop_local_server

    click.echo("stopped" if stop_local_server(_home()) else "not running")


@server.command("status")
def server_status() -> None:
    """Whether the server the commands use answers: BATCHPOINT_SERVER_URL's, else the local one
    under BATCHPOINT_HOME, and its server id."""
    from batchpoint.sdk.local_server import _read_url

    url = _remote()
    where = " (BATCHPOINT_SERVER_URL)" if url else ""
    url = url or _read_url(_home() / "server.json")
    health = _health(url) if url else None
    if health is None:
        click.echo(f"not running{f' at {url}' if url else ''}{where}")
        return
    click.echo(_running(url, health) + where)


COMMANDS = [workspace, server]
