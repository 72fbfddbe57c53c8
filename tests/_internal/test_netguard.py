"""SSRF guard: host parsing (incl. exotic IPv4 spellings), classification, resolution."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchpoint._internal import netguard
from batchpoint._internal.netguard import (
    check_host_allowed,
    check_url_allowed,
    classify_address,
    normalize_host,
    parse_ip_literal,
)
from batchpoint.exceptions import UnsafeInputError

REFUSED_UNLESS_ALLOWED = [
    "127.0.0.1", "127.0.0.1:443", "2130706433", "0x7f000001", "0x7f.1", "0177.0.0.1", "127.1",
    "0x7F.0.0.1", "[::1]", "[::1]:8080", "::1", "::ffff:127.0.0.1", "[::ffff:7f00:1]:80",
    "localhost", "LOCALHOST.", "api.localhost", "localhost:10000", "10.0.0.1", "172.16.5.4",
    "172.31.255.255", "192.168.1.1", "fc00::1", "fd12:3456::1", "169.254.1.1", "fe80::1",
    "fe80::1%eth0", "100.64.0.1", "１２７.０.０.１", "127。0。0。1", "2002:7f00:1::",
    "64:ff9b::a00:1", "::127.0.0.1", "198.18.0.1",
]
ALWAYS_REFUSED = [
    "169.254.169.254", "169.254.169.254:80", "0xa9fea9fe", "2852039166", "[fd00:ec2::254]",
    "::ffff:169.254.169.254", "100.100.100.200", "169.254.170.2", "metadata.google.internal",
    "0.0.0.0", "0", "0.1.2.3", "[::]", "224.0.0.1", "ff02::1", "255.255.255.255", "240.0.0.1",
]
ALLOWED = [
    "8.8.8.8", "1.1.1.1:443", "[2606:4700:4700::1111]", "2606:4700:4700::1111", "::ffff:8.8.8.8",
    "example.com", "acct.blob.core.windows.net", "s3.us-east-1.amazonaws.com:443", "EXAMPLE.COM.",
    "xn--bcher-kva.example", "bücher.example", "my_host.internal-corp", "172.32.0.1",
]
INVALID = [
    "", " ", "a b", "host:99999", "host:0", "host:", "host:80:80x", "[::1", "[127.0.0.1]",
    "[::1]x", "a..b", ".a", "evil.com/x", "a@b", "127.0.0.%31", "zz::1", "a\\b", "a\nb", "[::1]:",
    "1.2.3.4:-1", "ho%st",
]


@pytest.mark.parametrize("host", REFUSED_UNLESS_ALLOWED)
def test_refused_unless_allowed(host: str) -> None:
    with pytest.raises(UnsafeInputError, match="allow_private_network: true") as info:
        check_host_allowed(host, resolve=False)
    assert info.value.code == "unsafe_input" and info.value.status_code == 400
    assert info.value.details["host"] == host
    check_host_allowed(host, allow_private=True, resolve=False)


@pytest.mark.parametrize("host", ALWAYS_REFUSED)
def test_always_refused(host: str) -> None:
    for allow in (False, True):
        with pytest.raises(UnsafeInputError, match="never contacts") as info:
            check_host_allowed(host, allow_private=allow, resolve=False)
        assert f"'{host}'" in info.value.message


@pytest.mark.parametrize("host", ALLOWED)
def test_allowed(host: str) -> None:
    check_host_allowed(host, resolve=False)


@pytest.mark.parametrize("host", INVALID)
def test_invalid_hosts(host: str) -> None:
    with pytest.raises(UnsafeInputError):
        check_host_allowed(host, allow_private=True, resolve=False)


def test_message_names_host_address_and_reason() -> None:
    with pytest.raises(UnsafeInputError) as info:
        check_host_allowed("0x7f.1:8080", resolve=False)
    message = info.value.message
    assert "'0x7f.1:8080'" in message and "127.0.0.1 is a loopback address" in message
    assert "server-side request forgery" in message
    assert info.value.details == {"host": "0x7f.1:8080", "address": "127.0.0.1",
                                  "reason": "a loopback address"}
    with pytest.raises(UnsafeInputError, match="a cloud instance metadata service address"):
        check_host_allowed("169.254.169.254", resolve=False)
    with pytest.raises(UnsafeInputError, match=r"127\.0\.0\.1 inside IPv6"):
        check_host_allowed("::ffff:127.0.0.1", resolve=False)


def _fake_getaddrinfo(answers: dict[str, list[str]]) -> Any:
    def fake(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, 0, 0, 0) if ":" in a else (a, 0)) for a in answers[host]]
    return fake


def test_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netguard.socket, "getaddrinfo", _fake_getaddrinfo({
        "internal.example": ["10.1.2.3"],
        "mixed.example": ["93.184.216.34", "fe80::1%eth0"],
        "public.example": ["93.184.216.34", "2606:2800:220:1::1"],
        "rebind.example": ["169.254.169.254"],
    }))
    with pytest.raises(UnsafeInputError, match=r"'internal.example' \(resolves to 10.1.2.3\)"):
        check_host_allowed("internal.example")
    check_host_allowed("internal.example", allow_private=True)
    check_host_allowed("internal.example", resolve=False)
    with pytest.raises(UnsafeInputError, match="fe80::1 is a link-local address"):
        check_host_allowed("mixed.example:443")
    with pytest.raises(UnsafeInputError, match="never contacts"):
        check_host_allowed("rebind.example", allow_private=True)
    check_host_allowed("public.example")
    check_host_allowed("does-not-resolve.example")  # allowed: fails later at the storage call


def test_resolution_unicode_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise UnicodeError("label too long")
    monkeypatch.setattr(netguard.socket, "getaddrinfo", boom)
    check_host_allowed("x" * 70 + ".example")


def test_real_resolution_of_localhost() -> None:
    with pytest.raises(UnsafeInputError):
        check_host_allowed("localhost")


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/", "https://user@169.254.169.254/latest/meta-data",
     "http://[::1]:80/x", "http://0x7f.1/", "https://evil@10.0.0.1:443/", "http://localhost:10000/"],
)
def test_check_url_refused(url: str) -> None:
    with pytest.raises(UnsafeInputError):
        check_url_allowed(url, resolve=False)


@pytest.mark.parametrize(
    "url", ["http://a.example\\@127.0.0.1/", "http://a b/", "http://x/\n", "file:///etc/passwd",
            "http://[::1/", "http://host:notaport/", "relative/path"],
)
def test_check_url_malformed(url: str) -> None:
    with pytest.raises(UnsafeInputError):
        check_url_allowed(url, allow_private=True, resolve=False)


def test_check_url_allowed_and_schemes() -> None:
    check_url_allowed("abfss://container@acct.dfs.core.windows.net/path", resolve=False)
    check_url_allowed("https://acct.blob.core.windows.net/c/x.csv?sig=abc", resolve=False,
                      schemes=["https"])
    check_url_allowed("http://127.0.0.1:10000/devstoreaccount1", allow_private=True, resolve=False)
    with pytest.raises(UnsafeInputError, match="scheme 'gopher' is not allowed.*http, https"):
        check_url_allowed("gopher://example.com/", resolve=False, schemes=["http", "HTTPS"])


# ---------------------------------------------------------------- property tests

ipv4s = st.integers(min_value=0, max_value=2**32 - 1)


def _spellings(n: int) -> list[str]:
    b = n.to_bytes(4, "big")
    return [
        str(n), hex(n), "0" + oct(n)[2:] if n else "0",
        ".".join(str(x) for x in b),
        ".".join("0" + oct(x)[2:] if x else "0" for x in b),
        ".".join(hex(x) for x in b),
        f"{b[0]}.{b[1]}.{int.from_bytes(b[2:], 'big')}",
        f"{b[0]}.{hex(int.from_bytes(b[1:], 'big'))}",
    ]


@given(ipv4s)
def test_every_inet_aton_spelling_parses_to_the_same_address(n: int) -> None:
    expected = ipaddress.IPv4Address(n)
    for spelling in _spellings(n):
        assert parse_ip_literal(normalize_host(spelling)) == expected, spelling


@given(ipv4s, st.integers(min_value=1, max_value=65535))
def test_verdict_is_the_same_for_every_spelling(n: int, port: int) -> None:
    bad = classify_address(ipaddress.IPv4Address(n)) is not None
    for spelling in _spellings(n) + [f"{ipaddress.IPv4Address(n)}:{port}",
                                     f"[::ffff:{ipaddress.IPv4Address(n)}]:{port}"]:
        try:
            check_host_allowed(spelling, resolve=False)
            refused = False
        except UnsafeInputError:
            refused = True
        assert refused is bad, spelling


@given(st.ip_addresses(v=6), st.integers(min_value=1, max_value=65535))
def test_ipv6_brackets_and_ports(ip: ipaddress.IPv6Address, port: int) -> None:
    assert normalize_host(f"[{ip}]:{port}") == str(ip)
    assert normalize_host(f"[{ip.exploded.upper()}]") == ip.exploded.lower()
    assert parse_ip_literal(normalize_host(f"[{ip}]:{port}")) == ip


@given(st.ip_addresses(v=4))
def test_ipv4_mapped_is_judged_as_ipv4(ip: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    plain, embedded = classify_address(ip), classify_address(mapped)
    assert (plain is None) == (embedded is None)
    if plain is not None and embedded is not None:
        assert embedded[1] == plain[1] and embedded[0].startswith(plain[0])


@given(st.text(max_size=80))
def test_arbitrary_text_never_crashes(text: str) -> None:
    try:
        host = normalize_host(text)
    except UnsafeInputError:
        return
    assert host == host.lower() and host
    try:
        check_host_allowed(text, allow_private=True, resolve=False)
    except UnsafeInputError:
        pass


@given(st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,20}){1,3}", fullmatch=True))
def test_dns_names_are_not_ip_literals(name: str) -> None:
    assert parse_ip_literal(normalize_host(name)) is None
