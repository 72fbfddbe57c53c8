"""A compute's ``identity:`` in Azure's own forms, read as the compute identities Batchpoint has.

=====================================================  ===============================================
Azure's YAML / azure-ai-ml                             read as
=====================================================  ===============================================
``{type: system_assigned}``                            ``managed_identity`` with no client id (the
                                                       host's own managed identity)
``{type: user_assigned, user_assigned_identities:      ``managed_identity`` with that ``client_id``
[{client_id: ...}]}``
``{type: user_assigned, ...}`` with several            refused: a job reads with one identity
identities, or one with only ``resource_id``           (Batchpoint selects it by its client id)
=====================================================  ===============================================

The form given is what is stored and shown; only reading data uses the mapped form.
"""

from __future__ import annotations

from typing import Any

from batchpoint.exceptions import ValidationError


def check(compute: str, identity: dict[str, Any] | None) -> None:
    """Refuse, at create, an Azure identity form that cannot be mapped (naming what to give)."""
    if not identity or identity.get("type") != "user_assigned":
        return
    identities = identity.get("user_assigned_identities") or []
    if len(identities) != 1:
        raise ValidationError(
            f"compute '{compute}': identity type user_assigned needs exactly one entry in user_assigned_identities "
            f"(got {len(identities)}): a job reads its data with one identity")
    if not identities[0].get("client_id"):
        raise ValidationError(
            f"compute '{compute}': the user-assigned identity needs its client_id (Batchpoint selects a managed "
            "identity by client id; resource_id, object_id and principal_id are kept but not used): "
            "user_assigned_identities: [{client_id: <guid>, resource_id: ...}]")


def as_credential_config(identity: dict[str, Any]) -> dict[str, Any]:
    """The identity as ``identity/rules.py`` reads it (Azure's forms → ``managed_identity``)."""
    kind = identity.get("type")
    if kind == "system_assigned":
        return {"type": "managed_identity"}
    if kind == "user_assigned":
        first = (identity.get("user_assigned_identities") or [{}])[0]
        return {"type": "managed_identity", "client_id": first.get("client_id")}
    return identity
