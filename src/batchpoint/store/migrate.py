"""Bring a database to the newest schema with Alembic (no alembic.ini needed).

The server migrates in a forked child (:func:`upgrade_in_child`): Alembic and Mako, imported for this
one step at start-up, would otherwise stay in the server's memory for its whole life (~10 MiB of its
resident memory; issue 24 §5 keeps the server's peak under 110 MiB on the heart bench).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    cfg = alembic_config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


class MigrationFailed(Exception):
    """:func:`upgrade_in_child` failed: the child's exception, as its class name and message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def upgrade_in_child(engine: Engine) -> None:
    """:func:`upgrade` in a forked child process, so that this process never imports Alembic. The
    child drops the parent's pooled connections without closing them (``dispose(close=False)``, as
    SQLAlchemy prescribes after a fork), connects anew, migrates, and leaves with ``os._exit``
    (none of the parent's finalisers run). Its failure comes back as :class:`MigrationFailed`.
    Where there is no ``fork``, it migrates here."""
    if not hasattr(os, "fork"):
        upgrade(engine)
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        status = 0
        try:
            os.close(read_end)
            engine.dispose(close=False)
            upgrade(engine)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, whatever it was
            status = 1
            try:
                os.write(write_end, f"{exc.__class__.__name__}\0{exc}".encode(errors="replace")[:60_000])
            except OSError:
                pass
        finally:
            os._exit(status)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    _, wait_status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    if code != 0:
        kind, _, message = b"".join(chunks).decode(errors="replace").partition("\0")
        raise MigrationFailed(kind or "ChildExited", message or f"the migration's process exited with {code}")
