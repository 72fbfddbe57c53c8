"""A storage-account URL (parsed by :mod:`batchpoint.uri.parse`) → the backend spec that reads it.

The server's configuration says where each kind of storage really is (``BATCHPOINT_STORAGE__*``):
``blob_endpoints`` maps an account name to its blob service URL (sovereign clouds, private
endpoints, Azurite), ``s3_endpoint_url`` points S3 at a compatible server. Hosts in loopback,
link-local or private ranges are refused (SSRF) unless listed in ``allow_private_hosts`` or reached
through a configured endpoint. Each kind's module says how (``StorageKind.spec_for_url``). The
credential is left empty: :mod:`batchpoint.identity.rules` decides it (identity of the job +
compute identity).
"""

from __future__ import annotations

from typing import Any

from batchpoint.exceptions import InputError
from batchpoint.storage.base import StorageSpec
from batchpoint.storage.registry import find_kind
from batchpoint.uri.parse import StorageUrl


def spec_for_storage_url(url: StorageUrl, settings: Any) -> tuple[StorageSpec, str]:
    """The backend spec (no credential) and the path in it that ``url`` names, as the storage kind
    that parsed it declares (``StorageKind.spec_for_url``, ``storage/kinds/``)."""
    kind = find_kind(url.kind)
    if kind is None or kind.spec_for_url is None:
        raise InputError(f"storage URL '{url.original}' of kind {url.kind} is not supported")
    return kind.spec_for_url(url, settings.storage)
