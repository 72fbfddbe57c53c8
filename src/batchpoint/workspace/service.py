"""The workspace: what the server does with resources beyond storing them.

It creates the default data store on first start, turns rows into the public entities (never
with secrets), checks references between resources (a deployment's model, compute and code), and
copies models and code into the workspace so a deployment never changes under a running job.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import uuid
from collections.abc import Callable
from urllib.parse import urlparse
from pathlib import Path
from typing import Any

from batchpoint._version import __version__
from batchpoint._internal.clock import as_utc
from batchpoint._internal.digest import tree_sha256
from batchpoint._internal.netguard import check_host_allowed
from batchpoint._internal.redact import remember_secrets
from batchpoint._internal.ids import deployment_id, resource_id, storage_account_id
from batchpoint.entities import (
    AmlCompute,
    BatchDeployment,
    BatchEndpoint,
    Data,
    Datastore,
    Model,
    Workspace,
)
from batchpoint.exceptions import ConflictError, InputError, ValidationError
from batchpoint.auth.scopes import RoleAssignment
from batchpoint.identity.credentials import credential_kind, split_credentials
from batchpoint.identity.secrets import SecretBox
from batchpoint.workspace import compute_identity, model_layout
from batchpoint.workspace.uploads import UploadArea
from batchpoint.settings import Settings
from batchpoint.storage.azure_auth import parse_connection_string
from batchpoint.storage.base import StorageSpec, probe_spec
from batchpoint.storage.registry import open_backend, storage_kind
from batchpoint.store.sql import SqlMetadataStore
from batchpoint.store.tables import AssetRow, DatastoreRow
from batchpoint.uri.parse import DatastorePath, StorageUrl, parse_input_uri
from batchpoint.uri.resolve import InputResolver
from batchpoint.uri.storage_urls import spec_for_storage_url

log = logging.getLogger("batchpoint.workspace.service")

DEFAULT_DATASTORE = "workspaceblobstore"
LOCAL_ACCOUNT = "batchpointlocal"


class WorkspaceService:
    def __init__(self, settings: Settings, store: SqlMetadataStore, secrets: SecretBox) -> None:
        self.settings = settings
        self.store = store
        self.secrets = secrets
        self.resolver = InputResolver(settings, self)
        self.uploads = UploadArea(self)
        #: called with (name, its stored spec) after a compute is stored: the server rescales the
        #: workers it keeps warm for its deployments (engines/warm.py compute_changed)
        self.compute_changed: Callable[[str, dict[str, Any]], object] | None = None

    # -- start-up ----------------------------------------------------------------------------
    def bootstrap(self) -> None:
        for folder in (self.settings.jobs_dir, self.settings.models_dir, self.settings.code_dir):
            folder.mkdir(parents=True, exist_ok=True)
        if self.store.find_datastore(DEFAULT_DATASTORE) is None:
            path = self.settings.resolved_default_datastore_path()
            path.mkdir(parents=True, exist_ok=True)
            self.put_datastore(Datastore(name=DEFAULT_DATASTORE, type="local", path=str(path), is_default=True,
                                         description="The workspace's default data store (a local folder)."))

    def remember_secrets(self) -> None:
        """Register every stored secret with the server's log filter (see ``server/logs.py``)."""
        for row in self.store.list_datastores(limit=100_000):
            if row.secret:
                remember_secrets(self.secrets.decrypt(row.secret))
        for compute in self.store.list_computes():
            if compute.secret:
                remember_secrets(self.secrets.decrypt(compute.secret))

    # -- data stores -------------------------------------------------------------------------
    def put_datastore(self, ds: Datastore) -> Datastore:
        _check_datastore_fields(ds)
        public, secret = split_credentials(ds.credentials or {})
        remember_secrets(secret)  # masked in the server's logs from now on, even if this store is refused
        row = DatastoreRow(
            name=ds.name, kind=ds.type, description=ds.description, config=ds.config(),
            credential_kind=credential_kind(ds.credentials or {}, ds.type), public_credential=public,
            secret=self.secrets.encrypt(secret) if secret else None,
            is_default=ds.is_default or (self.store.find_datastore(ds.name) or DatastoreRow(is_default=False)).is_default,
        )
        spec = self._spec_of(row, secret)
        if ds.type == "local":
            Path(ds.path or "").mkdir(parents=True, exist_ok=True)
        if spec.credential is not None or ds.type == "local":
            open_backend(probe_spec(spec)).check_access()  # identity-based stores are checked per job, with its identity
        return self.datastore_entity(self.store.put_datastore(row))

    def datastore_spec(self, name: str) -> StorageSpec:
        row = self.store.get_datastore(name)
        secret = self.secrets.decrypt(row.secret) if row.secret else {}
        return self._spec_of(row, secret)

    @staticmethod
    def _spec_of(row: DatastoreRow, secret: dict[str, Any]) -> StorageSpec:
        credential = None
        if row.credential_kind != "none":
            credential = {"kind": row.credential_kind, **(row.public_credential or {}), **secret}
        return StorageSpec(kind=row.kind, config=dict(row.config), credential=credential)

    def default_datastore_name(self) -> str:
        return self.store.get_default_datastore().name

    def datastore_entity(self, row: DatastoreRow) -> Datastore:
        return Datastore(
            name=row.name, type=row.kind, description=row.description, id=resource_id(self.settings, "datastore", row.name),
            credential_kind=row.credential_kind, is_default=row.is_default,
            created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at),
            credentials=dict(row.public_credential) or None, **row.config,
        )

    # -- assets ------------------------------------------------------------------------------
    def get_asset(self, collection: str, name: str, version: str | None = None, label: str | None = None) -> AssetRow:
        return self.store.get_asset(collection, name, version=version, label=label)

    def check_registration_source(self, text: str, principal: str | None, assignments: Any = ()) -> None:
        """A data asset or model registered from a store's upload area or jobs' area: only by a
        principal who could invoke on that path (``UploadArea.check_reader``: its own upload, or
        ``data/read`` on the store), so registering cannot share another's upload. None: the server."""
        if principal is None:
            return
        try:
            parsed = parse_input_uri(text)
        except Exception:  # noqa: BLE001 - the resolver reports a path it cannot parse
            return
        if isinstance(parsed, DatastorePath):
            row = self.store.find_datastore(parsed.datastore)
            config = row.config if row else {}
            account = config.get("account_name") or config.get("store_name") or config.get("bucket")
            self.uploads.check_reader(parsed.datastore, parsed.path, principal, list(assignments), account)

    def create_data(self, data: Data, principal: str | None = None, assignments: Any = ()) -> Data:
        self.check_registration_source(data.path, principal, assignments)
        if data.type != "mltable":  # MLTable assets are stored as given; invoke refuses them
            resolved = self.resolver.check_for_registration(data.path, data.type)
            self.uploads.check_input(resolved.datastore, resolved.path)
            if resolved.asset:
                raise InputError(f"data asset path '{data.path}' points at another data asset; give a storage path")
        row = self.store.create_asset("data", name=data.name, version=data.version, type=data.type,
                                      path=data.path, description=data.description, tags=data.tags,
                                      properties=data.properties)
        return self.data_entity(row)

    def data_entity(self, row: AssetRow) -> Data:
        return Data(name=row.name, version=row.version, type=row.type, path=row.path, description=row.description,
                    tags=row.tags or {}, properties=row.properties or {}, id=resource_id(self.settings, "data", row.name, row.version),
                    created_at=as_utc(row.created_at))

    def create_model(self, model: Model, principal: str | None = None, assignments: Any = ()) -> Model:
        if not model.name:
            raise ValidationError("a model needs a name (only a model inline in a deployment gets one from it)")
        self.check_registration_source(model.path, principal, assignments)
        resolved = self.resolver.resolve(model.path, None)
        row = self.store.create_asset("models", name=model.name, version=model.version, type=model.type,
                                      path=model.path, description=model.description, tags=model.tags,
                                      properties=model.properties)
        root = model_layout.version_dir(self.settings.models_dir, row.name, row.version)
        target = model_layout.copy_target(root, resolved.path, resolved.type == "uri_file")
        try:
            self._copy_tree(resolved, target)
            if model.type == "mlflow_model" and (resolved.type == "uri_file" or not (target / "MLmodel").is_file()):
                raise ValidationError(
                    f"model '{model.name}' has type mlflow_model but its folder has no MLmodel file; "
                    "give the folder written by mlflow.<flavor>.save_model, or use type custom_model"
                )
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            self.store.delete_asset("models", row.name, row.version)
            raise
        return self.model_entity(row)

    def model_entity(self, row: AssetRow) -> Model:
        return Model(name=row.name, version=row.version, type=row.type, path=row.path, description=row.description,
                     tags=row.tags or {}, properties=row.properties or {}, id=resource_id(self.settings, "model", row.name, row.version),
                     created_at=as_utc(row.created_at))

    def model_dir(self, name: str, version: str) -> Path:
        """``AZUREML_MODEL_DIR`` of a model version: the registered folder or file sits inside it
        under its own name (see ``workspace/model_layout.py``)."""
        return model_layout.version_dir(self.settings.models_dir, name, version)

    # -- computes, endpoints, deployments ----------------------------------------------------
    def put_compute(self, compute: AmlCompute) -> AmlCompute:
        """Store a compute; an identity's client secret is encrypted, never returned."""
        spec = compute.spec()
        compute_identity.check(compute.name, spec.get("identity"))
        if spec.get("type") == "ray":
            self._check_ray_address(compute.name, str(spec.get("address") or ""))
        secret = None
        identity = spec.get("identity") or {}
        if identity.get("client_secret"):
            remember_secrets({"client_secret": identity["client_secret"]})
            secret = self.secrets.encrypt({"client_secret": identity.pop("client_secret")})
        if spec.get("auth_token"):  # a Ray cluster's token (type ray): kept like the client secret
            remember_secrets({"auth_token": spec["auth_token"]})
            secret = self.secrets.encrypt({**(self.secrets.decrypt(secret) if secret else {}),
                                           "auth_token": spec.pop("auth_token")})
        row = self.store.put_compute(compute.name, spec, secret=secret)
        if self.compute_changed is not None:
            try:
                self.compute_changed(compute.name, dict(row.spec))
            except Exception:  # noqa: BLE001 - the warm workers' trouble never fails the change itself
                log.warning("could not rescale the warm workers of compute %s", compute.name, exc_info=True)
        return self.compute_entity(row)

    def _check_ray_address(self, name: str, address: str) -> None:
        """A Ray compute's address, checked when it is created (as a data store's credentials are):
        one Ray cluster per workspace (Ray allows one cluster per driver process, and every server
        of the workspace is that driver), and its GCS answering within ``ray.probe_timeout_s``."""
        from batchpoint._internal.gcs_probe import GCS_CHECKS, probe_gcs

        for other in self.store.list_computes():
            theirs = str(other.spec.get("address") or "")
            if other.name != name and other.spec.get("type") == "ray" and theirs != address:
                raise ValidationError(
                    f"compute '{other.name}' already uses the Ray cluster at {theirs}; a Batchpoint server drives "
                    f"one Ray cluster (Ray allows one cluster per driver process), so compute '{name}' cannot use "
                    f"{address}: give it the address {theirs}, or change or delete compute '{other.name}' first")
        timeout = self.settings.ray.probe_timeout_s
        why = probe_gcs(address, timeout)
        if why is not None:
            raise ValidationError(
                f"compute '{name}': no Ray cluster answers at {address}: {why}. Nothing was saved; {GCS_CHECKS} "
                f"(checked within {timeout:g} s: BATCHPOINT_RAY__PROBE_TIMEOUT_S)", details={"address": address})

    def compute_for_engine(self, name: str) -> dict[str, Any]:
        """A compute's spec with the secrets its engine needs (a Ray cluster's ``auth_token``) and,
        for Ray, how long a job may wait for its connection (``ray.connect_timeout_s``)."""
        row = self.store.get_compute(name)
        return self.engine_compute(row.name, row.spec, row.secret)

    def engine_compute(self, name: str, stored: Any, secret: str | None) -> dict[str, Any]:
        """:meth:`compute_for_engine` of a compute as stored (a job's plan keeps that snapshot)."""
        spec = {**stored, "name": name}
        if spec.get("type") == "ray":
            spec["connect_timeout_s"] = self.settings.ray.connect_timeout_s
        if secret:
            token = self.secrets.decrypt(secret).get("auth_token")
            if token:
                spec["auth_token"] = token
        return spec

    def compute_identity(self, name: str) -> dict[str, Any] | None:
        row = self.store.get_compute(name)
        return self.identity_of_compute(row.spec, row.secret)

    def identity_of_compute(self, stored: Any, secret: str | None) -> dict[str, Any] | None:
        """:meth:`compute_identity` of a compute as stored (a job's plan keeps that snapshot)."""
        identity = dict(stored.get("identity") or {})
        if secret and identity:
            identity.update({k: v for k, v in self.secrets.decrypt(secret).items() if k != "auth_token"})
        return compute_identity.as_credential_config(identity) or None

    def assignments(self, principal: str) -> list[RoleAssignment]:
        return [RoleAssignment(r.principal_id, r.role, r.scope) for r in self.store.list_role_assignments(principal)]

    def compute_entity(self, row: Any) -> AmlCompute:
        return AmlCompute(**row.spec, id=resource_id(self.settings, "compute", row.name),
                          created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at))

    def endpoint_entity(self, row: Any) -> BatchEndpoint:
        spec = {k: v for k, v in row.spec.items() if k != "scoring_uri"}
        return BatchEndpoint(**spec, id=resource_id(self.settings, "endpoint", row.name),
                             scoring_uri=f"/batchEndpoints/{row.name}/invoke", provisioning_state="Succeeded",
                             created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at))

    def deployment_entity(self, row: Any) -> BatchDeployment:
        spec = {k: v for k, v in row.spec.items() if not k.startswith("_")}
        return BatchDeployment(**spec, id=deployment_id(self.settings, row.endpoint_name, row.name),
                               provisioning_state="Succeeded",
                               created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at))

    def prepare_deployment(self, dep: BatchDeployment) -> dict[str, Any]:
        """Check references and snapshot the code; returns the spec to store."""
        self.store.get_endpoint(dep.endpoint_name)
        model = self._model_ref(dep.model, dep)
        if dep.compute:
            compute = self.store.get_compute(dep.compute.removeprefix("azureml:"))
            wanted, most = dep.resources.instance_count, int(compute.spec.get("max_instances") or 1)
            if wanted > most:
                raise ValidationError(
                    f"deployment '{dep.name}' asks for instance_count {wanted}, but compute '{compute.name}' has "
                    f"max_instances {most}; lower instance_count or raise the compute's max_instances")
        spec = dep.model_dump(mode="json", exclude=set(dep.SERVER_FIELDS))
        spec["model"] = f"azureml:{model.name}:{model.version}"
        if dep.code_configuration is None and model.type != "mlflow_model":
            raise ValidationError(
                f"deployment '{dep.name}' uses model '{model.name}:{model.version}' of type {model.type}, which needs "
                "a scoring script: set code_configuration {code, scoring_script} (only mlflow_model runs without code)"
            )
        if dep.code_configuration is not None:
            spec["_code_dir"] = str(self._snapshot_code(dep))
        return spec

    def _model_ref(self, ref: str | Model, dep: BatchDeployment | None = None) -> AssetRow:
        if isinstance(ref, Model) and ref.name is None and dep is not None:
            # inline (Azure's model: {path: ...}): registered under the deployment's name, next version
            entity = self.create_model(ref.model_copy(update={"name": f"{dep.endpoint_name}-{dep.name}"}))
            return self.store.get_asset("models", entity.name, version=entity.version)
        if isinstance(ref, Model):
            return self.store.get_asset("models", ref.name, version=ref.version)
        text = ref.removeprefix("azureml:").lstrip("/")
        if "@" in text:
            name, label = text.split("@", 1)
            return self.store.get_asset("models", name, label=label)
        if ":" in text:
            name, version = text.split(":", 1)
            return self.store.get_asset("models", name, version=version)
        return self.store.get_asset("models", text, label="latest")

    def _snapshot_code(self, dep: BatchDeployment) -> Path:
        assert dep.code_configuration is not None
        resolved = self.resolver.resolve(dep.code_configuration.code, "uri_folder")
        # named by its content, never replaced: a job pinned to a snapshot keeps it (jobs/plan.py)
        staging = self.settings.code_dir / f".staging-{dep.endpoint_name}-{dep.name}-{uuid.uuid4().hex[:8]}"
        try:
            self._copy_tree(resolved, staging)
            script = staging / dep.code_configuration.scoring_script
            if not script.is_file():
                raise ValidationError(
                    f"scoring script '{dep.code_configuration.scoring_script}' is not in the code folder "
                    f"'{dep.code_configuration.code}'"
                )
            target = self.settings.code_dir / f"{dep.endpoint_name}-{dep.name}-{tree_sha256(staging)[:16]}"
            if not target.is_dir():
                try:
                    staging.rename(target)
                except OSError:  # the same content snapshot at the same moment by another request
                    if not target.is_dir():
                        raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def _copy_tree(self, resolved: Any, target: Path) -> None:
        """Copy a model or code folder (or file) into the workspace. Out of the upload area, every
        file must match the upload's manifest, so what runs is what the user uploaded."""
        pinned = self.uploads.manifest_for_copy(resolved.datastore, resolved.path)
        if pinned is not None:  # only the part of the upload that is copied
            top = resolved.path.rstrip("/")
            pinned = {k: v for k, v in pinned.items() if k == top or k.startswith(f"{top}/")}
        backend = open_backend(resolved.spec)
        target.mkdir(parents=True, exist_ok=True)
        if resolved.type == "uri_file":
            sources = [(resolved.path, target / resolved.path.rsplit("/", 1)[-1])]
        else:
            prefix = resolved.path.rstrip("/")
            sources = [(info.path, target / (info.path[len(prefix):].lstrip("/") if prefix else info.path))
                       for info in backend.iter_files(prefix)]
        for source, dest in sources:
            dest.parent.mkdir(parents=True, exist_ok=True)
            backend.get_file(source, str(dest))
            if pinned is not None:
                entry = pinned.pop(source, None)
                if entry is None:
                    raise ConflictError(f"'{source}' is in the upload area but not in its upload's manifest; "
                                        "nothing was registered")
                if _sha256_file(dest) != (entry["size"], entry["sha256"]):
                    raise self.uploads.discard_changed(entry, source)
        if pinned:  # a file of the manifest was removed from storage
            raise self.uploads.discard_changed(next(iter(pinned.values())), next(iter(pinned)))

    # -- workspace ---------------------------------------------------------------------------
    def workspace_entity(self) -> Workspace:
        ws = self.settings.workspace
        default = self.store.get_default_datastore()
        account = default.config.get("account_name") or LOCAL_ACCOUNT
        return Workspace(name=ws.name, id=self.settings.arm_prefix, location=ws.location,
                         resource_group=ws.resource_group, subscription_id=ws.subscription_id,
                         storage_account=storage_account_id(self.settings, account),
                         default_datastore=default.name, server_version=__version__)

    def storage_url_spec(self, url: StorageUrl) -> tuple[StorageSpec, str, str | None, str]:
        """A storage-account URL → (spec, path, datastore name if it is the workspace's, credential source)."""
        default = self.store.get_default_datastore()
        account = default.config.get("account_name") or LOCAL_ACCOUNT
        if url.scheme == "arm" and url.account.lower() == account.lower():
            # the workspace's own storage account: paths are relative to the default data store
            container = default.config.get("container_name")
            parts = [p for p in (url.container, url.path) if p]
            path = "/".join(parts)
            if container and url.container == container:
                path = url.path
            return self.datastore_spec(default.name), path, default.name, "datastore"
        spec, path = spec_for_storage_url(url, self.settings)
        return spec, path, None, "identity"


