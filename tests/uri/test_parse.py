"""Every input spelling of a batch endpoint, and every refusal, through ``parse_input_uri``."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from batchpoint.exceptions import InputError, UnsafeInputError, UnsupportedInputError
from batchpoint.uri.parse import (
    INPUT_SPELLINGS,
    AssetRef,
    DatastorePath,
    LocalPath,
    StorageUrl,
    WorkspaceRef,
    format_input_uri,
    parse_input_uri,
)

SUB = "00000000-1111-2222-3333-444444444444"
WS_ID = (
    f"/subscriptions/{SUB}/resourceGroups/my-rg/providers"
    "/Microsoft.MachineLearningServices/workspaces/main-ws"
)
WS_URI = f"azureml://subscriptions/{SUB}/resourcegroups/my-rg/workspaces/main-ws"
WS = WorkspaceRef(subscription_id=SUB, resource_group="my-rg", workspace="main-ws")
LOC_WS = WorkspaceRef(workspace="main-ws", location="westeurope")
LOC_URI = "azureml://locations/westeurope/workspaces/main-ws"
STORAGE_ID = f"/subscriptions/{SUB}/resourcegroups/my-rg/providers/microsoft.storage/storageaccounts/acct"
EXAMPLE_BLOB = "https://azuremlexampledata.blob.core.windows.net/data/heart-disease-uci/data"


# -- accepted spellings --------------------------------------------------------------------------

DATASTORE_CASES = [
    ("azureml://datastores/wsblob/paths/heart/data", DatastorePath("wsblob", "heart/data")),
    ("azureml:/datastores/wsblob/paths/heart/data/", DatastorePath("wsblob", "heart/data")),
    ("azureml:datastores/wsblob/paths/heart/data", DatastorePath("wsblob", "heart/data")),
    ("AzureML://Datastores/ds/Paths/a//b/./c.csv", DatastorePath("ds", "a/b/c.csv")),
    ("azureml://datastores/ds/paths", DatastorePath("ds", "")),
    ("azureml://datastores/ds/paths/", DatastorePath("ds", "")),
    ("azureml://datastores/ds/paths/datasets/x", DatastorePath("ds", "datasets/x")),
    ("  azureml://datastores/ds/paths/x  ", DatastorePath("ds", "x")),
    (f"{WS_ID}/datastores/workspaceblobstore/paths/heart-classifier/data",
     DatastorePath("workspaceblobstore", "heart-classifier/data", WS)),
    (f"{WS_ID}/datastores/workspaceblobstore", DatastorePath("workspaceblobstore", "", WS)),
    (f"{WS_ID}/datastores/workspaceblobstore/", DatastorePath("workspaceblobstore", "", WS)),
    (WS_ID.lower() + "/datastores/ds/paths/x", DatastorePath("ds", "x", WS)),
    (f"{WS_URI}/datastores/ds/paths/x/y", DatastorePath("ds", "x/y", WS)),
    (f"azureml:/{WS_ID.lstrip('/')}/datastores/ds/paths/x", DatastorePath("ds", "x", WS)),
    (f"{LOC_URI}/datastores/ds/paths/x", DatastorePath("ds", "x", LOC_WS)),
]

ASSET_CASES = [
    ("azureml:heart-dataset-unlabeled@latest", AssetRef("heart-dataset-unlabeled", label="latest")),
    ("azureml:/heart-dataset-unlabeled@latest", AssetRef("heart-dataset-unlabeled", label="latest")),
    ("heart-dataset-unlabeled@latest", AssetRef("heart-dataset-unlabeled", label="latest")),
    ("heart@prod", AssetRef("heart", label="prod")),
    ("azureml:heart:1", AssetRef("heart", version="1")),
    ("azureml:/heart:1.0.2", AssetRef("heart", version="1.0.2")),
    ("heart:3", AssetRef("heart", version="3")),
    ("my_data.v2:2024-01-01", AssetRef("my_data.v2", version="2024-01-01")),
    (f"{WS_ID}/data/heart/versions/3", AssetRef("heart", version="3", workspace=WS)),
    (f"{WS_ID.lower()}/data/heart/versions/3/", AssetRef("heart", version="3", workspace=WS)),
    ("azureml://locations/westeurope/workspaces/main-ws/data/heart/versions/2",
     AssetRef("heart", version="2", workspace=LOC_WS)),
    ("azureml://locations/westeurope/workspaces/main-ws/data/heart/versions/labels/latest",
     AssetRef("heart", label="latest", workspace=LOC_WS)),
    (f"{WS_URI}/data/heart/versions/7", AssetRef("heart", version="7", workspace=WS)),
    (f"{WS_URI}/data/heart/versions/labels/latest", AssetRef("heart", label="latest", workspace=WS)),
]

CORE = "core.windows.net"
ARM_MIXED_CASE = STORAGE_ID.replace("microsoft.storage/storageaccounts", "Microsoft.Storage/storageAccounts")
# text -> (kind, account, container, path, endpoint_suffix, scheme); ``original`` is always the text
STORAGE_CASES = [
    (EXAMPLE_BLOB, ("azure_blob", "azuremlexampledata", "data", "heart-disease-uci/data", CORE, "https")),
    (EXAMPLE_BLOB + "/heart.csv",
     ("azure_blob", "azuremlexampledata", "data", "heart-disease-uci/data/heart.csv", CORE, "https")),
    ("https://acct.blob.core.windows.net/c", ("azure_blob", "acct", "c", "", CORE, "https")),
    ("https://acct.dfs.core.chinacloudapi.cn/fs/a%20b/c.csv?sv=x&sig=y",
     ("azure_data_lake_gen2", "acct", "fs", "a b/c.csv", "core.chinacloudapi.cn", "https")),
    ("http://acct.blob.core.usgovcloudapi.net/c/x",
     ("azure_blob", "acct", "c", "x", "core.usgovcloudapi.net", "http")),
    ("abfss://fs@acct.dfs.core.windows.net/p/q",
     ("azure_data_lake_gen2", "acct", "fs", "p/q", CORE, "abfss")),
    ("abfs://fs@acct.dfs.core.windows.net", ("azure_data_lake_gen2", "acct", "fs", "", CORE, "abfs")),
    ("wasbs://c@acct.blob.core.windows.net/p/", ("azure_blob", "acct", "c", "p", CORE, "wasbs")),
    ("wasb://c@acct.blob.core.windows.net/p", ("azure_blob", "acct", "c", "p", CORE, "wasb")),
    ("adl://store.azuredatalakestore.net/a/b",
     ("azure_data_lake_gen1", "store", "", "a/b", "azuredatalakestore.net", "adl")),
    ("s3://my-bucket/key/part-0.csv", ("s3", "", "my-bucket", "key/part-0.csv", None, "s3")),
    ("s3://my-bucket", ("s3", "", "my-bucket", "", None, "s3")),
    (f"azureml:/{STORAGE_ID}/paths/c/p/q", ("azure_blob", "acct", "c", "p/q", None, "arm")),
    (f"{STORAGE_ID}/paths/c/heart-disease-uci-unlabeled",
     ("azure_blob", "acct", "c", "heart-disease-uci-unlabeled", None, "arm")),
    (f"{ARM_MIXED_CASE}/Paths/c", ("azure_blob", "acct", "c", "", None, "arm")),
    ("https://example.com/data/x.csv", ("https", "example.com", "", "data/x.csv", None, "https")),
    ("HTTPS://user:pw@Example.COM:8443/a/b/?q=1", ("https", "example.com:8443", "", "a/b", None, "https")),
    ("http://127.0.0.1:10000/devstoreaccount1/c/x",
     ("https", "127.0.0.1:10000", "", "devstoreaccount1/c/x", None, "http")),
    ("https://[::1]:8080/x", ("https", "[::1]:8080", "", "x", None, "https")),
    # a port or a suffix not starting with "core." is not an Azure storage endpoint: a plain URL
    ("https://acct.blob.core.windows.net:444/c/x",
     ("https", "acct.blob.core.windows.net:444", "", "c/x", None, "https")),
    ("https://acct.blob.example.org/c/x", ("https", "acct.blob.example.org", "", "c/x", None, "https")),
]

LOCAL_CASES = [
    "./data", "data/heart", "/abs/path", "/abs/path/heart.csv", "heart.csv", "./heart@latest", "C:\\x",
    "C:/data/x", "..", "../data", "~/data", "a:b/c", "name:", "@latest", ":1", "-x:1", "name:1 2",
]


@pytest.mark.parametrize(("text", "expected"), DATASTORE_CASES + ASSET_CASES)
def test_azureml_references(text: str, expected: object) -> None:
    assert parse_input_uri(text) == expected


@pytest.mark.parametrize(("text", "fields"), STORAGE_CASES)
def test_storage_urls(text: str, fields: tuple[str, str, str, str, str | None, str]) -> None:
    kind, account, container, path, suffix, scheme = fields
    assert parse_input_uri(text) == StorageUrl(kind, account, container, path, suffix, text, scheme)


@pytest.mark.parametrize("text", LOCAL_CASES)
def test_local_paths_are_kept_as_given(text: str) -> None:
    assert parse_input_uri(text) == LocalPath(text)


def test_asset_refs_set_exactly_one_of_version_and_label() -> None:
    for text, _ in ASSET_CASES:
        ref = parse_input_uri(text)
        assert isinstance(ref, AssetRef)
        assert (ref.version is None) != (ref.label is None)


def test_results_are_frozen() -> None:
    parsed = parse_input_uri("azureml://datastores/ds/paths/x")
    with pytest.raises(AttributeError):
        parsed.path = "y"  # type: ignore[misc]


# -- refusals ------------------------------------------------------------------------------------

REFUSALS = [
    # empty
    ("", InputError, "empty"),
    ("   \n\t", InputError, "empty"),
    # MLTable
    ("./data/MLTable", UnsupportedInputError, "MLTable inputs are not supported"),
    ("data/MLTable/", UnsupportedInputError, "uri_folder"),
    ("MLTable", UnsupportedInputError, "MLTable"),
    ("azureml://datastores/ds/paths/tables/MLTable", UnsupportedInputError, "uri_folder"),
    (f"{WS_ID}/datastores/ds/paths/t/MLTable", UnsupportedInputError, "MLTable"),
    ("https://acct.blob.core.windows.net/c/t/MLTable", UnsupportedInputError, "MLTable"),
    ("s3://bucket/t/mltable", UnsupportedInputError, "MLTable"),
    # V1 FileDataset
    ("azureml://datasets/heart", UnsupportedInputError, "V1 FileDataset"),
    ("azureml:/datasets/heart/versions/1", UnsupportedInputError, "deprecated"),
    ("azureml:datasets/heart", UnsupportedInputError, "uri_folder"),
    (f"{WS_ID}/datasets/heart", UnsupportedInputError, "V1 FileDataset"),
    (f"{WS_ID}/datasets/heart/versions/1", UnsupportedInputError, "V1 FileDataset"),
    (f"{WS_URI}/datasets/heart", UnsupportedInputError, "V1 FileDataset"),
    ("azureml://locations/westeurope/workspaces/ws/datasets/heart", UnsupportedInputError, "V1 FileDataset"),
    # malformed azureml references
    ("azureml:", InputError, "Valid inputs"),
    ("azureml://", InputError, "Valid inputs"),
    ("azureml://datastores/x", InputError, "datastores/<datastore>/paths/<path>"),
    ("azureml://datastores", InputError, "datastores/<datastore>/paths/<path>"),
    ("azureml://datastores//paths/x", InputError, "Valid inputs"),
    ("azureml://datastores/x/files/y", InputError, "Valid inputs"),
    ("azureml://datastores/-bad name/paths/x", InputError, "data store name"),
    ("azureml://foo/bar", InputError, "Valid inputs"),
    ("azureml:heart", InputError, "needs a version"),
    ("azureml:heart@", InputError, "needs a version"),
    ("azureml:heart:1:2", InputError, "needs a version"),
    ("azureml:-heart:1", InputError, "Valid inputs"),
    ("azureml:/heart data:1", InputError, "Valid inputs"),
    (WS_ID, InputError, "names a workspace"),
    (f"{WS_ID}/jobs/abc", InputError, "Valid inputs"),
    (f"{WS_ID}/data/heart", InputError, "Valid inputs"),
    (f"{WS_ID}/data/heart/versions/labels", InputError, "Valid inputs"),
    (f"{WS_ID}/data/heart/versions/1 2", InputError, "version or label"),
    (f"{WS_ID}/data/-heart/versions/1", InputError, "data asset name"),
    ("/subscriptions/s/resourceGroups/rg", InputError, "Valid inputs"),
    ("/subscriptions//resourceGroups/rg/workspaces/w/datastores/d/paths/p", InputError, "Valid inputs"),
    ("azureml://locations/westeurope/workspaces/ws", InputError, "names a workspace"),
    ("azureml://registries/reg/data/heart/versions/1", InputError, "Valid inputs"),
    (STORAGE_ID, InputError, "/paths/<container>/<path>"),
    # malformed storage URLs
    ("ftp://host/file", InputError, "ftp:// are not supported"),
    ("gs://bucket/key", InputError, "not supported"),
    ("https:///x", InputError, "no host"),
    ("https://[::1/x", InputError, "cannot be parsed"),
    ("https://acct.blob.core.windows.net/", InputError, "<container>"),
    ("wasbs://acct.blob.core.windows.net/p", InputError, "wasbs://<container>@<account>.blob"),
    ("wasbs://c@acct.dfs.core.windows.net/p", InputError, "wasbs://<container>@<account>.blob"),
    ("abfss://fs@acct.blob.core.windows.net/p", InputError, "abfss://<container>@<account>.dfs"),
    ("abfss://fs@example.com/p", InputError, "abfss://"),
    ("adl://localhost/p", InputError, "adl://<store>"),
    ("s3:///key", InputError, "no host"),
    ("s3://user@bucket/key", InputError, "s3://<bucket>/<key>"),
    # traversal
    ("azureml://datastores/ds/paths/../secrets", UnsafeInputError, "'..'"),
    ("azureml://datastores/ds/paths/a/../../b", UnsafeInputError, "'..'"),
    ("azureml://datastores/ds/paths/a\\..\\b", UnsafeInputError, "'..'"),
    (f"{WS_ID}/datastores/ds/paths/../x", UnsafeInputError, "'..'"),
    (f"{STORAGE_ID}/paths/c/../other", UnsafeInputError, "'..'"),
    ("https://acct.blob.core.windows.net/c/../other/x", UnsafeInputError, "'..'"),
    ("https://acct.blob.core.windows.net/c/%2e%2e/other", UnsafeInputError, "'..'"),
    ("https://acct.blob.core.windows.net/c/a%2F..%2F..%2Fb", UnsafeInputError, "'..'"),
    ("wasbs://c@acct.blob.core.windows.net/../x", UnsafeInputError, "'..'"),
    ("s3://bucket/a/../../b", UnsafeInputError, "'..'"),
    ("https://example.com/a/../../etc/passwd", UnsafeInputError, "'..'"),
]


@pytest.mark.parametrize(("text", "error", "fragment"), REFUSALS)
def test_refusals(text: str, error: type[InputError], fragment: str) -> None:
    with pytest.raises(error) as caught:
        parse_input_uri(text)
    assert type(caught.value) is error
    assert fragment.lower() in str(caught.value).lower()


def test_malformed_reference_messages_name_the_input_and_list_the_spellings() -> None:
    with pytest.raises(InputError) as caught:
        parse_input_uri("azureml://foo/bar")
    assert "'azureml://foo/bar'" in str(caught.value)
    assert INPUT_SPELLINGS in str(caught.value)


def test_long_inputs_are_shortened_in_messages() -> None:
    with pytest.raises(InputError) as caught:
        parse_input_uri("azureml://foo/" + "x" * 10_000)
    assert len(str(caught.value)) < 3_000


def test_non_string_input_is_an_input_error() -> None:
    with pytest.raises(InputError):
        parse_input_uri(None)  # type: ignore[arg-type]


def test_input_spellings_lists_every_family() -> None:
    fragments = ("azureml://datastores/", "azureml:<asset>:<version>", "@latest", ".blob.core.windows.net",
                 "abfss://", "wasbs://", "adl://", "s3://", "/versions/labels/", "MLTable", "FileDataset")
    for fragment in fragments:
        assert fragment in INPUT_SPELLINGS
    assert len(INPUT_SPELLINGS.splitlines()) > 5


# -- properties ----------------------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)
versions = st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True).filter(lambda v: v.lower() != "labels")
datastore_names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,20}", fullmatch=True).filter(
    lambda n: n.lower() not in ("datastores", "paths")
)
# one path segment: no '/', no surrounding spaces (inputs are stripped), never '.', '..' or MLTable
segments = st.from_regex(r"[\w.%()=+-]([\w .%()=+-]{0,10}[\w.%()=+-])?", fullmatch=True).filter(
    lambda s: s not in (".", "..") and s.lower() != "mltable"
)
paths = st.lists(segments, max_size=5)
workspaces = st.builds(
    WorkspaceRef,
    subscription_id=st.uuids().map(str),
    resource_group=names,
    workspace=names,
)


def _canonical(parts: list[str]) -> str:
    return "/".join(p for p in parts if p != ".")


def _messy(parts: list[str]) -> str:
    """The same path with extra ``/``, ``.`` segments and a trailing slash."""
    return "/" + "//./".join(parts) + "/"


@given(ds=datastore_names, parts=paths)
def test_every_spelling_of_a_datastore_path_parses_the_same(ds: str, parts: list[str]) -> None:
    expected = DatastorePath(ds, _canonical(parts))
    for prefix in ("azureml://", "azureml:/", "azureml:", "AZUREML://"):
        for path in ("/".join(parts), _messy(parts)):
            assert parse_input_uri(f"{prefix}datastores/{ds}/paths/{path.lstrip('/')}") == expected


@given(ws=workspaces, ds=datastore_names, parts=paths)
def test_arm_id_and_long_uri_of_a_datastore_path_agree(ws: WorkspaceRef, ds: str, parts: list[str]) -> None:
    arm = (f"/subscriptions/{ws.subscription_id}/resourceGroups/{ws.resource_group}"
           f"/providers/Microsoft.MachineLearningServices/workspaces/{ws.workspace}")
    long_uri = (f"azureml://subscriptions/{ws.subscription_id}/resourcegroups/{ws.resource_group}"
                f"/workspaces/{ws.workspace}")
    expected = DatastorePath(ds, _canonical(parts), ws)
    lower_keywords = arm.replace("resourceGroups", "resourcegroups").replace(
        "Microsoft.MachineLearningServices", "microsoft.machinelearningservices"
    )
    for prefix in (arm, lower_keywords, long_uri, "azureml:/" + arm):
        assert parse_input_uri(f"{prefix}/datastores/{ds}/paths/{_messy(parts)}") == expected


@given(name=names, version=versions, label=versions)
def test_short_asset_spellings_agree(name: str, version: str, label: str) -> None:
    for prefix in ("azureml:", "azureml:/", ""):
        assert parse_input_uri(f"{prefix}{name}:{version}") == AssetRef(name, version=version)
        assert parse_input_uri(f"{prefix}{name}@{label}") == AssetRef(name, label=label)


locations = st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True)
parsed_values = st.one_of(
    st.builds(DatastorePath, datastore_names, paths.map(_canonical), st.none() | workspaces),
    st.builds(lambda n, v, ws: AssetRef(n, version=v, workspace=ws), names, versions, st.none() | workspaces),
    st.builds(lambda n, b, ws: AssetRef(n, label=b, workspace=ws), names, versions, st.none() | workspaces),
    st.builds(lambda ds, p, loc, w: DatastorePath(ds, p, WorkspaceRef(workspace=w, location=loc)),
              datastore_names, paths.map(_canonical), locations, names),
    st.builds(lambda n, v, loc, w: AssetRef(n, version=v, workspace=WorkspaceRef(workspace=w, location=loc)),
              names, versions, locations, names),
)


@given(value=parsed_values)
def test_format_then_parse_round_trips(value: DatastorePath | AssetRef) -> None:
    text = format_input_uri(value)
    assert parse_input_uri(text) == value
    assert format_input_uri(parse_input_uri(text)) == text


@given(text=st.sampled_from(["./data", "/abs/x.csv", EXAMPLE_BLOB, "s3://b/k", f"{STORAGE_ID}/paths/c/p"]))
def test_format_of_urls_and_local_paths_is_the_original(text: str) -> None:
    assert format_input_uri(parse_input_uri(text)) == text


accounts = st.from_regex(r"[a-z0-9]{3,24}", fullmatch=True)
containers = st.from_regex(r"[a-z0-9][a-z0-9-]{2,20}", fullmatch=True)
suffixes = st.sampled_from(["core.windows.net", "core.chinacloudapi.cn", "core.usgovcloudapi.net"])


@given(account=accounts, container=containers, parts=paths, suffix=suffixes)
def test_blob_url_spellings_agree(account: str, container: str, parts: list[str], suffix: str) -> None:
    path = _canonical(parts)
    quoted = quote(path)
    https = parse_input_uri(f"https://{account}.blob.{suffix}/{container}/{quoted}")
    wasbs = parse_input_uri(f"wasbs://{container}@{account}.blob.{suffix}/{quoted}")
    for url in (https, wasbs):
        assert isinstance(url, StorageUrl)
        assert (url.kind, url.account, url.container, url.path, url.endpoint_suffix) == (
            "azure_blob", account, container, path, suffix
        )
    abfss = parse_input_uri(f"abfss://{container}@{account}.dfs.{suffix}/{quoted}")
    dfs = parse_input_uri(f"https://{account}.dfs.{suffix}/{container}/{quoted}")
    for url in (abfss, dfs):
        assert isinstance(url, StorageUrl)
        assert (url.kind, url.account, url.container, url.path, url.endpoint_suffix) == (
            "azure_data_lake_gen2", account, container, path, suffix
        )


@given(ds=datastore_names, before=paths, after=paths)
def test_dot_dot_anywhere_in_a_path_is_refused(ds: str, before: list[str], after: list[str]) -> None:
    path = "/".join([*before, "..", *after])
    for text in (f"azureml://datastores/{ds}/paths/{path}", f"https://acct.blob.core.windows.net/c/{path}",
                 f"s3://bucket/{path}", f"azureml:/{STORAGE_ID.lstrip('/')}/paths/c/{path}"):
        with pytest.raises(UnsafeInputError):
            parse_input_uri(text)


prefixes = st.sampled_from([
    "", "azureml:", "azureml:/", "azureml://", "azureml://datastores/", "azureml://datastores/d/paths/",
    "azureml://locations/", "azureml://subscriptions/", "/subscriptions/", WS_ID + "/", WS_ID + "/data/",
    WS_URI + "/datastores/", STORAGE_ID + "/", "https://", "http://", "https://a.blob.core.windows.net/",
    "wasbs://", "abfss://", "abfss://c@", "adl://", "s3://", "ftp://", "./", "name:", "name@",
])


@given(text=st.text())
@example("https://[::1")
@example("\x00")
@example("azureml:\n")
def test_arbitrary_text_parses_or_raises_input_error(text: str) -> None:
    try:
        parsed = parse_input_uri(text)
    except InputError:
        return
    assert isinstance(parsed, DatastorePath | AssetRef | StorageUrl | LocalPath)


@given(prefix=prefixes, rest=st.text())
def test_arbitrary_text_after_known_prefixes_parses_or_raises_input_error(prefix: str, rest: str) -> None:
    try:
        parsed = parse_input_uri(prefix + rest)
    except InputError:
        return
    assert isinstance(parsed, DatastorePath | AssetRef | StorageUrl | LocalPath)
    if isinstance(parsed, DatastorePath | StorageUrl):
        assert ".." not in parsed.path.split("/")
        assert not parsed.path.startswith("/") and not parsed.path.endswith("/")
