"""``python -m batchpoint.server``: run the server; writes ``<home>/server.json`` once listening.

``python -m batchpoint.server recover-owner [--home HOME] [--principal ID]``: give a principal Owner
again and a fresh key in ``<home>/owner.key``, from the server's host (see
:mod:`batchpoint.server.recovery`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from pathlib import Path

import uvicorn

from batchpoint.exceptions import BatchpointError
from batchpoint.server.app import create_app, preflight
from batchpoint.server.logs import configure_logging, redact_handlers
from batchpoint.settings import Settings


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["recover-owner"]:
        from batchpoint.server.recovery import main as recover_owner

        sys.exit(recover_owner(argv[1:]))
    parser = argparse.ArgumentParser(
        prog="python -m batchpoint.server", description="Run the Batchpoint server.",
        epilog="To get Owner access back from the server's host: python -m batchpoint.server recover-owner "
               "[--home HOME] [--principal ID] (see recover-owner --help).")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    parser.add_argument("--home", default=None, help="BATCHPOINT_HOME (state, data store, logs)")
    args = parser.parse_args(argv)
    if args.home:
        os.environ["BATCHPOINT_HOME"] = args.home
    settings = Settings()
    host = args.host or settings.server.host
    port = settings.server.port if args.port is None else args.port
    settings.home.mkdir(parents=True, exist_ok=True)
    try:
        preflight(settings)  # one line naming the fix (a missing `postgres` extra), not a traceback
    except BatchpointError as exc:
        sys.exit(f"ERROR: {exc}")
    configure_logging(logging.INFO)
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only for sockets whose
    # proto says TCP; with proto 0, small responses on kept-alive connections waited ~40 ms (Nagle).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    info = settings.home / "server.json"
    # open event streams last until their job ends: after 5 s of shutdown they are cancelled (clients reconnect)
    config = uvicorn.Config(create_app(settings), log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5)
    redact_handlers()  # after uvicorn.Config, which sets up uvicorn's own handlers
    server = uvicorn.Server(config)

    original_startup = server.startup

    async def startup(sockets=None):  # noqa: ANN001, ANN202
        await original_startup(sockets=sockets)
        _write_info(info, {"pid": os.getpid(), "url": f"http://{host}:{bound}", "home": str(settings.home)})

    if settings.tls.enabled:  # HTTPS on a second port, same app (docs/azure-client.md)
        from batchpoint.server.tls_listener import add_tls_listener

        startup = add_tls_listener(server, startup, settings, host, info)
    server.startup = startup  # type: ignore[method-assign]
    try:
        server.run(sockets=[sock])
    finally:
        try:
            if json.loads(info.read_text()).get("pid") == os.getpid():
                info.unlink()
        except (OSError, ValueError):
            pass


def _write_info(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
