"""``batchpoint azure-env``: the environment that points the real azure-ai-ml at Batchpoint.

``eval "$(batchpoint azure-env)"`` then runs unchanged Azure ML code (``MLClient(DefaultAzureCredential(),
"<any sub>", "<any rg>", "<any ws>")``) against this server. See docs/azure-client.md.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path
from urllib.parse import urlsplit

import click

from batchpoint.exceptions import ServerUnavailableError, ValidationError

METADATA = "/metadata/endpoints?api-version=2020-06-01"
TOKEN = "/azure/identity/token"
CLOUD = "Batchpoint"


def _home() -> Path:
    return Path(os.environ.get("BATCHPOINT_HOME") or Path.home() / ".batchpoint")


def _info(home: Path) -> dict:
    try:
        return json.loads((home / "server.json").read_text())
    except (OSError, ValueError):
        return {}


def local_tls_server(home: Path, timeout: float = 60.0) -> dict:
    """``server.json`` of a local server that serves HTTPS, starting one (or restarting a plain
    one: its running jobs resume) with ``tls.enabled``."""
    from batchpoint.sdk.local_server import ensure_local_server, stop_local_server

    os.environ["BATCHPOINT_TLS__ENABLED"] = "true"  # for a server started below (it inherits the environment)
    ensure_local_server(home, timeout)
    info = _info(home)
    if not info.get("azure_url"):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not info.get("azure_url"):  # a TLS server just starting
            time.sleep(0.1)
            info = _info(home)
    if not info.get("azure_url"):
        click.echo("batchpoint azure-env: restarting the local server with HTTPS (its running jobs resume)", err=True)
        stop_local_server(home)
        ensure_local_server(home, timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (info := _info(home)).get("azure_url"):
            time.sleep(0.1)
    if not info.get("azure_url"):
        raise ServerUnavailableError(f"the local server did not start its HTTPS listener (log: {home / 'server.log'})")
    return info


def exports(base_url: str, key: str, ca_bundle: str | None, blob_proxy: str | None) -> list[tuple[str, str]]:
    base = base_url.rstrip("/")
    out = [("ARM_CLOUD_METADATA_URL", base + METADATA), ("AZUREML_CURRENT_CLOUD", CLOUD),
           ("IDENTITY_ENDPOINT", base + TOKEN), ("IDENTITY_HEADER", key)]
    if ca_bundle:
        out.append(("REQUESTS_CA_BUNDLE", ca_bundle))
    if blob_proxy:  # the blob endpoint's host names reach the server through its CONNECT proxy
        host = urlsplit(base).hostname or ""
        out += [("HTTPS_PROXY", blob_proxy), ("NO_PROXY", ",".join(dict.fromkeys([host, "127.0.0.1", "localhost",
                                                                                  "::1"])))]
    return out


def _bundle_with(home: Path, ca_file: Path) -> str:
    """certifi's bundle + an operator's CA, in ``<home>/tls/ca-bundle-<name>.pem``."""
    import certifi

    if not ca_file.is_file():
        raise ValidationError(f"--ca-file '{ca_file}' does not exist")
    target = home / "tls" / f"ca-bundle-{ca_file.stem}.pem"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(Path(certifi.where()).read_text().rstrip("\n") + "\n" + ca_file.read_text())
    return str(target)


@click.command("azure-env")
@click.option("--server-url", envvar="BATCHPOINT_SERVER_URL", default=None,
              help="a shared server's HTTPS URL (default: the local server, started with HTTPS if needed)")
@click.option("--ca-file", type=click.Path(path_type=Path), default=None,
              help="the CA of a shared server's certificate, when it is not publicly trusted")
@click.option("--blob-proxy", default=None,
              help="a shared server's CONNECT proxy to its blob endpoint (http://<host>:<azure.blob_proxy_port>)")
def azure_env(server_url: str | None, ca_file: Path | None, blob_proxy: str | None) -> None:
    """Print export lines that point the real azure-ai-ml client at Batchpoint.

    Use: eval "$(batchpoint azure-env)"; then MLClient(DefaultAzureCredential(), <any sub>,
    <any rg>, <any ws>) talks to this server. Sets ARM_CLOUD_METADATA_URL, AZUREML_CURRENT_CLOUD,
    IDENTITY_ENDPOINT and IDENTITY_HEADER (the API key: BATCHPOINT_API_KEY, else the local owner
    key), REQUESTS_CA_BUNDLE (certifi's bundle + Batchpoint's CA), and HTTPS_PROXY/NO_PROXY: the
    server's CONNECT proxy reaches its blob endpoint (uploads from local folders, downloads); it
    refuses every other host, so the proxy is for the Azure ML scripts' shell.
    """
    home = _home()
    if server_url:
        if not server_url.startswith("https://"):
            raise ValidationError(f"--server-url '{server_url}' is not HTTPS; azure-ai-ml sends its token only over "
                                  "TLS: give the server's https:// URL")
        key = os.environ.get("BATCHPOINT_API_KEY", "").strip()
        if not key:
            raise ValidationError("a shared server needs your API key in BATCHPOINT_API_KEY "
                                  "(batchpoint principal key create prints one)")
        base, bundle, proxy = server_url, (_bundle_with(home, ca_file) if ca_file else None), blob_proxy
    else:
        info = local_tls_server(home)
        key = os.environ.get("BATCHPOINT_API_KEY", "").strip() or (home / "owner.key").read_text().strip()
        base, bundle = info["azure_url"], (_bundle_with(home, ca_file) if ca_file else info.get("ca_bundle"))
        proxy = blob_proxy or info.get("blob_proxy")
    for name, value in exports(base, key, bundle, proxy):
        click.echo(f"export {name}={shlex.quote(value)}")


COMMANDS = [azure_env]
