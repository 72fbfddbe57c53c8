"""Which kind of credential a data store's ``credentials`` block is, in the shapes Azure ML's YAML
uses (``account_key``; ``sas_token``; ``tenant_id``/``client_id``/``client_secret``; none), plus
the S3 and connection-string kinds Batchpoint adds."""

from __future__ import annotations

from typing import Any

from batchpoint.exceptions import ValidationError
from batchpoint.identity.secrets import split_secrets

KINDS_BY_FIELD = [
    ("connection_string", "connection_string"),
    ("account_key", "account_key"),
    ("sas_token", "sas"),
    ("client_secret", "service_principal"),
    ("aws_secret_access_key", "aws_keys"),
    ("secret_access_key", "aws_keys"),
]
KNOWN_FIELDS = {
    "kind", "account_key", "sas_token", "tenant_id", "client_id", "client_secret", "authority_url",
    "resource_url", "connection_string", "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
    "access_key_id", "secret_access_key", "profile", "anonymous",
}


def credential_kind(credentials: dict[str, Any], store_kind: str = "") -> str:
    """``account_key`` | ``sas`` | ``service_principal`` | ``connection_string`` | ``aws_keys`` |
    ``anonymous`` | ``none`` (identity-based: the job's identity reads the data)."""
    unknown = sorted(set(credentials) - KNOWN_FIELDS)
    if unknown:
        raise ValidationError(
            f"unknown credentials field(s): {', '.join(unknown)}; valid: account_key, sas_token, "
            "tenant_id + client_id + client_secret, connection_string, aws_access_key_id + aws_secret_access_key"
        )
    if credentials.get("kind"):
        return str(credentials["kind"])
    if credentials.get("anonymous"):
        return "anonymous"
    for field, kind in KINDS_BY_FIELD:
        if credentials.get(field):
            if kind == "service_principal" and not (credentials.get("tenant_id") and credentials.get("client_id")):
                raise ValidationError("a service principal credential needs tenant_id, client_id and client_secret")
            return kind
    return "none"


def split_credentials(credentials: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(public fields, secret fields) without the ``kind`` key."""
    body = {k: v for k, v in credentials.items() if k not in ("kind", "anonymous") and v not in (None, "")}
    return split_secrets(body)
