"""The URL policy: which hosts and addresses the server may reach for a client."""

from __future__ import annotations

import ipaddress

import pytest

from apipod.config import Config
from apipod.errors import ConfigError
from apipod.media import urlpolicy
from apipod.media.urlpolicy import UrlPolicy


def test_policy_from_config() -> None:
    config = Config(
        media_url_allowlist=("10.0.0.0/8", "*.example.com"),
        media_url_timeout_s=7.5,
        media_url_max_mb=1.5,
    )
    assert UrlPolicy.from_config(config) == UrlPolicy(
        allowlist=("10.0.0.0/8", "*.example.com"), timeout_s=7.5, max_bytes=1_500_000
    )


@pytest.mark.parametrize("entry", ["http://example.com", "example.com:80", "*", "a*.example.com"])
def test_bad_allowlist_entry_is_a_config_error(entry: str) -> None:
    with pytest.raises(ConfigError, match="media_url_allowlist"):
        UrlPolicy(allowlist=(entry,))


@pytest.mark.parametrize(
    ("host", "allowed"),
    [("img.example.com", True), ("a.b.example.com", True), ("example.com", False)]
    + [("badexample.com", False), ("images.other.org", True), ("x.images.other.org", False)],
)
def test_host_patterns(host: str, allowed: bool) -> None:
    _, patterns = urlpolicy.compile_allowlist(("*.example.com", "Images.Other.ORG."))
    assert urlpolicy.host_allowed({host}, patterns) is allowed


@pytest.mark.parametrize(
    ("address", "public"),
    [("8.8.8.8", True), ("2606:4700:4700::1111", True), ("::ffff:8.8.8.8", True)]
    + [("127.0.0.1", False), ("::ffff:127.0.0.1", False), ("::127.0.0.1", False)]
    + [("::ffff:169.254.169.254", False), ("2002:7f00:1::1", False), ("2002:a00:1::1", False)]
    + [("100.64.0.1", False), ("0.0.0.0", False), ("::", False), ("255.255.255.255", False)]
    + [("233.1.1.1", False), ("ff02::1", False), ("240.0.0.1", False), ("fd00::1", False)],
)
def test_address_classification(address: str, public: bool) -> None:
    assert urlpolicy.is_public(ipaddress.ip_address(address)) is public


def test_a_webhook_policy_names_its_own_setting() -> None:
    with pytest.raises(ConfigError, match="webhook_allowlist entry"):
        UrlPolicy(allowlist=("*",), allowlist_setting="webhook_allowlist")