def _check_datastore_fields(ds: Datastore) -> None:
    required = storage_kind(ds.type).config_fields  # as the kind declares them (storage/kinds/)
    missing = [f for f in required if not getattr(ds, f)]
    if missing:
        raise ValidationError(f"data store '{ds.name}' of type {ds.type} needs: {', '.join(missing)}")
    _check_storage_names(ds)  # before any host is looked at: a name is never part of a URL's authority
    for host in _datastore_hosts(ds):
        check_host_allowed(host, allow_private=ds.allow_private_network)
    if ds.type == "local" and not Path(ds.path or "").is_absolute():
        raise ValidationError(f"data store '{ds.name}': path '{ds.path}' must be an absolute folder path on the server")


#: Azure's and S3's naming rules: (pattern, the rule as an error states it)
_ACCOUNT_RULE = (re.compile(r"[a-z0-9]{3,24}"), "3 to 24 characters, lowercase letters and digits only")
_CONTAINER_RULE = (re.compile(r"(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*|\$root|\$web"),
                   "3 to 63 characters: lowercase letters, digits and single hyphens, starting and ending with a "
                   "letter or digit (or $root, $web)")
_BUCKET_RULE = (re.compile(r"(?=.{3,63}$)(?!xn--|sthree-|amzn-s3-demo-)(?!.*(-s3alias|--ol-s3|\.mrap|--x-s3|--table-s3)$)"
                           r"(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9]([a-z0-9-]|\.(?!\.))*[a-z0-9]"),
                "3 to 63 characters: lowercase letters, digits, '.' and '-', starting and ending with a letter or digit, "
                "no '..', not an IP address, not starting with xn--, sthree- or amzn-s3-demo-, not ending with -s3alias, "
                "--ol-s3, .mrap, --x-s3 or --table-s3")


