"""The resources of a workspace, shaped like azure-ai-ml's entities.

The same pydantic models are the YAML spec schema (``extra="forbid"``: an unknown or mistyped
field is an error naming it), the REST bodies and the SDK objects. Field names are Azure ML's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from batchpoint.exceptions import ValidationError

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

    #: what the server fills in; a request's values for these are dropped (subclasses add theirs)
    SERVER_FIELDS: ClassVar[frozenset[str]] = frozenset({"id", "created_at", "updated_at", "schema_", "$schema"})

    id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    schema_: str | None = Field(default=None, alias="$schema", exclude=True)

    @classmethod
    def from_request(cls, body: dict[str, Any], **fixed: Any) -> Self:
        """The resource a REST body describes: server-filled fields dropped; ``fixed`` (the names in
        the URL) are set, and a body that names something else is refused."""
        if not isinstance(body, dict):
            raise ValidationError(f"the request body must be a JSON object describing a {cls.__name__}")
        clean = {k: v for k, v in body.items() if k not in cls.SERVER_FIELDS}
        for key, value in fixed.items():
            if key in clean and clean[key] != value:
                raise ValidationError(f"{key} '{clean[key]}' in the body disagrees with '{value}' in the URL")
            clean[key] = value
        return cls(**clean)

    def spec(self) -> dict[str, Any]:
        """What the store keeps: the user's fields, without the server-filled ones."""
        return self.model_dump(mode="json", exclude=set(self.SERVER_FIELDS), exclude_none=True)


def _version_text(value: Any) -> Any:
    """``version: 1`` (an integer, as Azure's YAML writes it) is the version "1"."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _text_values(value: Any) -> Any:
    """``tags:`` / ``properties:`` values as Azure keeps them: text (``{stage: 1}`` → ``{"stage": "1"}``)."""
    if isinstance(value, dict):
        return {k: (str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, (int, float)) else v)
                for k, v in value.items()}
    return {} if value is None else value


def _whole_number(value: Any, info: Any) -> Any:
    """A count or limit: ``true`` is not 1 (strict on security-relevant numbers, issue 18 §5)."""
    if isinstance(value, bool):
        raise ValueError(f"{info.field_name} must be a whole number, not {str(value).lower()}")
    return value


def _strict_flag(value: Any, info: Any) -> Any:
    """A switch that opens something (``allow_private_network``): only true or false."""
    if not isinstance(value, bool):
        raise ValueError(f"{info.field_name} must be true or false (got {type(value).__name__} {str(value)[:50]!r})")
    return value


def _path_text(value: Any) -> Any:
    """A ``pathlib.Path`` (or any ``os.PathLike``), as azure-ai-ml takes for a path: its text."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


