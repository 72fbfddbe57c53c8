"""``python -m batchpoint.server recover-owner``: give a principal Owner again, from the server's host.

The way back in when no Owner key works any more (the keys were revoked, lost or expired, or an
older server let the last Owner assignment be deleted). It needs no running server and no API
key, only what the server's host account can read: the home's metadata database (or
``BATCHPOINT_DATABASE_URL``) and its server key (``<home>/server.key``, the API key pepper). It
works while the server runs too (SQLite in WAL mode; the server reads keys and assignments from the
database on every request).

It makes sure the principal (default ``user:<local user>``, the one the server bootstraps) exists
and has ``Owner`` on ``workspace``, creates a fresh API key for it, writes the key to
``<home>/owner.key`` (mode 0600, atomically) and records the recovery in the audit log. Other keys
and assignments are left as they are.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from batchpoint.exceptions import BatchpointError, ValidationError
from batchpoint.identity.secrets import SecretBox
from batchpoint.workspace.principals import OWNER_KEY_TTL, AuthService
from batchpoint.settings import Settings
from batchpoint.store.sql import SqlMetadataStore

#: The same rule as the REST API's principal ids (``POST /principals``).
PRINCIPAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")


@dataclass(frozen=True)
class Recovered:
    principal_id: str
    assignment_id: int
    key_id: str
    key_path: Path


def default_principal() -> str:
    """The principal the server bootstraps as the local owner."""
    return f"user:{getpass.getuser()}"


def recover_owner(settings: Settings, principal_id: str | None = None) -> Recovered:
    """Give ``principal_id`` Owner on the workspace and a fresh key in ``<home>/owner.key``."""
    principal_id = principal_id or default_principal()
    if not PRINCIPAL_ID.match(principal_id):
        raise ValidationError(f"principal id '{principal_id}' is not valid: use letters, digits and _ . : @ - "
                              "(at most 128), e.g. user:alice")
    home = Path(settings.home)
    key_file = home / "server.key"
    if not key_file.exists():
        raise BatchpointError(f"{home} is not a Batchpoint server home: it has no server.key. Pass the home the "
                              "server runs with: --home <BATCHPOINT_HOME>")
    secrets = SecretBox.load(key_file)  # refuses a key file that others may read
    store = SqlMetadataStore(settings.resolved_database_url())
    try:
        store.migrate()
        auth = AuthService(store, secrets)
        kind = "user" if principal_id.startswith("user:") else "service_principal"
        auth.create_principal(principal_id, kind, "local owner")  # kept as it is when it exists
        assignment = store.add_role_assignment(principal_id, "Owner", "workspace")  # idempotent
        plaintext, key = auth.create_key(principal_id, OWNER_KEY_TTL)
        path = home / "owner.key"
        write_private(path, plaintext + "\n")
        store.add_audit(principal_id, "RECOVER_OWNER", "/roleAssignments", 201, {
            "via": "python -m batchpoint.server recover-owner", "os_user": getpass.getuser(),
            "assignment_id": assignment.id, "key_id": key.key_id})
    finally:
        store.close()
    return Recovered(principal_id, assignment.id, key.key_id, path)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically (a temporary file, then a rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def main(argv: list[str]) -> int:
    """``recover-owner [--home HOME] [--principal ID]``; prints one line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m batchpoint.server recover-owner",
        description="Give a principal Owner on the workspace again and write a fresh API key for it to "
                    "<home>/owner.key (mode 0600). Run it on the server's host, as the account that runs "
                    "the server; it works whether the server is running or not.")
    parser.add_argument("--home", default=None, help="the server's BATCHPOINT_HOME (default: $BATCHPOINT_HOME, "
                                                     "else ~/.batchpoint)")
    parser.add_argument("--principal", default=None,
                        help=f"the principal to make Owner (default: {default_principal()}, the local owner)")
    args = parser.parse_args(argv)
    settings = Settings(home=Path(args.home).expanduser()) if args.home else Settings()
    try:
        done = recover_owner(settings, args.principal)
    except BatchpointError as exc:
        print(f"ERROR: {exc.message}", file=sys.stderr)
        return 1
    print(f"recover-owner: principal '{done.principal_id}' has Owner on workspace (role assignment "
          f"{done.assignment_id}); its new API key ({done.key_id}) is in {done.key_path} (mode 0600)")
    return 0
