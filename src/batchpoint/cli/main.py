"""Entry point: ``batchpoint <group> <verb>``. Errors print one ``ERROR:`` line, never a trace."""

from __future__ import annotations

import sys
from typing import Any

import click

from batchpoint._version import __version__
from batchpoint.exceptions import BatchpointError

_client: Any = None


def client() -> Any:
    """The SDK client, created on first use (starting the local server if none is configured)."""
    global _client
    if _client is None:
        from batchpoint.cli.output import install_transfer_progress
        from batchpoint.sdk.client import MLClient

        install_transfer_progress()  # uploads and downloads draw a bar on a terminal
        _client = MLClient()
    return _client


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="batchpoint")
def cli() -> None:
    """Batchpoint: self-hosted batch endpoints, with az ml's verbs.

    With no BATCHPOINT_SERVER_URL set, commands use a local server under BATCHPOINT_HOME
    (default ~/.batchpoint), started on first use: SQLite, a local folder as the default data
    store 'workspaceblobstore', and a local process pool.
    """


def _register() -> None:
    from batchpoint.cli import access, assets, compute, endpoints, environments, jobs, prefixes, workspace

    for module in (assets, compute, endpoints, jobs, workspace, access, environments):
        for command in module.COMMANDS:
            cli.add_command(command)
    from batchpoint.cli import azure_env

    cli.add_command(azure_env.azure_env)  # eval "$(batchpoint azure-env)": the real azure-ai-ml (docs/azure-client.md)
    prefixes.install(cli)  # --endpoint for --endpoint-name, as az takes unambiguous prefixes


_register()


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="batchpoint", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BatchpointError as exc:
        click.echo(f"ERROR: {exc.message}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0)
