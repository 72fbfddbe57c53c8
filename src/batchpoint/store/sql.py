"""The metadata store: one SQL implementation for SQLite (default) and PostgreSQL.

Every verb opens a managed session that commits or rolls back; rows come back detached, so
callers never hold a session. Lists are paginated with ``limit``/``offset``. Choosing PostgreSQL is
a configuration change: ``BATCHPOINT_DATABASE_URL=postgresql+psycopg://user:pw@host/db``.
"""

from __future__ import annotations

import heapq
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import bindparam, create_engine, delete, event, exists, func, insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, aliased, sessionmaker

from batchpoint._internal.clock import utcnow
from batchpoint.entities import JobProgress
from batchpoint.exceptions import BatchpointError, ConflictError, NotFoundError, ValidationError
from batchpoint.store import migrate
from batchpoint.store.tables import (
    ApiKeyRow,
    AssetRow,
    AuditRow,
    PrincipalRow,
    RoleAssignmentRow,
    ComputeRow,
    DatastoreRow,
    DeploymentRow,
    EndpointRow,
    JobEventRow,
    JobFailureRow,
    JobRow,
    UploadRow,
)

R = TypeVar("R")

#: The job columns a job event's ``data`` carries: the counters after the change.
PROGRESS_FIELDS: tuple[str, ...] = tuple(JobProgress.model_fields)
#: An event to append with a job change: ``type`` and, as needed, ``status``, ``message``, ``data``.
EventDraft = dict[str, Any]
#: Appends one job event numbered on from the job's last (parameters: the columns, and ``event_job``).
_INSERT_EVENT = insert(JobEventRow.__table__).values(seq=select(
    func.coalesce(func.max(JobEventRow.seq), 0) + 1).where(JobEventRow.job_name == bindparam("event_job")).scalar_subquery())


def _insert_events(s: Session, name: str, events: Sequence[EventDraft], counters: dict[str, Any]) -> None:
    """Append ``events`` to job ``name``'s history, one at a time (each numbers on from the one
    before); their ``data`` starts from the job's counters after the change."""
    at, conn = utcnow(), s.connection()
    for d in events:
        conn.execute(_INSERT_EVENT, {"job_name": name, "event_job": name, "at": at, "type": d["type"],
                                     "status": d.get("status"), "message": d.get("message"),
                                     "data": {**counters, **(d.get("data") or {})}})


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