class _Asset(_Resource):
    """``tags`` and ``properties`` (text to text), which every Azure asset has."""

    tags: dict[str, str] = Field(default_factory=dict)
    properties: dict[str, str] = Field(default_factory=dict)

    @field_validator("tags", "properties", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        return _text_values(value)


# ---- types a registry names --------------------------------------------------------------------
# A data store's ``type`` is a storage kind (``storage/registry.py``), a compute's ``type`` a compute
# type some engine declares (``engines/registry.py``): adding a kind or an engine is its module and
# one registry line, never a list here. ``entities`` sits below both registries, so their names are
# told here when they are imported (:func:`accept_types`: ``engines/registry.py`` itself; for the
# storage kinds ``uri/parse.py``, as the storage registry also runs in workers, which have no
# pydantic). A process that loaded no such registry
# (a client: the SDK and the CLI import no engine) lets any name through, and the server, which
# loads both, refuses it with the same message.

#: resource ("datastore", "compute") -> the names its ``type`` accepts, as its registry lists them
_TYPE_SOURCES: dict[str, Callable[[], Iterable[str]]] = {}
_TYPE_WORDS = {"datastore": "data store", "compute": "compute"}


def accept_types(resource: str, names: Callable[[], Iterable[str]]) -> None:
    """Make ``names()`` (read at each check: a kind registered later counts) the types a
    ``resource``'s ``type`` accepts; called by the registry that owns them."""
    _TYPE_SOURCES[resource] = names


def accepted_types(resource: str) -> list[str] | None:
    """The types a ``resource``'s ``type`` accepts in this process; None when its registry is not loaded."""
    source = _TYPE_SOURCES.get(resource)
    return None if source is None else list(source())


def _check_type(resource: str, value: str) -> str:
    valid = accepted_types(resource)
    if valid is not None and value not in valid:
        raise PydanticCustomError("unknown_type", "unknown {what} type '{given}'; valid types: {valid}",
                                  {"what": _TYPE_WORDS[resource], "given": value, "valid": ", ".join(valid)})
    return value


def _types_schema(resource: str) -> Callable[[dict[str, Any]], None]:
    """The JSON schema (OpenAPI) of a registry-named ``type``: a string, listing the types this
    server accepts (``enum``) once its registry is loaded."""
    def extra(schema: dict[str, Any]) -> None:
        valid = accepted_types(resource)
        if valid is not None:
            schema["enum"] = valid
    return extra


# ---- data stores ------------------------------------------------------------------------------

#: a data store's type: a storage kind that may hold a data store (``storage/registry.py`` ``datastore_kinds``)
DatastoreKind = str


class Datastore(_Resource):
    """A registered storage location. ``credentials`` is write-only: never returned."""

    SERVER_FIELDS: ClassVar[frozenset[str]] = _Resource.SERVER_FIELDS | {"credential_kind"}

    name: str = Field(pattern=NAME_PATTERN)
    type: DatastoreKind = Field(json_schema_extra=_types_schema("datastore"))
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

    _flags = field_validator("allow_private_network", "is_default", mode="before")(_strict_flag)

    @field_validator("type")
    @classmethod
    def _registered_kind(cls, value: str) -> str:
        return _check_type("datastore", value)

    def config(self) -> dict[str, Any]:
        skip = {"name", "type", "description", "credentials", "credential_kind", "is_default", "id",
                "created_at", "updated_at", "schema_"}
        return {k: v for k, v in self.model_dump().items() if k not in skip and v not in (None, False)}


# ---- data assets and models -------------------------------------------------------------------


class Data(_Asset):
    """A versioned data asset (``uri_folder`` / ``uri_file``; ``mltable`` is stored but cannot be
    used as a batch input)."""

    name: str = Field(pattern=NAME_PATTERN)
    version: str | None = None
    description: str | None = None
    type: Literal["uri_folder", "uri_file", "mltable"] = "uri_folder"
    path: str

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return _version_text(value)

    @field_validator("path", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        return _path_text(value)


DataAsset = Data


class Model(_Asset):
    """A registered model: a folder (an MLflow model's, or any) or a single file. Inline in a
    deployment (``model: {path: ./model}``) it has no name: the server registers it under one."""

    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    version: str | None = None
    description: str | None = None
    type: Literal["mlflow_model", "custom_model"] = "custom_model"
    path: str

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return _version_text(value)

    @field_validator("path", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        return _path_text(value)


class Environment(_Asset):
    """A registered environment, as azure-ai-ml's ``Environment``: ``conda_file`` (a conda
    environment as a mapping; the SDK and CLI read a local file for you) and/or ``image`` (accepted,
    not used: see docs/environments.md). ``build`` is filled by the server: what was built for it."""

    SERVER_FIELDS: ClassVar[frozenset[str]] = _Resource.SERVER_FIELDS | {"build"}

    #: None only inline in a deployment (``BatchDeployment(environment=Environment(conda_file=...))``)
    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    version: str | None = None
    description: str | None = None
    conda_file: dict[str, Any] | str | None = None  # a mapping, or a local file (the SDK sends its content)
    image: str | None = None
    build: dict[str, Any] | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return _version_text(value)


# ---- computes ---------------------------------------------------------------------------------


class ManagedIdentityConfiguration(_Entity):
    """One user-assigned identity of a compute, as azure-ai-ml names its fields."""

    client_id: str | None = None
    resource_id: str | None = None
    object_id: str | None = None
    principal_id: str | None = None


class IdentityConfiguration(_Entity):
    """A compute's managed identity, as an Azure (or AWS) credential configuration. Azure's own
    forms — ``type: system_assigned`` and ``type: user_assigned`` with ``user_assigned_identities``
    — are kept as given and read as ``managed_identity`` (``workspace/compute_identity.py``)."""

    type: Literal["none", "managed_identity", "service_principal", "workload_identity", "aws_profile",
                  "system_assigned", "user_assigned"] = "none"
    user_assigned_identities: list[ManagedIdentityConfiguration] | None = None
    client_id: str | None = None
    tenant_id: str | None = None
    client_secret: str | None = None
    token_file: str | None = None
    profile: str | None = None
    role_arn: str | None = None


class AmlCompute(_Resource):
    name: str = Field(pattern=NAME_PATTERN)
    #: a compute type an engine declares (``engines/registry.py``: amlcompute and local run on the
    #: local pool, ray on a Ray cluster)
    type: str = Field(default="amlcompute", json_schema_extra=_types_schema("compute"))
    description: str | None = None
    size: str | None = None  # Azure's VM size (STANDARD_DS3_v2): kept, not used here
    tier: Literal["dedicated", "low_priority"] | None = None  # kept, not used here
    location: str | None = None  # kept, not used here
    tags: dict[str, str] = Field(default_factory=dict)
    properties: dict[str, str] = Field(default_factory=dict)
    min_instances: int = Field(default=0, ge=0)
    max_instances: int = Field(default=1, ge=1)
    idle_time_before_scale_down: int | None = None
    identity: IdentityConfiguration | None = None

    _counts = field_validator("min_instances", "max_instances", "idle_time_before_scale_down", mode="before")(_whole_number)

    @field_validator("type")
    @classmethod
    def _declared_type(cls, value: str) -> str:
        return _check_type("compute", value)

    @field_validator("tags", "properties", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        return _text_values(value)

    # type ray (docs/ray.md): the head's GCS address, its auth token (write-only: stored encrypted,
    # never returned) and the CPUs each worker actor asks Ray for
    address: str | None = Field(default=None, max_length=300)
    auth_token: str | None = Field(default=None, max_length=4096)
    num_cpus_per_worker: float | None = Field(default=None, gt=0, le=1024)

    @model_validator(mode="after")
    def _bounds(self) -> AmlCompute:
        if self.min_instances > self.max_instances:
            raise ValueError(f"min_instances ({self.min_instances}) exceeds max_instances ({self.max_instances})")
        ray_fields = [f for f in ("address", "auth_token", "num_cpus_per_worker") if getattr(self, f) is not None]
        if self.type == "ray" and not self.address:
            raise ValueError("a compute of type ray needs address: the Ray head's host:port (e.g. 127.0.0.1:6379)")
        if self.type != "ray" and ray_fields:
            raise ValueError(f"{', '.join(ray_fields)} apply only to a compute of type ray (this one is {self.type})")
        if self.address and not _RAY_ADDRESS.fullmatch(self.address):
            raise ValueError(f"address '{self.address}' is not a Ray head address: give host:port (e.g. "
                             "127.0.0.1:6379 or ray-head.example.com:6379)")
        return self

    @property
    def provisioning_state(self) -> str | None:
        """azure-ai-ml's ``provisioning_state``: a compute here is a record with no VMs to provision,
        so one the server returned is ``Succeeded`` (None for one not yet created)."""
        return "Succeeded" if self.id else None


_RAY_ADDRESS = re.compile(r"[A-Za-z0-9._-]+:[0-9]{1,5}|\[[0-9A-Fa-f:]+\]:[0-9]{1,5}")


Compute = AmlCompute


# ---- endpoints and deployments ----------------------------------------------------------------


class BatchEndpointDefaults(dict):  # type: ignore[type-arg]
    """An endpoint's ``defaults``: a mapping (``defaults["deployment_name"]``, as the REST body has
    it) that also reads and sets by attribute (``endpoint.defaults.deployment_name = "blue"``, as
    azure-ai-ml's ``BatchEndpointDefaults``). A missing key reads as None."""

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        return self.get(key)

    def __setattr__(self, key: str, value: Any) -> None:
        if value is None:
            self.pop(key, None)
        else:
            self[key] = value

    def __delattr__(self, key: str) -> None:
        self.pop(key, None)


class BatchEndpoint(_Asset):
    SERVER_FIELDS: ClassVar[frozenset[str]] = _Resource.SERVER_FIELDS | {"scoring_uri", "provisioning_state"}

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9-]{2,31}$")
    description: str | None = None
    auth_mode: Literal["aad_token", "key"] = "aad_token"

    @field_validator("name", mode="before")
    @classmethod
    def _name_rule(cls, value: Any) -> Any:
        return check_endpoint_name("batch endpoint", value)
    defaults: dict[str, str] = Field(default_factory=BatchEndpointDefaults)  # {"deployment_name": ...}
    scoring_uri: str | None = None
    provisioning_state: str | None = None

    @field_validator("defaults", mode="before")
    @classmethod
    def _defaults_mapping(cls, value: Any) -> Any:
        """azure-ai-ml's ``BatchEndpointDefaults(deployment_name=...)`` object, or None: a mapping."""
        if value is None:
            return {}
        if not isinstance(value, dict) and hasattr(value, "deployment_name"):
            return {"deployment_name": value.deployment_name} if value.deployment_name else {}
        return value

    @field_validator("defaults", mode="after")
    @classmethod
    def _defaults_by_attribute(cls, value: dict[str, str]) -> dict[str, str]:
        return BatchEndpointDefaults(value)

    @property
    def default_deployment_name(self) -> str | None:
        return self.defaults.get("deployment_name")


class CodeConfiguration(_Entity):
    code: str
    scoring_script: str

    @field_validator("code", "scoring_script", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        return _path_text(value)


class BatchRetrySettings(_Entity):
    max_retries: int = Field(default=3, ge=0)
    timeout: int = Field(default=30, ge=1)

    _counts = field_validator("max_retries", "timeout", mode="before")(_whole_number)


class ResourceConfiguration(_Entity):
    instance_count: int = Field(default=1, ge=1)
    _counts = field_validator("instance_count", mode="before")(_whole_number)
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

    _counts = field_validator("max_concurrency_per_instance", "mini_batch_size", "error_threshold",
                              mode="before")(_whole_number)
    #: Batchpoint's own: seconds a worker's ``init()`` may take; past it the worker is killed and
    #: counted like a death in ``init()`` (docs/faults.md). Azure has no such setting.
    init_timeout: int = Field(default=600, ge=1, le=86_400)

    @field_validator("logging_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("output_file_name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return check_output_file_name(value)


#: Azure's rule for batch endpoint and deployment names, in words (the fields' pattern says the same)
ENDPOINT_NAME_RULE = "3 to 32 characters: a letter first, then letters, digits or '-'"


def check_endpoint_name(what: str, value: Any) -> Any:
    """A batch endpoint's or deployment's name, refused with the rule in words (not a regex)."""
    if isinstance(value, str) and not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{2,31}", value):
        raise ValueError(f"{what} name '{value}' is not valid: a name is {ENDPOINT_NAME_RULE}")
    return value


#: what output_file_name may be (Azure's blob naming rules, narrowed to one file name on any store)
OUTPUT_FILE_NAME_RULE = (
    "a plain file name like predictions.csv: 1 to 255 bytes (UTF-8), no '/' or '\\', no control characters "
    "(NUL, CR, LF, ...), not '.' or '..', not ending in '.' or a space, not starting with '.tmp-' (Batchpoint's "
    "temporary files) and not _PARTIAL.json (the marker of a canceled job's output)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_output_file_name(value: Any) -> str:
    """``output_file_name`` by :data:`OUTPUT_FILE_NAME_RULE`; a ``ValueError`` quoting at most 100
    characters of a bad one otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"output_file_name must be text: {OUTPUT_FILE_NAME_RULE}")
    shown = repr(value if len(value) <= 100 else value[:100]) + ("" if len(value) <= 100 else f"…({len(value)} chars)")
    if (not value or len(value.encode("utf-8", "surrogatepass")) > 255 or "/" in value or "\\" in value
            or _CONTROL.search(value) or value in (".", "..") or value.endswith((".", " "))
            or value.startswith(".tmp-") or value == "_PARTIAL.json"):
        raise ValueError(f"output_file_name {shown} is not valid: it must be {OUTPUT_FILE_NAME_RULE}")
    return value


_FLAT_SETTINGS = set(BatchDeploymentSettings.model_fields)


class BatchDeployment(_Asset):
    """A model batch deployment. Accepts the YAML shape (``resources``/``settings``) and the flat
    SDK shape (``instance_count=..., mini_batch_size=...``)."""

    SERVER_FIELDS: ClassVar[frozenset[str]] = _Resource.SERVER_FIELDS | {"provisioning_state"}

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9-]{2,31}$")
    endpoint_name: str
    type: Literal["model"] = "model"

    @field_validator("name", mode="before")
    @classmethod
    def _name_rule(cls, value: Any) -> Any:
        return check_endpoint_name("deployment", value)
    description: str | None = None
    model: str | Model
    code_configuration: CodeConfiguration | None = None
    environment: str | dict[str, Any] | None = None
    #: "local": the server's own environment (an MLflow model's unmet requirements are refused);
    #: otherwise an environment is built (docs/environments.md)
    env_manager: Literal["local", "virtualenv", "uv", "conda"] | None = None
    compute: str | None = None
    resources: ResourceConfiguration = Field(default_factory=ResourceConfiguration)
    settings: BatchDeploymentSettings = Field(default_factory=BatchDeploymentSettings)
    provisioning_state: str | None = None

    @field_validator("environment", mode="before")
    @classmethod
    def _environment_object(cls, value: Any) -> Any:
        """An ``Environment`` object, as azure-ai-ml takes it: inline (its ``conda_file`` / ``image``)
        or, with a name and nothing inline, a reference to the registered one."""
        if not isinstance(value, Environment):
            return value
        if value.name and value.conda_file is None and value.image is None:
            return f"azureml:{value.name}:{value.version}" if value.version else f"azureml:{value.name}@latest"
        return value.model_dump(mode="json", exclude_none=True, include={"conda_file", "image", "description"})

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


class ModelBatchDeploymentSettings(_Entity):
    """azure-ai-ml's ``ModelBatchDeploymentSettings``: a model deployment's settings, with
    ``instance_count`` among them (it becomes the deployment's ``resources.instance_count``). A
    setting left None takes the deployment's default."""

    mini_batch_size: int | None = Field(default=None, ge=1)
    instance_count: int | None = Field(default=None, ge=1)
    max_concurrency_per_instance: int | None = Field(default=None, ge=1)
    output_action: Literal["append_row", "summary_only"] | None = None
    output_file_name: str | None = None
    retry_settings: BatchRetrySettings | None = None
    environment_variables: dict[str, str] | None = None
    error_threshold: int | None = Field(default=None, ge=-1)
    logging_level: str | None = None
    #: Batchpoint's own (``BatchDeploymentSettings.init_timeout``)
    init_timeout: int | None = Field(default=None, ge=1, le=86_400)

    @model_validator(mode="after")
    def _summary_has_no_file(self) -> ModelBatchDeploymentSettings:
        if self.output_action == "summary_only" and self.output_file_name:
            raise ValueError("output_action summary_only writes no predictions file: leave output_file_name out "
                             "(it applies to append_row only)")
        return self


class ModelBatchDeployment(BatchDeployment):
    """azure-ai-ml's ``ModelBatchDeployment``: ``settings=ModelBatchDeploymentSettings(...)``
    (``instance_count`` inside it), or ``resources=ResourceConfiguration(instance_count=...)``;
    ``code_path`` + ``scoring_script`` as a short form of ``code_configuration``. Stored as a
    ``BatchDeployment`` (``type: model``)."""

    @model_validator(mode="before")
    @classmethod
    def _azure_model_shape(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        settings = data.get("settings")
        if isinstance(settings, ModelBatchDeploymentSettings):
            settings = settings.model_dump(exclude_none=True)
        if isinstance(settings, dict) and "instance_count" in settings:
            settings = dict(settings)
            count = settings.pop("instance_count")
            resources = data.get("resources")
            resources = (resources.model_dump(exclude_unset=True) if isinstance(resources, ResourceConfiguration)
                         else dict(resources or {}))
            if count is not None and resources.get("instance_count") is None:
                resources["instance_count"] = count
            data["resources"] = resources
        if settings is not None:
            data["settings"] = settings
        code_path, script = data.pop("code_path", None), data.pop("scoring_script", None)
        if code_path is not None or script is not None:
            if data.get("code_configuration") is not None or code_path is None or script is None:
                raise ValueError("give code_path and scoring_script together, or code_configuration="
                                 "CodeConfiguration(code=..., scoring_script=...), not both")
            data["code_configuration"] = {"code": _path_text(code_path), "scoring_script": _path_text(script)}
        return data


# ---- inputs and jobs --------------------------------------------------------------------------


class Input(_Entity):
    type: Literal["uri_folder", "uri_file", "mltable"] | None = None
    path: str
    mode: str | None = None

    @field_validator("path", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        return _path_text(value)


class Output(_Entity):
    """Where a job writes its output (``outputs={"score": Output(path=...)}``), as azure-ai-ml's
    ``Output``: a data store folder (``uri_folder``) or a file in one (``uri_file``)."""

    type: Literal["uri_folder", "uri_file"] = "uri_folder"
    path: str
    mode: str | None = None

    @field_validator("path", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        return _path_text(value)


class JobOutput(_Entity):
    type: str = "uri_folder"
    path: str
    file_name: str | None = None
    #: True when the job was canceled: the file holds only the mini-batches finished before the
    #: cancel (a ``_PARTIAL.json`` marker lies beside it)
    partial: bool | None = None


class JobProgress(_Entity):
    mini_batches_total: int | None = None
    mini_batches_completed: int = 0
    mini_batches_failed: int = 0
    files_total: int | None = None
    files_completed: int = 0
    files_failed: int = 0
    rows: int = 0
    listing_complete: bool = False


class JobStatus(StrEnum):
    """A job's status, as Azure ML names them: the one list of the names, for the server, the store
    (which is handed them as arguments) and the SDK. The allowed moves are in ``jobs/states.py``.

    ``Crashed`` is only ever seen in a job's history (its events): the server running the job
    stopped sending heartbeats; the job is queued again at once and resumes."""

    NOT_STARTED = "NotStarted"
    QUEUED = "Queued"
    PREPARING = "Preparing"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    CRASHED = "Crashed"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"


#: The statuses a job never leaves.
TERMINAL_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})

#: The version of the job event shape (``JobEvent``): a reader skips fields it does not know.
JOB_EVENT_VERSION = 1


class JobEvent(BaseModel):
    """One entry of a job's history (``GET /jobs/<name>/events``, or its server-sent stream).

    ``type`` is ``status`` (a transition: ``status`` and ``message`` are set) or ``progress`` (the
    counters changed). ``data`` holds the job's counters after the change (``JobProgress``'s fields);
    a ``Failed`` event adds ``error``, a ``Crashed`` one ``owner`` (the server that stopped)."""

    model_config = ConfigDict(extra="ignore")  # a newer server may send more

    v: int = JOB_EVENT_VERSION
    seq: int
    at: datetime
    type: str
    status: str | None = None
    message: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        return self.type == "status" and self.status in TERMINAL_STATUSES


class JobFailure(_Entity):
    """A file that finally failed. ``kind``: ``user`` (the scoring code raised), ``input`` (the file
    could not be read or was gone), ``timeout`` (``retry_settings.timeout`` passed), ``platform``
    (the platform failed; not charged to ``error_threshold``). ``attempt``: the try (from 1) it
    failed on (None for failures recorded before attempts were)."""

    mini_batch: int
    file: str | None = None
    error: str
    kind: str = "user"
    attempt: int | None = None


class Job(_Resource):
    """A batch job (``type: pipeline``), or the ``batchscoring`` step Azure runs under it (``type:
    parallel``, ``parent_job_name`` set: a view of the same job, see ``jobs/children.py``)."""

    name: str
    display_name: str | None = None
    type: str = "pipeline"
    experiment_name: str | None = None
    parent_job_name: str | None = None
    status: str = JobStatus.NOT_STARTED.value
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
    #: the id of the server that runs (or last ran) it (docs/multi-server.md)
    server: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    first_mini_batch_at: datetime | None = None
    listing_completed_at: datetime | None = None
    log_files: list[str] = Field(default_factory=list)
    #: each status and each phase inside one (listing, building environment) with its time
    #: (``job show``; empty in job lists), see ``jobs/timeline.py``
    phases: list[dict[str, Any]] = Field(default_factory=list)
    #: failed files by kind, the first few, and the errors file (``job show``; None: no failures)
    errors: dict[str, Any] | None = None

    @property
    def creation_context(self) -> SystemData:
        """azure-ai-ml's ``creation_context``: who created the job and when, and when it last
        changed (its end for an ended job, else its record's last update)."""
        return SystemData(created_at=self.created_at, created_by=self.created_by,
                          last_modified_at=self.end_time or self.updated_at or self.created_at,
                          last_modified_by=self.created_by)


class SystemData(_Entity):
    """A resource's creation context, as azure-ai-ml's ``SystemData`` names its fields."""

    created_at: datetime | None = None
    created_by: str | None = None
    created_by_type: str | None = None
    last_modified_at: datetime | None = None
    last_modified_by: str | None = None
    last_modified_by_type: str | None = None


class Workspace(_Entity):
    name: str
    id: str
    location: str
    resource_group: str
    subscription_id: str
    storage_account: str
    default_datastore: str
    server_version: str


def __getattr__(name: str) -> Any:
    """An azure-ai-ml entity Batchpoint does not have: an ImportError naming what to use instead."""
    from batchpoint.azure_names import entity_refused

    refused = entity_refused(name)
    if refused is not None:
        raise refused
    raise AttributeError(f"module 'batchpoint.entities' has no attribute '{name}'")
