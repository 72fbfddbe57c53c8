"""Guard against server-side request forgery (SSRF) through user-given hosts and URLs.

:func:`check_host_allowed` raises :class:`UnsafeInputError` when a host is, or resolves to, an
address Batchpoint should not contact on a user's behalf. Two classes of address:

* **refused unless allowed** — loopback (``127.0.0.0/8``, ``::1``, ``localhost``,
  ``*.localhost``), link-local (``169.254.0.0/16``, ``fe80::/10``), private (``10/8``,
  ``172.16/12``, ``192.168/16``, ``fc00::/7``), shared address space (``100.64/10``) and any other
  non-public special-purpose range. A data store that really lives there sets
  ``allow_private_network: true``, which the caller passes as ``allow_private=True``.
* **always refused** — unspecified (``0.0.0.0/8``, ``::``; connecting to it reaches the server
  itself), multicast, reserved (``240/4``, broadcast), and cloud instance metadata services
  (``169.254.169.254``, ``169.254.170.2``, ``169.254.169.253``, ``fd00:ec2::254``,
  ``100.100.100.200``, ``metadata.google.internal``), even with ``allow_private``.

Parsing rules (:func:`normalize_host`, :func:`parse_ip_literal`): surrounding whitespace is
ignored; Unicode is NFKC-normalised (fullwidth digits, ideographic dots); ``[v6]`` and
``[v6]:port`` brackets, a ``:port`` suffix (1-65535), one trailing dot and letter case are
removed; IPv4 may be spelled as ``inet_aton`` accepts it (``2130706433``, ``0x7f.1``,
``0177.0.0.1``, ``127.1``); IPv6 zone ids are accepted; an IPv4 address embedded in
IPv6 (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible, 6to4, NAT64 ``64:ff9b::/96``, Teredo) is
judged as that IPv4 address. Empty labels, ``%`` outside an IPv6 zone id, and any character that
is not a letter, digit, ``-``, ``_`` or non-ASCII letter are refused.

Names are resolved with :func:`socket.getaddrinfo` and *every* address must be allowed. A name
that does not resolve now is let through: the storage call fails later with its own clear error
and there is no address to protect. Limitation: the HTTP client resolves again, so a DNS answer
that changes in between (DNS rebinding) is not caught here.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from collections.abc import Iterable
from urllib.parse import urlsplit

from batchpoint.exceptions import UnsafeInputError

__all__ = [
    "IPAddress",
    "METADATA_ADDRESSES",
    "check_host_allowed",
    "check_url_allowed",
    "classify_address",
    "normalize_host",
    "parse_ip_literal",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "169.254.169.253", "fd00:ec2::254",
              "100.100.100.200")
)
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog"})
_GCE_METADATA = ipaddress.IPv4Address("169.254.169.254")
_LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
_NAME_CHARS = re.compile(r"[a-z0-9_\-\u0080-\U0010ffff]+(\.[a-z0-9_\-\u0080-\U0010ffff]+)*")
_IPV6_CHARS = re.compile(r"[0-9a-f:.]+(%[A-Za-z0-9_.\-]+)?")
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_PORT = re.compile(r"[0-9]{1,5}")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPAT = ipaddress.ip_network("::/96")
_HINT = (
    "Batchpoint refuses loopback, link-local and private network addresses to prevent "
    "server-side request forgery; if the storage really is on a private network: for a data store, set "
    "`allow_private_network: true` on it; for a storage URL given as an input, the server's operator lists "
    "the host in BATCHPOINT_STORAGE__ALLOW_PRIVATE_HOSTS"
)


_NEVER = (
    "Batchpoint never contacts such addresses, even for data stores that allow private networks"
)


def _bad(host: str, why: str) -> UnsafeInputError:
    return UnsafeInputError(f"invalid host '{host[:200]}': {why}", details={"host": host[:200]})


def _strip_port(host: str, text: str) -> str:
    """Remove ``[...]`` and a ``:port`` suffix."""
    if text.startswith("["):
        inner, closed, rest = text[1:].partition("]")
        if not closed or ":" not in inner:
            raise _bad(host, "brackets must enclose an IPv6 address, as in [::1]:8080")
        port = rest[1:] if rest.startswith(":") else None
        if rest and (port is None or not _PORT.fullmatch(port) or not 0 < int(port) < 65536):
            raise _bad(host, "after ']' only ':<port>' (1-65535) may follow")
        return inner
    if text.count(":") == 1:
        text, _, port = text.partition(":")
        if not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
            raise _bad(host, "the port must be a number from 1 to 65535")
    return text


def normalize_host(host: str) -> str:
    """The bare lowercased host (see the parsing rules); :class:`UnsafeInputError` if invalid."""
    if not isinstance(host, str) or not host.strip():
        raise UnsafeInputError("a host name is required", details={"host": str(host)[:200]})
    text = unicodedata.normalize("NFKC", host.strip()).translate(_DOTS)
    text = _strip_port(host, text)
    if ":" in text:
        if not _IPV6_CHARS.fullmatch(text.lower()) or parse_ip_literal(text.lower()) is None:
            raise _bad(host, "not a valid IPv6 address")
        return text.lower()
    text = text.lower()
    text = text[:-1] if text.endswith(".") else text
    if not _NAME_CHARS.fullmatch(text):
        raise _bad(host, "use a DNS name or an IP address (letters, digits, '-', '_', dots "
                   "between non-empty labels)")
    return text


def _inet_aton_part(part: str) -> int | None:
    if re.fullmatch(r"0[xX][0-9a-fA-F]*", part):
        return int(part[2:] or "0", 16)
    if re.fullmatch(r"0[0-7]+", part):
        return int(part, 8)
    if re.fullmatch(r"[0-9]+", part):
        return int(part)
    return None


def _parse_ipv4_loose(text: str) -> ipaddress.IPv4Address | None:
    """IPv4 in any spelling ``inet_aton`` accepts: 1-4 parts, decimal/octal/hex, last part fills."""
    parts = text.split(".")
    parsed = [_inet_aton_part(p) for p in parts]
    values = [v for v in parsed if v is not None]
    if len(parts) > 4 or len(values) != len(parts):
        return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        return None
    number = last
    for index, value in enumerate(head):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a normalised host spells, or ``None`` when it is a name to resolve."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return None
    return _parse_ipv4_loose(host)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses inside an IPv6 one (mapped, 6to4, Teredo server+client, NAT64, compat)."""
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    if (ip in _NAT64 or ip in _COMPAT) and int(ip) > 1:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return []