def _check_storage_names(ds: Datastore) -> None:
    """Account, container, file-system, store and bucket names follow Azure's and S3's naming rules
    (checked before any connection: a name like ``x@127.0.0.2:18061/`` would otherwise become the
    host part of the storage URL)."""
    conn = (ds.credentials or {}).get("connection_string")
    names = [("account_name", ds.account_name, "an Azure storage account name", _ACCOUNT_RULE),
             ("container_name", ds.container_name, "an Azure blob container name", _CONTAINER_RULE),
             ("filesystem", ds.filesystem, "an ADLS Gen2 file system name", _CONTAINER_RULE),
             ("store_name", ds.store_name, "an ADLS Gen1 account name", _ACCOUNT_RULE),
             ("bucket", ds.bucket, "an S3 bucket name", _BUCKET_RULE)]
    if isinstance(conn, str) and parse_connection_string(conn).get("AccountName"):
        names.append(("the connection string's AccountName", parse_connection_string(conn)["AccountName"],
                      "an Azure storage account name", _ACCOUNT_RULE))
    for field, value, what, (pattern, rule) in names:
        if value is not None and not pattern.fullmatch(value):
            shown = value if len(value) <= 100 else f"{value[:100]}…({len(value)} chars)"
            raise ValidationError(f"data store '{ds.name}': {field} '{shown}' is not {what}: {rule}",
                                  details={"field": field.split()[-1]})


