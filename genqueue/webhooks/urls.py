"""Which webhook URLs genqueue will call (pure: the resolver is passed in), and how a URL is shown.

GENQUEUE_WEBHOOK_ALLOW, comma-separated entries:
- unset or empty: any `https` URL whose host resolves only to public addresses;
- `host` (exact, case-insensitive), `*.example.com` (any subdomain), an IP address or a CIDR (10.0.0.0/8):
  those hosts are allowed, with `http` too and whatever addresses they resolve to (loopback, private,
  link-local) — an explicit exception;
- once anything is listed, only the listed hosts are allowed, unless the list also holds `*`, which keeps
  "any public https host" (e.g. `*,hooks.internal` = public https anywhere plus one internal host).

The host is resolved at enqueue and again right before each delivery (a name that now points elsewhere —
DNS rebinding — is refused then). Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InvalidInput
from ..support.secrets import mask_url

MAX_URL_LEN = 2000
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], list[str]]


@dataclass(frozen=True)
class AllowList:
    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()  # "*.example.com" → ".example.com"
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    public: bool = True  # any public https host (unset, or "*" listed)

    @classmethod
    def parse(cls, raw: str | None) -> AllowList:
        entries = [e.strip().lower() for e in (raw or "").split(",") if e.strip()]
        if not entries:
            return cls()
        hosts, suffixes, networks = set(), [], []
        for entry in entries:
            if entry == "*":
                continue
            if entry.startswith("*."):
                suffixes.append(entry[1:])
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if not entry.replace("-", "").replace(".", "").replace("_", "").isalnum():
                raise InvalidInput(f"GENQUEUE_WEBHOOK_ALLOW: {entry!r} is not a host, *.domain, address or CIDR")
            hosts.add(entry.rstrip("."))
        return cls(frozenset(hosts), tuple(suffixes), tuple(networks), public="*" in entries)

    def lists(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        if host in self.hosts or any(host.endswith(s) for s in self.suffixes):
            return True
        address = _address(host)
        return address is not None and any(address in n for n in self.networks)


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def system_resolver(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidInput(f"webhook host {host!r} does not resolve: {exc}") from None
    return sorted({str(info[4][0]) for info in infos})


def parse_url(url: object) -> urllib.parse.SplitResult:
    """The URL's syntax only (no allow-list, no DNS): what a task declaration checks at import."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("webhook must be a URL")
    if len(url) > MAX_URL_LEN or any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidInput(f"webhook URL is invalid (spaces, control characters, or over {MAX_URL_LEN} characters)")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"webhook URL must be http(s)://host/..., not {mask_url(url)!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise InvalidInput(f"webhook URL has a bad port: {mask_url(url)!r}") from None
    return parts


def check_url(url: object, allow: AllowList, resolve: Resolver = system_resolver) -> str:
    """The URL if genqueue may call it; InvalidInput (one line, the URL masked) otherwise."""
    return checked(url, allow, resolve)[0]


def checked(url: object, allow: AllowList, resolve: Resolver = system_resolver) -> tuple[str, list[str]]:
    """(the URL, the public addresses its host resolved to — empty for a listed host or an IP literal)."""
    parts = parse_url(url)
    assert isinstance(url, str)
    host = parts.hostname or ""
    shown = mask_url(url)
    if allow.lists(host):
        return url, []
    if not allow.public:
        raise InvalidInput(f"webhook host {host!r} is not in GENQUEUE_WEBHOOK_ALLOW ({shown})")
    if parts.scheme != "https":
        raise InvalidInput(f"webhook URL must use https (or list its host in GENQUEUE_WEBHOOK_ALLOW): {shown}")
    literal = _address(host)
    resolved = [] if literal is not None else resolve(host)
    addresses = [literal] if literal is not None else [_address(a) for a in resolved]
    refused = [str(a) for a in addresses if a is None or not is_public(a)]
    if refused or not addresses:
        raise InvalidInput(
            f"webhook host {host!r} resolves to a loopback, private or link-local address ({', '.join(refused)}); "
            f"list it in GENQUEUE_WEBHOOK_ALLOW to allow it"
        )
    return url, [str(a) for a in addresses if a is not None] if literal is None else []


def pinned(url: str, address: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """The request that reaches exactly `address` (checked just now) for `url`: the URL with the address as
    its host, the Host header, and the TLS server name (httpx's `sni_hostname` extension), so the certificate
    is still checked against the name — a second lookup by the HTTP client cannot be re-pointed (DNS
    rebinding) between the check and the connection."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    target = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return target, {"host": host_header}, extensions