class SqlMetadataStore:
    """Workspace metadata. Create with a SQLAlchemy URL; call :meth:`migrate` once at start-up."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self, in_child: bool = False) -> None:
        """Bring the database to the newest schema; ``in_child``: in a forked child process, so this
        process never imports Alembic (the server's start-up: ``store/migrate.py``)."""
        try:
            if in_child:
                migrate.upgrade_in_child(self.engine)
            else:
                migrate.upgrade(self.engine)
        except SQLAlchemyError as exc:
            raise BatchpointError(f"cannot prepare the metadata database: {exc.__class__.__name__}: {exc}") from exc
        except migrate.MigrationFailed as exc:
            raise BatchpointError(f"cannot prepare the metadata database: {exc.kind}: {exc}") from exc

    def close(self) -> None:
        self.engine.dispose()

    #: a SQLite database whose disk has less free space than this is reported unwritable
    MIN_FREE_BYTES = 256 * 1024

    def write_problem(self) -> str | None:
        """Why the database cannot take writes now (``GET /health``), or None when it can: for a
        SQLite file, its disk full (less than :data:`MIN_FREE_BYTES` free: a write that grows the
        write-ahead log fails there, whatever a small one does) or not writable; for any database,
        a real write (``alembic_version`` rewritten as it is, committed) that fails."""
        cached = getattr(self, "_write_checked", None)
        if cached is not None and time.monotonic() - cached[0] < 1.0:  # one probe a second, however often asked
            return cached[1]
        problem = self._write_problem()
        self._write_checked = (time.monotonic(), problem)
        return problem

    def _write_problem(self) -> str | None:
        path = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        if path and path != ":memory:":
            folder = os.path.dirname(os.path.abspath(path))
            try:
                st = os.statvfs(folder)
            except OSError as exc:
                return f"its folder {folder} cannot be read: {exc}"
            free = st.f_bavail * st.f_frsize
            if free < self.MIN_FREE_BYTES:
                return f"the disk holding {path} is full ({free} bytes free)"
            if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
                return f"{path} (or its folder) is read-only for this server"
        try:
            with self.session() as s:
                s.execute(text("UPDATE alembic_version SET version_num = version_num"))
        except SQLAlchemyError as exc:
            return f"a write failed: {exc.__class__.__name__}: {getattr(exc, 'orig', None) or exc}"
        return None

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except IntegrityError as exc:
                session.rollback()
                raise ConflictError(f"the change conflicts with an existing resource: {exc.orig}") from exc
            except BaseException:
                session.rollback()
                raise

    def _get(self, row_type: type[R], key: Any, what: str) -> R:
        with self.session() as s:
            row = s.get(row_type, key)
        if row is None:
            raise NotFoundError(f"{what} was not found")
        return row

    # -- data stores ------------------------------------------------------------------------
    def put_datastore(self, row: DatastoreRow) -> DatastoreRow:
        now = utcnow()
        with self.session() as s:
            existing = s.get(DatastoreRow, row.name)
            row.created_at = existing.created_at if existing else now
            row.updated_at = now
            if row.is_default:
                s.execute(update(DatastoreRow).values(is_default=False))
            merged = s.merge(row)
        return merged

    def get_datastore(self, name: str) -> DatastoreRow:
        return self._get(DatastoreRow, name, f"data store '{name}'")

    def find_datastore(self, name: str) -> DatastoreRow | None:
        with self.session() as s:
            return s.get(DatastoreRow, name)

    def get_default_datastore(self) -> DatastoreRow:
        with self.session() as s:
            row = s.scalars(select(DatastoreRow).where(DatastoreRow.is_default.is_(True))).first()
        if row is None:
            raise NotFoundError("the workspace has no default data store")
        return row

    def list_datastores(self, limit: int = 1000, offset: int = 0) -> list[DatastoreRow]:
        with self.session() as s:
            return list(s.scalars(select(DatastoreRow).order_by(DatastoreRow.name).limit(limit).offset(offset)))

    # -- data assets and models -------------------------------------------------------------
    def create_asset(self, collection: str, **fields: Any) -> AssetRow:
        with self.session() as s:
            version = fields.get("version")
            if not version:
                existing = s.scalars(
                    select(AssetRow.version).where(AssetRow.collection == collection, AssetRow.name == fields["name"])
                ).all()
                numeric = [int(v) for v in existing if v.isdigit()]
                fields["version"] = str(max(numeric, default=0) + 1)
            elif not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", str(version)):
                raise ValidationError(f"version '{version}' is not valid: use letters, digits, '.', '_' or '-'")
            dup = s.scalars(
                select(AssetRow).where(
                    AssetRow.collection == collection, AssetRow.name == fields["name"],
                    AssetRow.version == str(fields["version"]),
                )
            ).first()
            if dup is not None:
                kind = "data asset" if collection == "data" else "model"
                raise ConflictError(
                    f"{kind} '{fields['name']}' version {fields['version']} already exists; versions are "
                    "immutable: create a new version (omit version to get the next number)"
                )
            row = AssetRow(collection=collection, created_at=utcnow(), **{**fields, "version": str(fields["version"])})
            s.add(row)
        return row

    def get_asset(self, collection: str, name: str, version: str | None = None, label: str | None = None) -> AssetRow:
        kind = "data asset" if collection == "data" else "model"
        with self.session() as s:
            rows = s.scalars(select(AssetRow).where(AssetRow.collection == collection, AssetRow.name == name)).all()
        if not rows:
            raise NotFoundError(f"{kind} '{name}' was not found; list them with 'batchpoint {collection if collection == 'data' else 'model'} list'")
        if version is not None:
            for row in rows:
                if row.version == str(version):
                    return row
            known = ", ".join(sorted((r.version for r in rows), key=_version_key))
            raise NotFoundError(f"{kind} '{name}' has no version '{version}'; known versions: {known}")
        if label not in (None, "latest"):
            raise NotFoundError(f"{kind} '{name}' has no label '{label}'; the only label is 'latest'")
        return max(rows, key=lambda r: (r.created_at, _version_key(r.version)))

    def delete_asset(self, collection: str, name: str, version: str) -> None:
        with self.session() as s:
            for row in s.scalars(select(AssetRow).where(
                AssetRow.collection == collection, AssetRow.name == name, AssetRow.version == version
            )):
                s.delete(row)

    def list_assets(self, collection: str, name: str | None = None, limit: int = 1000, offset: int = 0) -> list[AssetRow]:
        with self.session() as s:
            q = select(AssetRow).where(AssetRow.collection == collection)
            if name:
                q = q.where(AssetRow.name == name)
            return list(s.scalars(q.order_by(AssetRow.name, AssetRow.created_at).limit(limit).offset(offset)))

    def registered_paths(self) -> list[tuple[str, str]]:
        """(what, path) of every registered data asset, model and deployment code folder: the
        locations a job output may never overlap (see ``jobs/output.py``)."""
        with self.session() as s:
            assets = s.execute(select(AssetRow.collection, AssetRow.name, AssetRow.version, AssetRow.path)).all()
            deployments = s.execute(select(DeploymentRow.endpoint_name, DeploymentRow.name, DeploymentRow.spec)).all()
        out = [(f"{'data asset' if c == 'data' else 'model'} '{n}:{v}'", p) for c, n, v, p in assets]
        for endpoint, name, spec in deployments:
            code = (spec.get("code_configuration") or {}).get("code")
            if isinstance(code, str):
                out.append((f"the code of deployment '{endpoint}/{name}'", code))
        return out

    # -- computes, endpoints, deployments ---------------------------------------------------
    def put_compute(self, name: str, spec: dict[str, Any], secret: str | None = None) -> ComputeRow:
        return self._put_doc(ComputeRow, {"name": name}, spec, secret=secret)

    def get_compute(self, name: str) -> ComputeRow:
        return self._get(ComputeRow, name, f"compute '{name}'")

    def list_computes(self) -> list[ComputeRow]:
        with self.session() as s:
            return list(s.scalars(select(ComputeRow).order_by(ComputeRow.name)))

    def put_endpoint(self, name: str, spec: dict[str, Any]) -> EndpointRow:
        return self._put_doc(EndpointRow, {"name": name}, spec)

    def get_endpoint(self, name: str) -> EndpointRow:
        return self._get(EndpointRow, name, f"batch endpoint '{name}'")

    def list_endpoints(self) -> list[EndpointRow]:
        with self.session() as s:
            return list(s.scalars(select(EndpointRow).order_by(EndpointRow.name)))

    def delete_endpoint(self, name: str) -> None:
        with self.session() as s:
            row = s.get(EndpointRow, name)
            if row is None:
                raise NotFoundError(f"batch endpoint '{name}' was not found")
            for dep in s.scalars(select(DeploymentRow).where(DeploymentRow.endpoint_name == name)):
                s.delete(dep)
            s.delete(row)

    def put_deployment(self, endpoint: str, name: str, spec: dict[str, Any]) -> DeploymentRow:
        return self._put_doc(DeploymentRow, {"endpoint_name": endpoint, "name": name}, spec)

    def get_deployment(self, endpoint: str, name: str) -> DeploymentRow:
        return self._get(DeploymentRow, (endpoint, name), f"deployment '{name}' of batch endpoint '{endpoint}'")

    def list_deployments(self, endpoint: str) -> list[DeploymentRow]:
        with self.session() as s:
            q = select(DeploymentRow).where(DeploymentRow.endpoint_name == endpoint).order_by(DeploymentRow.name)
            return list(s.scalars(q))

    def delete_deployment(self, endpoint: str, name: str) -> None:
        with self.session() as s:
            row = s.get(DeploymentRow, (endpoint, name))
            if row is None:
                raise NotFoundError(f"deployment '{name}' of batch endpoint '{endpoint}' was not found")
            s.delete(row)

    def _put_doc(self, row_type: type[R], key: dict[str, Any], spec: dict[str, Any], **extra: Any) -> R:
        now = utcnow()
        with self.session() as s:
            pk = tuple(key.values()) if len(key) > 1 else next(iter(key.values()))
            row = s.get(row_type, pk)
            if row is None:
                row = row_type(**key, spec=spec, created_at=now, updated_at=now, **extra)
                s.add(row)
            else:
                row.spec = spec
                row.updated_at = now
                for k, v in extra.items():
                    setattr(row, k, v)
        return row

    # -- jobs -------------------------------------------------------------------------------
    # The store writes what it is told: statuses are arguments (``jobs/lifecycle.py`` decides which),
    # a change is a compare-and-set, and the ``events`` given with a change are appended to the
    # job's history in the same transaction. Every event append first UPDATEs the job's row, which
    # locks it, so two writers number one job's events one after the other (``seq`` = last + 1);
    # the unique (job_name, seq) constraint backs that up, and a clash is retried.
    def create_job(self, *, events: Sequence[EventDraft] = (), **fields: Any) -> JobRow:
        now = utcnow()
        with self.session() as s:
            if s.get(JobRow, fields["name"]) is not None:
                raise ConflictError(f"a job named '{fields['name']}' already exists; job names are unique")
            row = JobRow(created_at=now, updated_at=now, **fields)
            s.add(row)
            if events:
                s.flush()
                _insert_events(s, row.name, events, {k: getattr(row, k) for k in PROGRESS_FIELDS})
        return row

    def get_job(self, name: str) -> JobRow:
        return self._get(JobRow, name, f"job '{name}'")

    def list_jobs(self, endpoint: str | None = None, deployment: str | None = None, created_by: str | None = None,
                  limit: int = 100, offset: int = 0, statuses: Iterable[str] | None = None) -> list[JobRow]:
        with self.session() as s:
            q = select(JobRow)
            if statuses is not None:
                q = q.where(JobRow.status.in_(tuple(statuses)))
            if endpoint:
                q = q.where(JobRow.endpoint_name == endpoint)
            if deployment:
                q = q.where(JobRow.deployment_name == deployment)
            if created_by:
                q = q.where(JobRow.created_by == created_by)
            return list(s.scalars(q.order_by(JobRow.created_at.desc()).limit(limit).offset(offset)))

    def update_job(self, name: str, *, expect_status: Iterable[str] | None = None, events: Sequence[EventDraft] = (),
                   keep: Iterable[str] = (), **fields: Any) -> bool:
        """Set columns; with ``expect_status`` only when the job is in one of those statuses
        (compare-and-set). Columns named in ``keep`` are set only where they are still empty (a first
        start time). ``events`` are appended only when the row changed. Returns whether it changed."""
        if expect_status is not None:
            expect_status = tuple(expect_status)
            if not expect_status:  # () allows no status: nothing moves (not: no condition)
                return False
        conditions = [] if expect_status is None else [JobRow.status.in_(expect_status)]
        keep = set(keep)
        values = {k: func.coalesce(getattr(JobRow, k), v) if k in keep else v for k, v in fields.items()}
        return self._change_job(name, conditions, values, events)

    def requeue_if_stale(self, name: str, *, owner: str | None, older_than: datetime, expect_status: Iterable[str],
                         events: Sequence[EventDraft] = (), **fields: Any) -> bool:
        """Set ``fields`` (the status to go back to) on job ``name`` only if it is in ``expect_status``
        under ``owner`` with a heartbeat older than ``older_than``: one UPDATE, so two servers
        recovering at once, or a server that claimed the job meanwhile, cannot be overtaken by a stale
        read."""
        conditions = [
            JobRow.status.in_(tuple(expect_status)),
            (JobRow.heartbeat_at.is_(None)) | (JobRow.heartbeat_at < older_than),
            JobRow.owner.is_(None) if owner is None else JobRow.owner == owner,
        ]
        return self._change_job(name, conditions, fields, events)

    def add_job_counts(self, name: str, *, expect_status: Iterable[str] | None = None,
                       events: Sequence[EventDraft] = (), **deltas: int) -> bool:
        """Add ``deltas`` to the job's counters (and append ``events``), with ``expect_status`` only
        in those statuses; False when nothing changed (all zero, or another status)."""
        values = {k: getattr(JobRow, k) + v for k, v in deltas.items() if v}
        if not values:
            return False
        conditions = [] if expect_status is None else [JobRow.status.in_(tuple(expect_status))]
        return self._change_job(name, conditions, values, events)

    def add_job_counts_each(self, name: str, changes: Sequence[dict[str, int]], event: EventDraft, *,
                            expect_status: Iterable[str] | None = None, owner: str | None = None,
                            attempts: int = 3) -> bool:
        """Several :meth:`add_job_counts` in one transaction: the counters get the sum of
        ``changes`` in one UPDATE, and one ``event`` per change is appended (one multi-row INSERT),
        each carrying the counters right after *its own* change, as if they had been written one by
        one. With ``expect_status`` only in those statuses; False when nothing changed."""
        changes = [c for c in changes if any(c.values())]  # a change of nothing has no event (as one by one)
        total: dict[str, int] = {}
        for change in changes:
            for k, v in change.items():
                total[k] = total.get(k, 0) + v
        values = {k: getattr(JobRow, k) + v for k, v in total.items() if v}
        if not values:
            return False
        jobs, events = JobRow.__table__, JobEventRow.__table__
        conditions = [] if expect_status is None else [jobs.c.status.in_(tuple(expect_status))]
        if owner is not None:  # only while the job is still this server's (not taken over after a stall)
            conditions.append(jobs.c.owner == owner)
        q = (update(jobs).where(jobs.c.name == name, *conditions).values(**values, updated_at=utcnow())
             .returning(*(jobs.c[k] for k in PROGRESS_FIELDS)))
        last_seq = select(func.coalesce(func.max(events.c.seq), 0)).where(events.c.job_name == name)
        for attempt in range(attempts):
            try:
                with self.session() as s:
                    conn = s.connection()
                    after = conn.execute(q).first()  # the job's row is locked from here to the commit
                    if after is None:
                        return False
                    counters = dict(zip(PROGRESS_FIELDS, after))
                    seq, at = conn.execute(last_seq).scalar_one(), utcnow()
                    states = []  # the counters after each change, the last first
                    for change in reversed(changes):
                        states.append(dict(counters))
                        for k, v in change.items():
                            if k in counters:
                                counters[k] -= v
                    conn.execute(insert(events), [
                        {"job_name": name, "seq": seq + i + 1, "at": at, "type": event["type"],
                         "status": event.get("status"), "message": event.get("message"),
                         "data": {**state, **(event.get("data") or {})}}
                        for i, state in enumerate(reversed(states))])
                    return True
            except ConflictError:  # another writer took the same seq: number again
                if attempt == attempts - 1:
                    raise
        return False

    def claim_next_job(self, *, source: str, target: str, keep: Iterable[str] = (),
                       events: Sequence[EventDraft] = (), attempts: int = 5, **fields: Any) -> JobRow | None:
        """Move the oldest job in status ``source`` to ``target`` and return it; None when no job is
        in ``source``.

        Several servers may claim from one database at once. On PostgreSQL the oldest job is
        selected ``FOR UPDATE SKIP LOCKED`` and moved in the same transaction: a job another
        server is claiming right now is skipped (its row is locked), so each claim gets a different
        job and none comes back empty while claimable jobs remain. SQLite runs one writer at a
        time; the move is a compare-and-set there, and a lost one (another process took the job
        between the read and the write) tries the next job, up to ``attempts`` times."""
        jobs = JobRow.__table__
        keep = set(keep)
        values = {k: func.coalesce(jobs.c[k], v) if k in keep else v for k, v in fields.items()}
        oldest = select(jobs.c.name).where(jobs.c.status == source).order_by(jobs.c.created_at).limit(1)
        if self.engine.dialect.name == "postgresql":
            oldest = oldest.with_for_update(skip_locked=True)
        for _ in range(attempts):
            with self.session() as s:
                conn = s.connection()
                name = conn.execute(oldest).scalar()
                if name is None:
                    return None
                moved = conn.execute(
                    update(jobs).where(jobs.c.name == name, jobs.c.status == source)
                    .values(**values, status=target, updated_at=utcnow())
                    .returning(*(jobs.c[k] for k in PROGRESS_FIELDS))).first()
                if moved is not None:
                    _insert_events(s, name, events, dict(zip(PROGRESS_FIELDS, moved)))
            if moved is not None:
                return self.get_job(name)
        return None

    def beat_job(self, name: str, owner: str, statuses: Iterable[str], at: datetime) -> bool:
        """Renew server ``owner``'s heartbeat on job ``name`` while the job is still its own and in
        ``statuses``; False when it is not (another server took it over after a stale heartbeat, or
        it was canceled): that server must stop scoring it."""
        jobs = JobRow.__table__
        q = (update(jobs).where(jobs.c.name == name, jobs.c.owner == owner, jobs.c.status.in_(tuple(statuses)))
             .values(heartbeat_at=at))
        with self.session() as s:
            return s.connection().execute(q).rowcount > 0

    def stale_jobs(self, older_than: datetime, statuses: Iterable[str]) -> list[JobRow]:
        """Jobs in ``statuses`` whose heartbeat is older than ``older_than`` (or missing)."""
        with self.session() as s:
            q = select(JobRow).where(
                JobRow.status.in_(tuple(statuses)),
                (JobRow.heartbeat_at.is_(None)) | (JobRow.heartbeat_at < older_than),
            )
            return list(s.scalars(q))

    def _change_job(self, name: str, conditions: list[Any], values: dict[str, Any],
                    events: Sequence[EventDraft], attempts: int = 3) -> bool:
        jobs = JobRow.__table__
        q = update(jobs).where(jobs.c.name == name, *conditions).values(**values, updated_at=utcnow())
        if not events:
            with self.session() as s:
                return s.connection().execute(q).rowcount > 0
        q = q.returning(*(jobs.c[k] for k in PROGRESS_FIELDS))
        for attempt in range(attempts):
            try:
                with self.session() as s:
                    after = s.connection().execute(q).first()
                    if after is None:
                        return False
                    _insert_events(s, name, events, dict(zip(PROGRESS_FIELDS, after)))
                    return True
            except ConflictError:  # another writer took the same seq: number again
                if attempt == attempts - 1:
                    raise
        return False

    def list_job_events(self, name: str, after: int = 0, limit: int = 100,
                        types: Iterable[str] | None = None) -> list[JobEventRow]:
        """Job ``name``'s events with ``seq`` greater than ``after``, oldest first, at most ``limit``
        (only those of ``types`` when given, e.g. ``("status", "phase")``).

        With ``types``, one query per type, merged by ``seq``: each reads index (job_name, type,
        seq) in order and stops at ``limit``, so the few status events of a job are found without
        reading its progress events (SQLite, given ``type IN (...) ORDER BY seq``, walks
        (job_name, seq) instead, to spare the sort, through every event of the job)."""
        q = select(JobEventRow).where(JobEventRow.job_name == name, JobEventRow.seq > after).order_by(JobEventRow.seq)
        with self.session() as s:
            if types is None:
                return list(s.scalars(q.limit(limit)))
            runs = [list(s.scalars(q.where(JobEventRow.type == t).limit(limit))) for t in dict.fromkeys(types)]
        return list(heapq.merge(*runs, key=lambda e: e.seq))[:limit]

    def jobs_writing_under(self, datastore: str, folder: str, limit: int = 5) -> list[JobRow]:
        """Jobs whose output folder in ``datastore`` is ``folder``, lies inside it, or holds it."""
        parts = folder.split("/") if folder else []
        holders = [""] + ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]  # folder and its ancestors
        with self.session() as s:
            q = select(JobRow).where(JobRow.output_datastore == datastore)
            if folder:
                q = q.where(JobRow.output_folder.in_(holders)
                            | JobRow.output_folder.startswith(f"{folder}/", autoescape=True))
            return list(s.scalars(q.order_by(JobRow.created_at).limit(limit)))

    def add_failure(self, job_name: str, mini_batch: int, file: str | None, error: str, *, kind: str = "user",
                    attempt: int | None = None) -> None:
        """Record a file's final failure: ``kind`` is user | input | platform | timeout
        (``engines/policy.py``), ``attempt`` the try (from 1) it failed on."""
        with self.session() as s:
            s.add(JobFailureRow(job_name=job_name, mini_batch=mini_batch, file=file, error=error[:8000],
                                kind=kind, attempt=attempt))

    def drop_failures_of_unfinished(self, job_name: str, finished: set[int]) -> int:
        """Delete the failure records of mini-batches not in ``finished`` (a resumed job scores them
        again, so their pieces' failures would be recorded twice). Returns how many went."""
        with self.session() as s:
            recorded = set(s.scalars(select(JobFailureRow.mini_batch).where(JobFailureRow.job_name == job_name).distinct()))
            stale = sorted(recorded - finished)
            if not stale:
                return 0
            result = s.execute(delete(JobFailureRow).where(JobFailureRow.job_name == job_name,
                                                           JobFailureRow.mini_batch.in_(stale)))
            return result.rowcount or 0

    def list_failures(self, job_name: str, limit: int = 100, *, charged_only: bool = False) -> list[JobFailureRow]:
        """A job's failures in the order recorded; ``charged_only``: those counted toward
        ``error_threshold`` (every kind but platform)."""
        with self.session() as s:
            q = select(JobFailureRow).where(JobFailureRow.job_name == job_name)
            if charged_only:
                q = q.where(JobFailureRow.kind != "platform")
            return list(s.scalars(q.order_by(JobFailureRow.id).limit(limit)))

    def failure_kinds(self, job_name: str, limit: int) -> dict[str, int]:
        """How many of a job's first ``limit`` failures (in the order recorded) are of each kind, the
        kinds in the order they first occur: :meth:`list_failures` counted in the database, without
        reading the failures' texts."""
        failures = JobFailureRow.__table__
        first = (select(failures.c.id, failures.c.kind).where(failures.c.job_name == job_name)
                 .order_by(failures.c.id).limit(limit).subquery())
        q = select(first.c.kind, func.count()).group_by(first.c.kind).order_by(func.min(first.c.id))
        counts: dict[str, int] = {}
        with self.session() as s:
            for kind, count in s.connection().execute(q):
                counts[kind or "user"] = counts.get(kind or "user", 0) + count
        return counts

    def count_jobs(self, status: str) -> int:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(JobRow).where(JobRow.status == status)) or 0

    # -- uploads ----------------------------------------------------------------------------
    def create_upload(self, row: UploadRow) -> UploadRow:
        """Insert ``row`` unless an upload with its id exists (two callers may race: the id fixes
        the content, so either row is the same upload); returns the stored one."""
        try:
            with self.session() as s:
                found = s.get(UploadRow, row.id)
                if found is not None:
                    return found
                s.add(row)
            return row
        except ConflictError:
            found = self.find_upload(row.id)
            if found is None:
                raise
            return found

    def add_upload_holder(self, upload_id: str, principal: str) -> None:
        """Record that ``principal`` declared upload ``upload_id`` too (``manifest["holders"]``): a
        declaration lists every file's SHA-256, so whoever declares an upload holds its content."""
        with self.session() as s:
            row = s.get(UploadRow, upload_id)
            if row is not None and principal not in (row.manifest.get("holders") or []):
                row.manifest = {**row.manifest, "holders": [*(row.manifest.get("holders") or []), principal]}

    def find_upload(self, upload_id: str) -> UploadRow | None:
        with self.session() as s:
            return s.get(UploadRow, upload_id)

    def reopen_upload(self, upload_id: str) -> None:
        """Back to Pending: one of its files was found changed in storage and removed."""
        with self.session() as s:
            s.execute(update(UploadRow).where(UploadRow.id == upload_id).values(status="Pending", completed_at=None))

    def complete_upload(self, upload_id: str) -> None:
        with self.session() as s:
            s.execute(update(UploadRow).where(UploadRow.id == upload_id, UploadRow.status == "Pending")
                      .values(status="Completed", completed_at=utcnow()))

    # -- principals, keys, role assignments, audit ------------------------------------------
    def put_principal(self, principal_id: str, kind: str, display_name: str | None) -> PrincipalRow:
        with self.session() as s:
            row = s.get(PrincipalRow, principal_id)
            if row is None:
                row = PrincipalRow(id=principal_id, kind=kind, display_name=display_name, created_at=utcnow())
                s.add(row)
        return row

    def find_principal(self, principal_id: str) -> PrincipalRow | None:
        with self.session() as s:
            return s.get(PrincipalRow, principal_id)

    def list_principals(self) -> list[PrincipalRow]:
        with self.session() as s:
            return list(s.scalars(select(PrincipalRow).order_by(PrincipalRow.id)))

    def add_api_key(self, row: ApiKeyRow) -> ApiKeyRow:
        with self.session() as s:
            s.add(row)
        return row

    def find_api_key(self, key_id: str) -> ApiKeyRow | None:
        with self.session() as s:
            return s.get(ApiKeyRow, key_id)

    def list_api_keys(self, principal_id: str) -> list[ApiKeyRow]:
        with self.session() as s:
            return list(s.scalars(select(ApiKeyRow).where(ApiKeyRow.principal_id == principal_id)))

    def revoke_api_key(self, key_id: str) -> bool:
        with self.session() as s:
            return s.execute(update(ApiKeyRow).where(ApiKeyRow.key_id == key_id, ApiKeyRow.revoked_at.is_(None))
                             .values(revoked_at=utcnow())).rowcount > 0

    def add_role_assignment(self, principal_id: str, role: str, scope: str) -> RoleAssignmentRow:
        with self.session() as s:
            row = s.scalars(select(RoleAssignmentRow).where(
                RoleAssignmentRow.principal_id == principal_id, RoleAssignmentRow.role == role,
                RoleAssignmentRow.scope == scope)).first()
            if row is None:
                row = RoleAssignmentRow(principal_id=principal_id, role=role, scope=scope, created_at=utcnow())
                s.add(row)
        return row

    def list_role_assignments(self, principal_id: str | None = None) -> list[RoleAssignmentRow]:
        with self.session() as s:
            q = select(RoleAssignmentRow).order_by(RoleAssignmentRow.id)
            if principal_id:
                q = q.where(RoleAssignmentRow.principal_id == principal_id)
            return list(s.scalars(q))

    def delete_role_assignment(self, assignment_id: int) -> None:
        """Delete one assignment; refuses (ConflictError) to delete the workspace's last Owner.

        The check and the delete are one transaction: the workspace Owner rows are locked first
        (``SELECT ... FOR UPDATE`` on PostgreSQL), and the DELETE itself only matches while another
        workspace Owner row exists (SQLite runs writers one at a time and the statement sees the
        latest commit), so two concurrent deletes of the last two Owners cannot both succeed."""
        with self.session() as s:
            row = s.get(RoleAssignmentRow, assignment_id)
            if row is None:
                raise NotFoundError(f"role assignment {assignment_id} was not found")
            if (row.role, row.scope) != ("Owner", "workspace"):
                s.delete(row)
                return
            owners = list(s.scalars(
                select(RoleAssignmentRow.id)
                .where(RoleAssignmentRow.role == "Owner", RoleAssignmentRow.scope == "workspace")
                .order_by(RoleAssignmentRow.id).with_for_update()))
            if assignment_id not in owners:  # deleted meanwhile by a concurrent call
                raise NotFoundError(f"role assignment {assignment_id} was not found")
            other = aliased(RoleAssignmentRow)
            another_owner = exists().where(other.role == "Owner", other.scope == "workspace", other.id != assignment_id)
            deleted = len(owners) > 1 and s.execute(
                delete(RoleAssignmentRow).where(RoleAssignmentRow.id == assignment_id, another_owner)
                .execution_options(synchronize_session=False)).rowcount > 0
            if not deleted:
                raise ConflictError(self._last_owner_message(row), details={
                    "assignment_id": row.id, "principal_id": row.principal_id, "role": row.role, "scope": row.scope})

    @staticmethod
    def _last_owner_message(row: RoleAssignmentRow) -> str:
        return (
            f"role assignment {row.id} (Owner on workspace for principal '{row.principal_id}') is the last Owner of "
            "the workspace and cannot be removed: without it nobody could manage principals, API keys or role "
            "assignments any more. Grant Owner to another principal first with 'batchpoint role assignment create "
            "--role Owner --assignee <principal> --scope workspace', then delete this assignment. If no Owner key "
            "works any more, recover access on the server's host with 'python -m batchpoint.server recover-owner "
            "--home <BATCHPOINT_HOME>'."
        )

    def add_audit(self, principal_id: str | None, action: str, resource: str, status: int,
                  details: dict[str, Any] | None = None) -> None:
        with self.session() as s:
            s.add(AuditRow(at=utcnow(), principal_id=principal_id, action=action, resource=resource, status=status,
                           details=details or {}))

    def list_audit(self, limit: int = 100, principal_id: str | None = None) -> list[AuditRow]:
        with self.session() as s:
            q = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
            if principal_id:
                q = q.where(AuditRow.principal_id == principal_id)
            return list(s.scalars(q))
