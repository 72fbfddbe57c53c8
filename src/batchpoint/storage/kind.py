"""What a storage kind says about itself: the descriptor each kind's module declares.

A storage kind is one module under ``batchpoint/storage/kinds/`` that declares ``KIND``, a
:class:`StorageKind`, and one line in :data:`batchpoint.storage.registry.KIND_MODULES`. The rest of
Batchpoint reads these descriptors instead of asking "is it S3?":

* ``schemes`` — the URL schemes it reads (``uri/parse.py`` parses a storage URL with them, and
  refuses any other scheme listing the registered ones); ``spec_for_url`` — the backend spec a
  parsed URL becomes under the server's settings (``uri/storage_urls.py``);
* ``identity`` — which credential reads it when no data store credential does (``identity/rules.py``,
  ``uri/resolve.py``: the spec's table of which credential reads which source);
* ``delegation`` — what the server mints for workers instead of the secret (``identity/delegation.py``);
* ``config_fields`` / ``settings`` — the data store fields it needs and the ``BATCHPOINT_STORAGE__*``
  settings it reads;
* ``capabilities`` — folder listing, writes, hierarchical namespace, files on the server's disk,
  parts written by remote workers.

A descriptor module imports no optional library (the SDK parses URLs with it): the backend class
is named as ``"module:Class"`` and imported only when a backend is opened, with ``extra`` as the
install hint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult

from batchpoint.storage.base import StorageSpec

__all__ = [
    "Capabilities", "Delegation", "IdentityRules", "MalformedUrl", "StorageKind", "StorageUrl", "UrlScheme",
]


@dataclass(frozen=True)
class StorageUrl:
    """A location in storage named by URL (or by storage account resource id, ``scheme='arm'``).

    ``kind`` is the name of the storage kind that parsed it (``azure_blob``,
    ``azure_data_lake_gen2``, ``azure_data_lake_gen1``, ``s3``, ``https``, ...). ``path`` is
    percent-decoded and normalised; ``original`` is the text as given (query string — e.g. a SAS
    token — included).
    """

    kind: str
    account: str
    container: str
    path: str
    endpoint_suffix: str | None
    original: str
    scheme: str


class MalformedUrl(Exception):  # noqa: N818 - a signal to uri/parse.py, never shown as such
    """Raised by a kind's URL parser: the URL is this kind's but misspelled; the text says how it is spelled."""


#: ``parse(text, scheme, parts, hostport, path)`` → the parsed URL, or ``None`` when the URL is not
#: this kind's (another kind of the same scheme may take it); ``path`` is already normalised.
UrlParser = Callable[[str, str, SplitResult, str, str], "StorageUrl | None"]
#: ``spec_for_url(url, storage_settings)`` → (the backend spec, the path in it)
SpecForUrl = Callable[[StorageUrl, Any], "tuple[StorageSpec, str]"]


@dataclass(frozen=True)
class UrlScheme:
    """One URL scheme a kind reads. ``catch_all``: tried after the other kinds' parsers of the same
    scheme (plain ``https://`` takes what no storage account host took)."""

    scheme: str
    parse: UrlParser
    catch_all: bool = False


@dataclass(frozen=True)
class IdentityRules:
    """Which credential reads this kind when no data store credential does.

    ``reader``: ``server`` (the server's own folder: read like a credential in store),
    ``anonymous`` (nothing to authenticate, e.g. a plain HTTPS file), or ``job`` (the identity of
    the job, checked for ``data/read``, through the compute's identity). For ``job``:
    ``compute_identities`` are the compute identity types that can read it (another type is refused
    with ``compute_identity_hint``); ``public_access`` whether public data is tried anonymously when
    the compute has no identity; ``account_fields`` the config keys that name the account (checked
    by ``data/read`` on a storage account); ``location`` how an error names a location of this kind,
    ``container_word`` its top folder, ``grant`` what to configure when nothing could read it."""

    reader: str
    compute_identities: tuple[str, ...] = ()
    compute_identity_hint: str = ""
    public_access: bool = True
    account_fields: tuple[str, ...] = ()
    location: str = "storage account"
    container_word: str = "container"
    grant: str = ""


@dataclass(frozen=True)
class Delegation:
    """What workers get instead of the input's own credential: ``sas`` — an account key (or a
    connection string holding one) becomes a container SAS; ``token_scope`` — an Azure identity becomes
    an access token for this scope. Anything else is handed over unchanged."""

    sas: bool = False
    token_scope: str | None = None


@dataclass(frozen=True)
class Capabilities:
    """``lists_folders``: a folder can be listed (else only ``uri_file`` inputs); ``writable``: outputs
    can be written there; ``hierarchical``: real folders (a hierarchical namespace), not name
    prefixes; ``local_paths``: its files are on the server's disk and handed over by path;
    ``remote_writes``: an engine's workers on other machines can write a job's parts there themselves
    (it is reachable from them, with a credential the server hands over)."""

    lists_folders: bool = True
    writable: bool = True
    hierarchical: bool = False
    local_paths: bool = False
    remote_writes: bool = False


@dataclass(frozen=True)
class StorageKind:
    """Everything Batchpoint knows about one kind of storage (see the module docstring)."""

    name: str
    title: str
    backend: str
    extra: str | None
    identity: IdentityRules
    capabilities: Capabilities
    schemes: tuple[UrlScheme, ...] = ()
    spec_for_url: SpecForUrl | None = None
    delegation: Delegation = field(default_factory=Delegation)
    config_fields: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()
    empty_folder_hint: str = ""
    #: whether a data store may be of this kind (its ``type``: ``entities.Datastore``); False for
    #: storage read only by URL (plain HTTPS)
    datastore: bool = True

    @property
    def scheme_names(self) -> tuple[str, ...]:
        return tuple(s.scheme for s in self.schemes)
