"""SQLAlchemy 2 table definitions: the schema that Alembic migrations create.

JSON columns hold the parts of a resource that are documents (a deployment's settings, a data
store's non-secret config); columns that are queried or updated often (job status, counters,
timestamps) are real columns. Portable across SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class DatastoreRow(Base):
    __tablename__ = "datastores"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    credential_kind: Mapped[str] = mapped_column(String(64), default="none")
    public_credential: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secret: Mapped[str | None] = mapped_column(Text)  # Fernet-encrypted JSON of the secret fields
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AssetRow(Base):
    """Data assets and models (``collection`` = 'data' | 'models'), versioned."""

    __tablename__ = "assets"
    __table_args__ = (UniqueConstraint("collection", "name", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255), index=True)
    version: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    properties: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # Azure's properties: (0005)
    created_at: Mapped[datetime]


class ComputeRow(Base):
    __tablename__ = "computes"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    secret: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class EndpointRow(Base):
    __tablename__ = "batch_endpoints"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class DeploymentRow(Base):
    __tablename__ = "batch_deployments"
    endpoint_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class JobRow(Base):
    __tablename__ = "jobs"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    endpoint_name: Mapped[str | None] = mapped_column(String(64), index=True)
    deployment_name: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    status_message: Mapped[str | None] = mapped_column(Text)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # resolved inputs, model, code
    created_by: Mapped[str | None] = mapped_column(String(255))
    # where the job writes its output (data store + folder), queried so that no two jobs share one
    output_datastore: Mapped[str | None] = mapped_column(String(255), index=True)
    output_folder: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(64))  # server instance running it
    mini_batches_total: Mapped[int | None] = mapped_column(Integer)
    mini_batches_completed: Mapped[int] = mapped_column(Integer, default=0)
    mini_batches_failed: Mapped[int] = mapped_column(Integer, default=0)
    files_total: Mapped[int | None] = mapped_column(Integer)
    files_completed: Mapped[int] = mapped_column(Integer, default=0)
    files_failed: Mapped[int] = mapped_column(Integer, default=0)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    listing_complete: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    start_time: Mapped[datetime | None]
    end_time: Mapped[datetime | None]
    first_mini_batch_at: Mapped[datetime | None]
    listing_completed_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]


class JobFailureRow(Base):
    __tablename__ = "job_failures"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_name: Mapped[str] = mapped_column(String(128), index=True)
    mini_batch: Mapped[int] = mapped_column(Integer)
    file: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16), default="user")  # user | input | platform | timeout
    attempt: Mapped[int | None] = mapped_column(Integer)


class JobEventRow(Base):
    """One entry of a job's history: a status transition or a progress change, numbered per job
    (``seq`` from 1), read as ``GET /jobs/<name>/events?after=<seq>`` and as a server-sent stream.

    Indexes: (job_name, seq), unique, for the history in order; (job_name, type, seq) for the events
    of some types (``job show`` reads the few status and phase events of a job that has one progress
    event per mini-batch: without it every show read all of them; migration 0008); and the phase
    events of every job, a partial index (``/metrics`` counts environment builds at each scrape:
    without it every scrape read the whole table; migration 0009; progress events never enter it,
    so it costs their inserts nothing)."""

    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_name", "seq"),
                      Index("ix_job_events_job_name_type_seq", "job_name", "type", "seq"),
                      Index("ix_job_events_phases", "job_name", sqlite_where=text("type = 'phase'"),
                            postgresql_where=text("type = 'phase'")))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_name: Mapped[str] = mapped_column(String(128))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    type: Mapped[str] = mapped_column(String(32))  # status | progress | ...
    status: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PrincipalRow(Base):
    """A user or service principal that can authenticate."""

    __tablename__ = "principals"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    display_name: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]


class ApiKeyRow(Base):
    """An API key: only its HMAC hash is stored."""

    __tablename__ = "api_keys"
    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal_id: Mapped[str] = mapped_column(String(128), index=True)
    hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class RoleAssignmentRow(Base):
    __tablename__ = "role_assignments"
    __table_args__ = (UniqueConstraint("principal_id", "role", "scope"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    principal_id: Mapped[str] = mapped_column(String(128), index=True)
    role: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]


class AuditRow(Base):
    """Who did what, when: invokes (with their inputs) and every change to a resource."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    principal_id: Mapped[str | None] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class UploadRow(Base):
    """One upload into the content-addressed upload area (``LocalUpload/<id>/<name>``).

    ``id`` is derived from ``type``, ``name`` and ``manifest`` (every file's path, size, sha256),
    so a row can only ever describe one content. Only a ``Completed`` upload is trusted."""

    __tablename__ = "uploads"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    datastore: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"files": [{"path", "size", "sha256"}]}
    status: Mapped[str] = mapped_column(String(16))  # Pending | Completed
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]


class InvokeRequestRow(Base):
    """One idempotency key of an invoke (or rerun): the ``repeatability-request-id`` header a
    principal sent, what the request was (``fingerprint``: a hash of the route and body) and the
    job it made. The unique constraint makes concurrent requests with one key create one job
    (``jobs/idempotency.py``); keys older than 24 h are replaced on their next use. (0006)"""

    __tablename__ = "invoke_requests"
    __table_args__ = (UniqueConstraint("principal_id", "request_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    principal_id: Mapped[str] = mapped_column(String(255))  # "" for an anonymous caller
    request_id: Mapped[str] = mapped_column(String(128))
    fingerprint: Mapped[str] = mapped_column(String(64))
    job_name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(index=True)


class WorkspaceFactRow(Base):
    """One fact about the workspace every server checks at start: ``home_id``, the id in the
    ``<home>/home.id`` file of the home the database's first server used (a server on another home
    refuses to start, ``server/instance.py``), and ``home_path``, where that home was. (0007)"""

    __tablename__ = "workspace_facts"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class ServerRow(Base):
    """A server process of the workspace: its stable id (``<home>/servers/``, the jobs' ``owner``),
    host, pid, home and version, when it started and when it last said it was alive. (0007)"""

    __tablename__ = "servers"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    home: Mapped[str] = mapped_column(Text)
    version: Mapped[str] = mapped_column(String(64))
    instance: Mapped[str] = mapped_column(String(64))  # random per process start: tells two live ones apart
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime]
