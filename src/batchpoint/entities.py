"""The resources of a workspace, shaped like azure-ai-ml's entities.

The same pydantic models are the YAML spec schema (``extra="forbid"``: an unknown or mistyped
field is an error naming it), the REST bodies and the SDK objects. Field names are Azure ML's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$"


class AssetTypes:
    """Input/asset types, as ``azure.ai.ml.constants.AssetTypes`` names them."""

    URI_FOLDER = "uri_folder"
    URI_FILE = "uri_file"
    MLTABLE = "mltable"
    MLFLOW_MODEL = "mlflow_model"
    CUSTOM_MODEL = "custom_model"


class BatchDeploymentOutputAction:
    APPEND_ROW = "append_row"
    SUMMARY_ONLY = "summary_only"


class _Entity(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=False)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)


class _Resource(_Entity):
    """Fields the server fills in: ``id`` (ARM-like) and timestamps. Ignored on create."""

    id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    schema_: str | None = Field(default=None, alias="$schema", exclude=True)


# ---- data stores ------------------------------------------------------------------------------

DatastoreKind = Literal["local", "azure_blob", "azure_data_lake_gen2", "azure_data_lake_gen1", "s3"]


class Datastore(_Resource):
    """A registered storage location. ``credentials`` is write-only: never returned."""

    name: str = Field(pattern=NAME_PATTERN)
    type: DatastoreKind
    description: str | None = None
    # local
    path: str | None = None
    # azure
    account_name: str | None = None
    container_name: str | None = None
    filesystem: str | None = None
    store_name: str | None = None
    endpoint: str | None = None
    protocol: str | None = None
    blob_endpoint_url: str | None = None  # a full endpoint URL (Azurite, private endpoints)
    # s3
    bucket: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    # security
    allow_private_network: bool = False
    credentials: dict[str, Any] | None = None
    credential_kind: str | None = None  # filled by the server: account_key, sas, ..., none
    is_default: bool = False

    def config(self) -> dict[str, Any]:
        skip = {"name", "type", "description", "credentials", "credential_kind", "is_default", "id",
                "created_at", "updated_at", "schema_"}
        return {k: v for k, v in self.model_dump().items() if k not in skip and v not in (None, False)}


# ---- data assets and models -------------------------------------------------------------------


class Data(_Resource):
    """A versioned data asset (``uri_folder`` / ``uri_file``; ``mltable`` is stored but cannot be
    used as a batch input)."""

    name: str = Field(pattern=NAME_PATTERN)
    version: str | None = None
    description: str | None = None
    type: Literal["uri_folder", "uri_file", "mltable"] = "uri_folder"
    path: str
    tags: dict[str, str] = Field(default_factory=dict)


DataAsset = Data


class Model(_Resource):
    name: str = Field(pattern=NAME_PATTERN)
    version: str | None = None
    description: str | None = None
    type: Literal["mlflow_model", "custom_model"] = "custom_model"
    path: str
    tags: dict[str, str] = Field(default_factory=dict)


# ---- computes ---------------------------------------------------------------------------------


class IdentityConfiguration(_Entity):
    """A compute's managed identity, as an Azure (or AWS) credential configuration."""

    type: Literal["none", "managed_identity", "service_principal", "workload_identity", "aws_profile"] = "none"
    client_id: str | None = None
    tenant_id: str | None = None
    client_secret: str | None = None
    token_file: str | None = None
    profile: str | None = None
    role_arn: str | None = None


class AmlCompute(_Resource):
    name: str = Field(pattern=NAME_PATTERN)
    type: Literal["amlcompute", "local"] = "amlcompute"
    description: str | None = None
    size: str | None = None
    min_instances: int = Field(default=0, ge=0)
    max_instances: int = Field(default=1, ge=1)
    idle_time_before_scale_down: int | None = None
    identity: IdentityConfiguration | None = None

    @model_validator(mode="after")
    def _bounds(self) -> AmlCompute:
        if self.min_instances > self.max_instances:
            raise ValueError(f"min_instances ({self.min_instances}) exceeds max_instances ({self.max_instances})")
        return self


Compute = AmlCompute


# ---- endpoints and deployments ----------------------------------------------------------------