def _datastore_hosts(ds: Datastore) -> list[str]:
    """Every host a data store makes the server contact, wherever it is spelled: the endpoint
    URLs, ``<account>.blob.<endpoint suffix>``, the endpoints and suffix of a connection string,
    and a service principal's authority URL (checked against SSRF before the store is saved)."""
    urls = [ds.blob_endpoint_url, ds.endpoint_url]
    hosts = []
    if ds.type in ("azure_blob", "azure_data_lake_gen2") and ds.endpoint and not ds.blob_endpoint_url:
        hosts.append(f"{ds.account_name}.blob.{ds.endpoint.strip('.')}")
    credentials = ds.credentials or {}
    authority = credentials.get("authority_url")
    if isinstance(authority, str):
        urls.append(authority if "://" in authority else f"https://{authority}")
    conn = credentials.get("connection_string")
    if isinstance(conn, str):
        parts = parse_connection_string(conn)
        urls += [v for k, v in parts.items() if k.lower().endswith("endpoint")]
        suffix, account = parts.get("EndpointSuffix"), parts.get("AccountName") or ds.account_name
        if suffix and account and not parts.get("BlobEndpoint"):
            hosts.append(f"{account}.blob.{suffix.strip('.')}")
    for url in urls:
        if url:
            host = urlparse(url if "://" in url else f"https://{url}").hostname or ""
            if not host:
                raise ValidationError(f"data store '{ds.name}': '{url}' is not a URL with a host")
            hosts.append(host)
    return hosts


def _sha256_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return path.stat().st_size, digest.hexdigest()
