"""The CONNECT proxy that makes ``<account>.blob.<azure.storage_suffix>`` reachable without DNS,
``/etc/hosts`` or root: ``batchpoint azure-env`` sets ``HTTPS_PROXY`` to it (and ``NO_PROXY`` to the
server's own host), so the client's storage calls arrive here as ``CONNECT <host>:443``.

It tunnels only to this server's own HTTPS listener, and only for blob host names of the configured
suffix; any other ``CONNECT`` (or a plain proxy request) is refused with 403 naming what it serves —
it is not a way out of the machine. TLS is end to end: the tunnel carries the client's TLS session
with the server (whose certificate names ``*.blob.<suffix>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger("batchpoint.server")
HEAD_LIMIT = 16 * 1024


def _refusal(text: str) -> bytes:
    body = text.encode()
    return (b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def start_blob_proxy(host: str, port: int, suffix: str, tls_host: str, tls_port: int) -> asyncio.Server:
    wanted = ".blob." + suffix.lower()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            writer.close()
            return
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        target = parts[1] if len(parts) == 3 else ""
        name = target.rsplit(":", 1)[0].lower()
        if parts[0] != "CONNECT" or not name.endswith(wanted) or name == wanted[1:]:
            writer.write(_refusal(f"this proxy only reaches Batchpoint's blob endpoint (<account>{wanted}); "
                                  f"'{parts[0]} {target}' is not for it. Add the host to NO_PROXY.\n"))
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(tls_host, tls_port)
        except OSError as exc:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            log.warning("blob proxy: the HTTPS listener %s:%s is not reachable: %s", tls_host, tls_port, exc)
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return await asyncio.start_server(handle, host, port, limit=HEAD_LIMIT)