class BatchEndpoint(_Resource):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9-]{2,31}$")
    description: str | None = None
    auth_mode: Literal["aad_token", "key"] = "aad_token"
    defaults: dict[str, str] = Field(default_factory=dict)  # {"deployment_name": ...}
    tags: dict[str, str] = Field(default_factory=dict)
    scoring_uri: str | None = None
    provisioning_state: str | None = None

    @property
    def default_deployment_name(self) -> str | None:
        return self.defaults.get("deployment_name")


class CodeConfiguration(_Entity):
    code: str
    scoring_script: str


class BatchRetrySettings(_Entity):
    max_retries: int = Field(default=3, ge=0)
    timeout: int = Field(default=30, ge=1)


class ResourceConfiguration(_Entity):
    instance_count: int = Field(default=1, ge=1)
    instance_type: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class BatchDeploymentSettings(_Entity):
    max_concurrency_per_instance: int = Field(default=1, ge=1)
    mini_batch_size: int = Field(default=10, ge=1)
    output_action: Literal["append_row", "summary_only"] = "append_row"
    output_file_name: str = "predictions.csv"
    retry_settings: BatchRetrySettings = Field(default_factory=BatchRetrySettings)
    error_threshold: int = Field(default=-1, ge=-1)
    logging_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    environment_variables: dict[str, str] = Field(default_factory=dict)

    @field_validator("logging_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("output_file_name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not value or "/" in value or "\\" in value or value in (".", ".."):
            raise ValueError(f"output_file_name '{value}' must be a plain file name like predictions.csv")
        return value


_FLAT_SETTINGS = set(BatchDeploymentSettings.model_fields)


class BatchDeployment(_Resource):
    """A model batch deployment. Accepts the YAML shape (``resources``/``settings``) and the flat
    SDK shape (``instance_count=..., mini_batch_size=...``)."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9-]{2,31}$")
    endpoint_name: str
    type: Literal["model"] = "model"
    description: str | None = None
    model: str | Model
    code_configuration: CodeConfiguration | None = None
    environment: str | dict[str, Any] | None = None
    compute: str | None = None
    resources: ResourceConfiguration = Field(default_factory=ResourceConfiguration)
    settings: BatchDeploymentSettings = Field(default_factory=BatchDeploymentSettings)
    tags: dict[str, str] = Field(default_factory=dict)
    provisioning_state: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _accept_flat(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        flat = {k: data.pop(k) for k in list(data) if k in _FLAT_SETTINGS}
        if flat:
            settings = dict(data.get("settings") or {})
            settings.update(flat)
            data["settings"] = settings
        if "instance_count" in data:
            resources = dict(data.get("resources") or {})
            resources["instance_count"] = data.pop("instance_count")
            data["resources"] = resources
        return data

    @property
    def instance_count(self) -> int:
        return self.resources.instance_count

    @property
    def workers(self) -> int:
        return self.resources.instance_count * self.settings.max_concurrency_per_instance


ModelBatchDeployment = BatchDeployment


# ---- inputs and jobs --------------------------------------------------------------------------


class Input(_Entity):
    type: Literal["uri_folder", "uri_file", "mltable"] | None = None
    path: str
    mode: str | None = None


class JobOutput(_Entity):
    type: str = "uri_folder"
    path: str
    file_name: str | None = None


class JobProgress(_Entity):
    mini_batches_total: int | None = None
    mini_batches_completed: int = 0
    mini_batches_failed: int = 0
    files_total: int | None = None
    files_completed: int = 0
    files_failed: int = 0
    rows: int = 0
    listing_complete: bool = False


class JobFailure(_Entity):
    mini_batch: int
    file: str | None = None
    error: str


class Job(_Resource):
    name: str
    display_name: str | None = None
    type: str = "pipeline"
    status: str = "NotStarted"
    status_message: str | None = None
    endpoint_name: str | None = None
    deployment_name: str | None = None
    inputs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    outputs: dict[str, JobOutput] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    progress: JobProgress = Field(default_factory=JobProgress)
    failures: list[JobFailure] = Field(default_factory=list)
    error: dict[str, Any] | None = None
    created_by: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    first_mini_batch_at: datetime | None = None
    listing_completed_at: datetime | None = None
    log_files: list[str] = Field(default_factory=list)


class Workspace(_Entity):
    name: str
    id: str
    location: str
    resource_group: str
    subscription_id: str
    storage_account: str
    default_datastore: str
    server_version: str
