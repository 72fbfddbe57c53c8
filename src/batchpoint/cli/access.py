"""``principal``, ``role assignment`` and ``audit`` verbs."""

from __future__ import annotations

import click

from batchpoint.cli.main import client
from batchpoint.cli.output import emit, output_options


@click.group("principal")
def principal() -> None:
    """Users and service principals that can call the server."""


@principal.command("create")
@click.option("-n", "--name", "principal_id", required=True, help="Principal id, e.g. user:alice or sp:etl.")
@click.option("--kind", type=click.Choice(["user", "service_principal"]), default="user", show_default=True)
@click.option("--display-name")
@output_options
def principal_create(principal_id, kind, display_name, output, query) -> None:
    emit(client().principals.create(principal_id, kind, display_name), output, query)


@principal.command("list")
@output_options
def principal_list(output, query) -> None:
    emit(client().principals.list(), output, query)


@principal.group("key")
def key() -> None:
    """API keys of a principal."""


@key.command("create")
@click.option("-n", "--name", "principal_id", required=True)
@click.option("--expires-in-days", type=int, default=90, show_default=True)
@output_options
def key_create(principal_id, expires_in_days, output, query) -> None:
    """Make an API key; it is printed this once only."""
    emit(client().principals.create_key(principal_id, expires_in_days), output, query)


@key.command("list")
@click.option("-n", "--name", "principal_id", required=True)
@output_options
def key_list(principal_id, output, query) -> None:
    emit(client().principals.list_keys(principal_id), output, query)


@key.command("revoke")
@click.option("-n", "--name", "principal_id", required=True)
@click.option("--key-id", required=True)
def key_revoke(principal_id, key_id) -> None:
    client().principals.revoke_key(principal_id, key_id)


@click.group("role")
def role() -> None:
    """Roles: Owner, Contributor, Invoker, Reader, DataReader, DataWriter."""


@role.group("assignment")
def assignment() -> None:
    """Grant roles to principals on a scope: workspace, endpoint:<n>, datastore:<n>, storageaccount:<a>."""


@assignment.command("create")
@click.option("--role", "role_name", required=True)
@click.option("--assignee", required=True, help="Principal id.")
@click.option("--scope", default="workspace", show_default=True)
@output_options
def assignment_create(role_name, assignee, scope, output, query) -> None:
    emit(client().role_assignments.create(assignee, role_name, scope), output, query)


@assignment.command("list")
@click.option("--assignee")
@output_options
def assignment_list(assignee, output, query) -> None:
    emit(client().role_assignments.list(assignee), output, query)


@assignment.command("delete")
@click.option("--id", "assignment_id", type=int, required=True)
def assignment_delete(assignment_id) -> None:
    client().role_assignments.delete(assignment_id)


@click.group("audit")
def audit() -> None:
    """Who invoked what, and who changed which resource."""


@audit.command("list")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--principal")
@output_options
def audit_list(limit, principal, output, query) -> None:
    emit(client().audit.list(limit, principal), output, query)


COMMANDS = [principal, role, audit]
