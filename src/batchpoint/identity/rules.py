"""Which credential reads an input — the spec's table, enforced:

| input | credential in store | credential used |
|---|---|---|
| data store / data asset on a store | yes | the data store's credential |
| data store / data asset on a store | no | the identity of the job (checked: ``data/read``) read through the compute's managed identity |
| storage-account URL (Blob, Gen1, Gen2), S3 | n/a | the identity of the job (``data/read`` on the account) + the compute's managed identity |

A local data store is the server's own folder: the server reads it, like a credential in store.
When the data needs an identity and the compute has none, a public container is tried
anonymously; if the storage refuses that, the job is refused before it starts, saying what to
configure. Only such an authorisation failure talks about identities: an unreachable host or a
missing path is reported as what it is. A plain ``https://`` file is read anonymously.

Each storage kind declares its part of this table in its own module (``storage/kinds/``,
:class:`~batchpoint.storage.kind.IdentityRules`): who reads it without a stored credential (the
server, anyone, or the job's identity), which compute identity types can read it, whether public
data is tried anonymously, and what to configure when nothing can read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batchpoint.auth.scopes import RoleAssignment, check_data_read
from batchpoint.exceptions import PermissionDeniedError, StorageAuthError, StorageNotFoundError, ValidationError
from batchpoint.storage.base import StorageSpec
from batchpoint.storage import registry


@dataclass
class IdentityContext:
    """Who the job runs as, and the compute whose managed identity reads identity-based data."""

    principal_id: str | None = None
    assignments: list[RoleAssignment] = field(default_factory=list)
    compute: str | None = None
    compute_identity: dict[str, Any] | None = None


IDENTITY_FIELDS = {
    "managed_identity": ("client_id",),
    "service_principal": ("tenant_id", "client_id", "client_secret"),
    "workload_identity": ("tenant_id", "client_id", "token_file"),
    "aws_profile": ("profile", "role_arn"),
}


def identity_credential(identity: dict[str, Any] | None, storage_kind: str) -> dict[str, Any] | None:
    """A compute's identity configuration → the storage credential it reads with (None when it has none).

    Which identity types read which storage is the kind's declaration (``IdentityRules.compute_identities``
    in ``storage/kinds/``): Azure identities (``managed_identity``, ``service_principal``,
    ``workload_identity``) read Azure storage; ``aws_profile`` reads S3. A mismatch is refused, naming both."""
    if not identity or identity.get("type") in (None, "none"):
        return None
    kind = str(identity["type"])
    if kind not in IDENTITY_FIELDS:
        raise ValidationError(f"unknown compute identity type '{kind}'; valid: none, {', '.join(IDENTITY_FIELDS)}")
    fields = {k: identity[k] for k in IDENTITY_FIELDS[kind] if identity.get(k) not in (None, "")}
    rules = getattr(registry.find_kind(storage_kind), "identity", None)
    if rules is not None and rules.compute_identities and kind not in rules.compute_identities:
        raise ValidationError(
            f"the compute identity is of type {kind}, which cannot read {storage_kind} storage: "
            f"{rules.compute_identity_hint}, or register a data store with credentials"
        )
    return {"kind": kind, **fields}


def _public(probe: Any, anonymous: StorageSpec) -> bool:
    """Whether anonymous callers may read the input. Refused (or "not found" for the container,
    which is what Azure tells anonymous callers of a private one) → False; a missing path in a
    readable container, or an unreachable host, is raised as what it is."""
    try:
        probe(anonymous, False)
    except (StorageAuthError, PermissionDeniedError, StorageNotFoundError):
        return False
    try:
        probe(anonymous, True)
    except (StorageAuthError, PermissionDeniedError):
        return False  # the container lists, its objects are private
    return True


def apply_identity(spec: StorageSpec, *, datastore: str | None, account: str | None, ctx: IdentityContext | None,
                   probe: Any) -> tuple[StorageSpec, str]:
    """The spec to read an identity-based input with, and the credential source shown on the job.

    ``probe(spec, path_too)`` raises when ``spec`` cannot read the container (``path_too=False``) or
    the input's path in it (used to try anonymous access). Anonymous callers get "not found" for a
    private container as for a missing one (Azure answers both with 404), so a container that
    refuses them needs an identity; a public container whose path is missing is reported as missing."""
    if ctx is None:
        return StorageSpec(spec.kind, spec.config, {"kind": "default_identity"}), "server identity"
    if ctx.principal_id is not None:
        check_data_read(ctx.assignments, ctx.principal_id, datastore=datastore, storage_account=account)
    credential = identity_credential(ctx.compute_identity, spec.kind)
    if credential is not None:
        return StorageSpec(spec.kind, spec.config, credential), f"compute identity ({ctx.compute})"
    anonymous = StorageSpec(spec.kind, spec.config, {"kind": "anonymous"})
    rules = registry.storage_kind(spec.kind).identity
    if rules.public_access and _public(probe, anonymous):  # e.g. ADLS Gen1 has no public access: never tried
        return anonymous, "anonymous (public data)"
    where = f"data store '{datastore}'" if datastore else f"{rules.location} '{account}'"
    compute = f"compute '{ctx.compute}'" if ctx.compute else "the deployment's compute (none is set)"
    if not rules.public_access:
        raise PermissionDeniedError(
            f"{where} is read with the identity of the job, through the managed identity of {compute}, but it has "
            f"no identity; {registry.storage_kind(spec.kind).title} cannot be read anonymously (it has no public access), so "
            f"nothing was tried. {rules.grant}.")
    raise PermissionDeniedError(
        f"{where} is read with the identity of the job, through the managed identity of {compute}, but it has "
        f"no identity, and the storage does not let anonymous callers read it (it is private, or the "
        f"{rules.container_word} does not exist). {rules.grant}."
    )
