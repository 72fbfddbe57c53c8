"""Configuration, read from the environment (prefix ``BATCHPOINT_``) — no import-time singletons.

Nested sections use a double underscore: ``BATCHPOINT_WORKSPACE__SUBSCRIPTION_ID``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkspaceSettings(BaseModel):
    """The names that make up resource ids (``/subscriptions/<sub>/resourceGroups/<rg>/...``)."""

    subscription_id: str = "00000000-0000-0000-0000-000000000000"
    resource_group: str = "batchpoint"
    name: str = "local"
    location: str = "local"


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port (the embedded server records it in server.json)
    max_request_bytes: int = 64 * 1024 * 1024  # bodies above this are refused with 413 (uploads excepted)
    max_upload_bytes: int = 10 * 1024 * 1024 * 1024
    metrics_public: bool = False  # true: GET /metrics needs no key (a scraper inside a trusted network)


class JobSettings(BaseModel):
    poll_interval_s: float = 0.2  # how often the dispatcher looks for queued jobs
    heartbeat_interval_s: float = 2.0
    max_workers: int = 64  # cap on instance_count * max_concurrency_per_instance
    worker_credential_ttl_s: float = 3600.0  # life of the SAS a job's workers get instead of a store's key
    listing_queue_files: int = 10_000  # listed files a job holds ahead of its workers (jobs/listing.py)
    worker_log_max_bytes: int = 20 << 20  # a worker's log is cut past this, one older copy kept (docs/faults.md)
    record_retry_s: float = 60.0  # a job's end the metadata database refuses is tried again this long (docs/faults.md)
    output_retry_s: float = 120.0  # an output write rides out an unreachable store this long (docs/faults.md)


class StorageSettings(BaseModel):
    """Where storage URLs really point (see ``batchpoint.uri.storage_urls``)."""

    endpoint_suffix: str = "core.windows.net"
    blob_endpoints: dict[str, str] = Field(default_factory=dict)  # account -> blob service URL
    s3_endpoint_url: str | None = None
    allow_private_hosts: list[str] = Field(default_factory=list)


class EnvironmentSettings(BaseModel):
    """Per-deployment Python environments (``batchpoint.environments``, docs/environments.md)."""

    index_url: str = "https://pypi.org/simple"  # a private mirror: its simple-API URL
    extra_index_urls: list[str] = Field(default_factory=list)
    root: Path | None = None  # where built environments live; default <home>/environments
    uv_cache_dir: Path | None = None  # uv's download/wheel cache; default <home>/cache/uv
    uv_path: str | None = None  # the uv binary; default the one installed with Batchpoint, else PATH
    build_timeout_s: float = 1800.0
    prune_after_days: float = 30.0  # `batchpoint environment prune` removes builds unused this long
    # the interpreters a spec's `python=3.8.5` may use: "3.8=/opt/py38/bin/python,3.9=/usr/bin/python3.9"
    # (a mapping works too); a version not listed is resolved for, then adapted to this machine's Python
    pythons: str = ""
    python_downloads: bool = False  # let uv download a requested Python (needs the internet or a mirror)
    python_install_dir: Path | None = None  # where downloaded Pythons live; default <home>/cache/python
    python_install_mirror: str | None = None  # uv's --mirror for Python downloads (python-build-standalone)

    @field_validator("pythons", mode="before")
    @classmethod
    def _pythons_text(cls, value: object) -> object:
        if isinstance(value, dict):
            return ",".join(f"{k}={v}" for k, v in value.items())
        return value

    def index_urls(self) -> list[str]:
        return [self.index_url, *self.extra_index_urls]


class RaySettings(BaseModel):
    """Ray clusters (computes of ``type: ray``, docs/ray.md)."""

    connect_timeout_s: float = 30.0  # a job's connection to the cluster (ray.init) fails past this
    probe_timeout_s: float = 3.0  # `compute create --type ray` checks the address within this


class TlsSettings(BaseModel):
    """HTTPS beside the plain listener (docs/azure-client.md): the operator's certificate and key
    (PEM files), or, with none given, a certificate signed by a CA the server makes for itself in
    ``<home>/tls/`` (local use; ``batchpoint azure-env`` ships that CA to the client)."""

    enabled: bool = False
    port: int = 0  # 0: a free port (recorded as azure_url in server.json)
    cert_file: Path | None = None
    key_file: Path | None = None
    host_names: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1", "::1"])  # of a generated cert


class AzureSettings(BaseModel):
    """The Azure-shaped API (``batchpoint.server.azure_api``): the cloud the real azure-ai-ml sees."""

    cloud_name: str = "Batchpoint"
    storage_suffix: str = "core.batchpoint.internal"  # blob hosts: <account>.blob.<storage_suffix> (not *.localhost: NO_PROXY)
    blob_proxy_port: int = 0  # the CONNECT proxy to the blob endpoint (HTTPS_PROXY); 0: a free port


class WorkerSettings(BaseModel):
    """How the workers that run scoring code are fenced (``engines/sandbox.py``, docs/security.md)."""

    #: "bwrap": each worker in a bubblewrap sandbox (refused where bubblewrap does not work);
    #: "none": an Owner's explicit opt-out, unfenced workers, logged as a warning on every job
    isolation: Literal["bwrap", "none"] = "bwrap"
    bwrap: str = "bwrap"  # the bubblewrap program (a name on PATH, or a path)
    #: "namespace": a user namespace (uid/gid inside it, the server's user outside, no capabilities);
    #: "uid": a real other user (uid/gid), for a server running as root; inputs must be readable by it
    run_as: Literal["namespace", "uid"] = "namespace"
    uid: int = Field(default=65534, ge=1)  # the workers' user and group (see run_as)
    gid: int = Field(default=65534, ge=1)
    #: host folders every worker may read and write, at the same path (a shared cache; a test's
    #: signal files); never one that holds the server's home
    shared_paths: list[Path] = Field(default_factory=list)
    #: seconds a fenced worker stays warm after a job, for the next job of the same deployment,
    #: scorer, environment and settings (``engines/warm.py``, docs/performance.md); 0: none kept
    warm_idle_s: float = Field(default=300.0, ge=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BATCHPOINT_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".batchpoint")
    database_url: str | None = None  # default: sqlite under home; postgresql+psycopg://... works too
    default_datastore_path: Path | None = None  # default: <home>/datastores/workspaceblobstore
    workspace: WorkspaceSettings = Field(default_factory=WorkspaceSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    environments: EnvironmentSettings = Field(default_factory=EnvironmentSettings)
    tls: TlsSettings = Field(default_factory=TlsSettings)
    azure: AzureSettings = Field(default_factory=AzureSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    workers: WorkerSettings = Field(default_factory=WorkerSettings)

    def worker_isolation(self) -> dict[str, object]:
        """The fence of a job's workers as engines take it (``EngineJob.isolation``)."""
        w = self.workers
        return {"mode": w.isolation, "bwrap": w.bwrap, "run_as": w.run_as, "uid": w.uid, "gid": w.gid, "home": str(self.home),
                "shared": [str(p) for p in w.shared_paths], "warm_idle_s": w.warm_idle_s}

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'metadata.db'}"

    def resolved_default_datastore_path(self) -> Path:
        return self.default_datastore_path or (self.home / "datastores" / "workspaceblobstore")

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def code_dir(self) -> Path:
        return self.home / "code"

    @property
    def environments_dir(self) -> Path:
        return self.environments.root or (self.home / "environments")

    @property
    def uv_cache_dir(self) -> Path:
        return self.environments.uv_cache_dir or (self.home / "cache" / "uv")

    @property
    def arm_prefix(self) -> str:
        ws = self.workspace
        return (
            f"/subscriptions/{ws.subscription_id}/resourceGroups/{ws.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{ws.name}"
        )
