"""Which server this is, and whether it shares the workspace's home (docs/multi-server.md).

* **The home check.** Servers on one database must share one ``BATCHPOINT_HOME``: the job folders,
  the models' and code copies, ``server.key`` and ``owner.key`` live there. The first server of a
  database writes a random id to ``<home>/home.id`` and the same id (and the home's path) to the
  database (``workspace_facts``); every later server compares its home's file with it and refuses
  to start when they differ or its home has none, naming both homes — before it makes an owner
  key, a data store or claims a job. (A home that had a file but a database that has no id yet —
  a database made before this check, or a new one — adopts the home's id.)
* **The server id.** Stable across restarts: kept in ``<home>/servers/<host>-<port>.id`` (the port
  asked for; 0 when a free one is picked), shown in the log at start, on each job (``job show``:
  ``server``, the jobs' ``owner``), in ``/metrics`` (``batchpoint_server_info``) and on the web
  page (``/ui/servers``). A second live process that would take the same id (two servers on one
  host and home, both on a free port) gets a fresh one for its life instead.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from batchpoint._internal.clock import as_utc, utcnow
from batchpoint._version import __version__
from batchpoint.exceptions import BatchpointError
from batchpoint.settings import Settings
from batchpoint.store.sql import SqlMetadataStore
from batchpoint.store.tables import ServerRow, WorkspaceFactRow

HOME_ID_FILE = "home.id"


class HomeMismatchError(BatchpointError):
    code = "home_mismatch"
    status_code = 500


def _fact(store: SqlMetadataStore, key: str) -> str | None:
    with store.session() as s:
        row = s.get(WorkspaceFactRow, key)
        return row.value if row is not None else None


def _add_facts(store: SqlMetadataStore, facts: dict[str, str]) -> None:
    """Insert the facts unless another server did first (then theirs stand)."""
    try:
        with store.session() as s:
            for key, value in facts.items():
                s.add(WorkspaceFactRow(key=key, value=value, created_at=utcnow()))
            s.commit()
    except IntegrityError:
        pass


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as out:
        out.write(text + "\n")
    os.replace(tmp, path)


def check_home(settings: Settings, store: SqlMetadataStore) -> str:
    """The home's id, after checking it is the database's home (HomeMismatchError otherwise)."""
    home = settings.home.resolve()
    marker = home / HOME_ID_FILE
    mine = marker.read_text().strip() if marker.is_file() else None
    theirs, where = _fact(store, "home_id"), _fact(store, "home_path")
    database = _database_name(settings)
    if theirs is None:
        if mine is None:
            mine = f"home-{secrets.token_hex(8)}"
            _write_private(marker, mine)
        _add_facts(store, {"home_id": mine, "home_path": str(home)})
        theirs, where = _fact(store, "home_id"), _fact(store, "home_path")
    if mine != theirs:
        found = f"its {HOME_ID_FILE} holds {mine}" if mine else f"it has no {HOME_ID_FILE}"
        raise HomeMismatchError(
            f"this server's BATCHPOINT_HOME is {home} ({found}), but the database {database} belongs to the "
            f"workspace whose home is {where} ({HOME_ID_FILE} {theirs}). Servers on one database must share one "
            f"home (the job folders, models, server.key and owner.key are there): start this server with "
            f"BATCHPOINT_HOME={where} (the same shared path on every machine), or give it a database of its own "
            "(BATCHPOINT_DATABASE_URL). Nothing was changed", details={"home": str(home), "database_home": where})
    return mine


def _database_name(settings: Settings) -> str:
    """The database URL without its password."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", settings.resolved_database_url())


@dataclass
class ServerIdentity:
    id: str
    host: str
    instance: str


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-") or "server"


def server_identity(settings: Settings, store: SqlMetadataStore, port: int | None = None) -> ServerIdentity:
    """This process's server id (module docstring), registered in ``servers`` as alive."""
    host = socket.gethostname()
    short = _safe(host.split(".")[0])[:40]
    asked = settings.server.port if port is None else port
    path = settings.home / "servers" / f"{_safe(host)[:100]}-{asked}.id"
    wanted = path.read_text().strip() if path.is_file() else ""
    if not wanted:
        wanted = f"{short}-{secrets.token_hex(3)}"
        _write_private(path, wanted)
    instance = secrets.token_hex(8)
    stale = utcnow() - timedelta(seconds=max(6.0, settings.jobs.heartbeat_interval_s * 3))
    chosen = wanted
    with store.session() as s:
        row = s.get(ServerRow, wanted)
        if row is not None and as_utc(row.seen_at) > stale and not (row.host == host and not _alive(row.pid)):
            chosen = f"{short}-{secrets.token_hex(3)}"  # that id is alive elsewhere: one of our own for now
            row = None
        now = utcnow()
        if row is None:
            s.add(ServerRow(id=chosen, host=host, pid=os.getpid(), home=str(settings.home.resolve()),
                            version=__version__, instance=instance, started_at=now, seen_at=now))
        else:
            row.host, row.pid, row.home, row.version = host, os.getpid(), str(settings.home.resolve()), __version__
            row.instance, row.started_at, row.seen_at = instance, now, now
        s.commit()
    return ServerIdentity(chosen, host, instance)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs (a server restarted after a kill keeps its id)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def list_servers(store: SqlMetadataStore) -> list[ServerRow]:
    with store.session() as s:
        return list(s.scalars(select(ServerRow).order_by(ServerRow.started_at.desc())))


class Liveness:
    """Renews this server's ``seen_at`` every heartbeat interval (a daemon thread)."""

    def __init__(self, store: SqlMetadataStore, identity: ServerIdentity, interval_s: float) -> None:
        self.store, self.identity, self.interval = store, identity, interval_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="server-liveness", daemon=True)

    def start(self) -> Liveness:
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                with self.store.session() as s:
                    row = s.get(ServerRow, self.identity.id)
                    if row is not None and row.instance == self.identity.instance:
                        row.seen_at = utcnow()
                        s.commit()
            except Exception:  # noqa: BLE001 - a busy database: the next beat tries again
                continue

    def close(self) -> None:
        """Stop, and give the id back (a server started next on this home and port takes it)."""
        self.stop.set()
        try:
            with self.store.session() as s:
                row = s.get(ServerRow, self.identity.id)
                if row is not None and row.instance == self.identity.instance:
                    row.seen_at = row.started_at - timedelta(days=1)
                    s.commit()
        except Exception:  # noqa: BLE001 - the database is gone: the id frees itself when stale
            pass