def classify_address(ip: IPAddress) -> tuple[str, bool] | None:
    """``(reason, always_refused)`` for an address Batchpoint should not contact, else ``None``."""
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ipaddress.IPv6Address(int(ip))  # drop any zone id
        inner = _embedded_ipv4(ip)
        if inner:
            for v4 in inner:
                found = classify_address(v4)
                if found is not None:
                    return f"{found[0]} ({v4} inside IPv6)", found[1]
            return None
    if ip in METADATA_ADDRESSES:
        return "a cloud instance metadata service address", True
    if ip.is_unspecified or ip in _THIS_NETWORK:
        return "an unspecified ('this host') address", True
    if ip.is_loopback:
        return "a loopback address", False
    if ip.is_multicast:
        return "a multicast address", True
    if ip.is_reserved:
        return "a reserved address", True
    for test, reason in ((ip.is_link_local, "a link-local"), (ip.is_private, "a private network"),
                         (ip in _SHARED, "a shared (CGNAT)")):
        if test:
            return f"{reason} address", False
    if not ip.is_global:
        return "a special-purpose, non-public address", False
    return None


def _refuse(host: str, ip: IPAddress, resolved: bool, allow_private: bool) -> None:
    found = classify_address(ip)
    if found is None or (allow_private and not found[1]):
        return
    reason, always = found
    shown = f"'{host[:200]}'" + (f" (resolves to {ip})" if resolved else "")
    tail = _NEVER if always else _HINT
    raise UnsafeInputError(
        f"host {shown} is not allowed: {ip} is {reason}. {tail}.",
        details={"host": host[:200], "address": str(ip), "reason": reason},
    )


def _resolve(name: str) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    found: list[IPAddress] = []
    for info in infos:
        try:
            found.append(ipaddress.ip_address(str(info[4][0]).partition("%")[0]))
        except ValueError:  # not an IP family we know (never for AF_INET/AF_INET6)
            continue
    return found


def check_host_allowed(host: str, *, allow_private: bool = False, resolve: bool = True) -> None:
    """Raise :class:`UnsafeInputError` if ``host`` is or resolves to a refused address.

    ``allow_private`` lifts the "refused unless allowed" class; ``resolve=False`` judges only
    literal addresses and well-known names (no DNS).
    """
    name = normalize_host(host)
    literal = parse_ip_literal(name)
    if literal is not None:
        _refuse(host, literal, False, allow_private)
        return
    if name in _METADATA_NAMES:
        _refuse(host, _GCE_METADATA, True, allow_private)
    if name == "localhost" or name.endswith(".localhost"):
        _refuse(host, _LOOPBACK, True, allow_private)
    if resolve:
        for address in _resolve(name):
            _refuse(host, address, True, allow_private)


def check_url_allowed(
    url: str, *, allow_private: bool = False, resolve: bool = True,
    schemes: Iterable[str] | None = None,
) -> None:
    """:func:`check_host_allowed` on the host of ``url``; also refuses ``\\``, whitespace,
    control characters, a missing host, and schemes outside ``schemes`` (``None``: any)."""
    if not isinstance(url, str) or re.search(r"[\\\s\x00-\x1f\x7f]", url):
        raise UnsafeInputError(
            "the URL contains a backslash, whitespace or a control character",
            details={"url": str(url)[:200]},
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        raise UnsafeInputError(
            f"the URL '{url[:200]}' cannot be parsed", details={"url": url[:200]}
        ) from None
    allowed = {s.lower() for s in schemes} if schemes is not None else None
    if allowed is not None and parts.scheme.lower() not in allowed:
        raise UnsafeInputError(
            f"URL scheme '{parts.scheme}' is not allowed here; "
            f"use one of: {', '.join(sorted(allowed))}",
            details={"scheme": parts.scheme},
        )
    host = parts.netloc.rpartition("@")[2]
    if not host:
        raise UnsafeInputError(f"the URL '{url[:200]}' has no host", details={"url": url[:200]})
    check_host_allowed(host, allow_private=allow_private, resolve=resolve)
