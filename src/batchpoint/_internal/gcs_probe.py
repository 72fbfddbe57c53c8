"""Is a Ray head's GCS answering at ``host:port``? A quick check that needs no Ray.

Ray's GCS is a gRPC server, so it speaks HTTP/2: :func:`probe_gcs` opens a TCP connection (with a
short timeout), sends the HTTP/2 client preface and an empty SETTINGS frame, and expects the
server's SETTINGS frame back. A closed port, a host that does not resolve or answer, or a server
that speaks something else (the dashboard's HTTP/1.1 on 8265, Redis…) is told apart in seconds,
where ``ray.init`` would keep retrying. It does not authenticate (token auth is checked by Ray when
a job connects) and cannot tell a GCS from another gRPC server.
"""

from __future__ import annotations

import socket
import time

__all__ = ["GCS_CHECKS", "parse_address", "probe_gcs"]

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS
_SETTINGS = 0x04

#: what an operator should check when a Ray address does not answer (shared by every message)
GCS_CHECKS = ("check the address (the head's GCS address, host:port, as `ray start --head` prints it: "
              "port 6379 by default, not the dashboard's 8265), that the head is running, and that this "
              "server can reach that host and port (firewall, private network)")


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) → (host, port); ValueError naming the rule."""
    text = address.strip()
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"'{address}' is not a Ray head address: give host:port (e.g. 10.0.0.5:6379)")
    return host, int(port)


def probe_gcs(address: str, timeout_s: float) -> str | None:
    """None when ``address`` answers as a gRPC (HTTP/2) server within ``timeout_s`` seconds; else
    why not, in words (the caller names the address and what to check)."""
    try:
        host, port = parse_address(address)
    except ValueError as exc:
        return str(exc)
    deadline = time.monotonic() + max(0.1, timeout_s)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"the host '{host}' does not resolve ({exc.strerror or exc})"
    last = "no address"
    for family, kind, proto, _, where in infos:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        connected = False
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(left)
                sock.connect(where)
                connected = True
                sock.sendall(_PREFACE)
                head = b""
                while len(head) < 9:
                    sock.settimeout(max(0.05, deadline - time.monotonic()))
                    chunk = sock.recv(9 - len(head))
                    if not chunk:
                        break
                    head += chunk
        except TimeoutError:
            if connected:
                return (f"port {port} of {host} accepts connections but gave no HTTP/2 answer within "
                        f"{timeout_s:g} s: not a Ray GCS (a gRPC server)")
            last = f"no answer within {timeout_s:g} s (a wrong host, or a firewall dropping the connection)"
            continue
        except ConnectionRefusedError:
            last = f"the connection was refused: nothing listens on port {port} of {host}"
            continue
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc.strerror or exc}"
            continue
        if len(head) == 9 and head[3] == _SETTINGS:
            return None
        return ("something answers there, but not as a Ray GCS (a gRPC server); "
                + ("it closed the connection" if len(head) < 9 else f"it answered {head[:9]!r}"))
    return last
