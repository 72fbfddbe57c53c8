"""The HTTPS listener beside the plain one: same app, same lifespan, a second port.

``python -m batchpoint.server`` with ``tls.enabled`` binds ``tls.port`` too and serves the app there
with the certificate of :func:`batchpoint.server.tls.prepare`. ``server.json`` then also holds
``azure_url`` (the HTTPS base URL), ``blob_proxy`` (the CONNECT proxy to the blob endpoint,
``azure_api/blob_proxy.py``) and ``ca_bundle`` (the file for ``REQUESTS_CA_BUNDLE``, when the
server made its own CA).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from batchpoint.server.azure_api.blob_proxy import start_blob_proxy
from batchpoint.server.tls import prepare, server_context
from batchpoint.settings import Settings


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def add_tls_listener(server: Any, startup: Callable[..., Awaitable[None]], settings: Settings, host: str,
                     info: Path) -> Callable[..., Awaitable[None]]:
    """Wrap uvicorn's ``startup``: after it (lifespan done, plain listener up, server.json written),
    serve the same app over TLS on ``tls.port`` and add ``azure_url``/``ca_bundle`` to server.json."""
    files = prepare(settings)  # before binding: a bad certificate setting stops the start
    context = server_context(files)
    sock = bind(host, settings.tls.port)
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host

    async def tls_startup(sockets: Any = None) -> None:
        await startup(sockets=sockets)
        config = server.config

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(config=config, server_state=server.server_state,
                                              app_state=server.lifespan.state)

        listener = await asyncio.get_running_loop().create_server(protocol, sock=sock, ssl=context,
                                                                  backlog=config.backlog)
        server.servers.append(listener)  # closed with the others on shutdown
        upstream = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
        proxy = await start_blob_proxy(host, settings.azure.blob_proxy_port, settings.azure.storage_suffix,
                                       upstream, port)
        server.servers.append(proxy)
        data = json.loads(info.read_text())
        data["azure_url"] = f"https://{shown}:{port}"
        data["blob_proxy"] = f"http://{shown}:{proxy.sockets[0].getsockname()[1]}"
        if files.bundle_file:
            data["ca_bundle"] = str(files.bundle_file)
        tmp = info.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.chmod(tmp, 0o600)
        os.replace(tmp, info)

    return tls_startup
