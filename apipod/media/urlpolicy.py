"""Which URLs the server may reach for a client: media inputs (``media_url_allowlist``)
and webhooks (``webhook_allowlist``). Only globally routable addresses, unless a host name
or a network is allow-listed; :mod:`apipod.media.fetch` applies the policy to every address
a name resolves to, and to every redirect.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Any, TypeAlias

import httpx

from apipod.errors import ConfigError

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")


@dataclass(frozen=True)
class UrlPolicy:
    """What :func:`fetch_url` may download.

    ``allowlist`` holds host names (``"images.example.com"``, ``"*.example.com"`` for any
    subdomain) and networks (``"10.0.0.0/8"``, ``"::1/128"``, a bare address). Without an
    entry only globally routable addresses are fetched. ``timeout_s`` bounds the whole
    download, from name resolution to the last byte, across all redirects.
    """

    allowlist: tuple[str, ...] = ()
    timeout_s: float = 30.0
    max_bytes: int = 512_000_000
    max_redirects: int = 5
    #: How refusals name the URL, and the setting that allow-lists hosts.
    label: str = "media URL"
    allowlist_setting: str = "media_url_allowlist"

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ConfigError(f"media URL timeout must be positive, got {self.timeout_s}")
        if self.max_bytes <= 0:
            raise ConfigError(f"media URL size limit must be positive, got {self.max_bytes}")
        if self.max_redirects < 0:
            raise ConfigError(f"max_redirects must not be negative, got {self.max_redirects}")
        compile_allowlist(tuple(self.allowlist), self.allowlist_setting)

    @classmethod
    def from_config(cls, config: Any) -> UrlPolicy:
        """The policy set by ``media_url_allowlist``, ``media_url_timeout_s`` and
        ``media_url_max_mb`` of an :class:`apipod.config.Config`."""
        return cls(
            allowlist=tuple(config.media_url_allowlist),
            timeout_s=float(config.media_url_timeout_s),
            max_bytes=int(config.media_url_max_mb * 1_000_000),
        )


def is_public(ip: IPAddress) -> bool:
    """True for a globally routable unicast address, judging embedded IPv4 too."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return is_public(ip.ipv4_mapped)
    if (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip in _SHARED_ADDRESS_SPACE
    ):
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        # 6to4 and Teredo addresses carry an IPv4 address that the tunnel delivers to.
        tunnelled = [ip.sixtofour, *(ip.teredo or ())]
        return all(is_public(inner) for inner in tunnelled if inner is not None)
    return True


def in_networks(ip: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


def host_names(url: httpx.URL) -> set[str]:
    """The URL's host in ASCII (punycode) and Unicode spelling, lower case, no final dot."""
    return {url.raw_host.decode("ascii").lower().rstrip("."), url.host.lower().rstrip(".")}


def host_allowed(names: set[str], patterns: tuple[str, ...]) -> bool:
    for pattern in patterns:
        if pattern.startswith("*."):
            if any(name.endswith(pattern[1:]) for name in names):
                return True
        elif pattern in names:
            return True
    return False


@functools.lru_cache(maxsize=64)
def compile_allowlist(
    entries: tuple[str, ...], setting: str = "media_url_allowlist"
) -> tuple[tuple[IPNetwork, ...], tuple[str, ...]]:
    """Split allow-list entries into networks and host patterns; ConfigError on junk,
    naming ``setting``."""
    networks: list[IPNetwork] = []
    hosts: list[str] = []
    for raw in entries:
        entry = raw.strip().lower()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        name = entry[2:] if entry.startswith("*.") else entry
        if not name.strip(".") or any(c in name for c in "*/:@ \t[]"):
            raise ConfigError(
                f"{setting} entry {raw!r} is neither a host name "
                "('images.example.com', '*.example.com') nor a network ('10.0.0.0/8')"
            )
        hosts.append(entry.rstrip("."))
    return tuple(networks), tuple(hosts)
