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
    """The embedded local server under BATCHPOINT_HOME."""


@server.command("start")
def server_start() -> None:
    """Start it (or find it running) and print its URL."""
    from batchpoint.sdk.local_server import ensure_local_server

    click.echo(ensure_local_server(_home()))


@server.command("stop")
def server_stop() -> None:
    """Stop it; running jobs resume when it starts again."""
    from batchpoint.sdk.local_server import stop_local_server

    click.echo("stopped" if stop_local_server(_home()) else "not running")


@server.command("status")
def server_status() -> None:
    from batchpoint.sdk.local_server import _alive, _read_url

    url = _read_url(_home() / "server.json")
    click.echo(f"running at {url}" if url and _alive(url) else "not running")


COMMANDS = [workspace, server]
