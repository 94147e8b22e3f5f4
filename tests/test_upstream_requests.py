"""The rules for what goes upstream: URLs, headers, and links pointing back at the proxy."""

from __future__ import annotations

import pytest

from headwater.upstream.requests import (
    HostNotPermitted,
    LinkRewriter,
    UnsafeRequest,
    host_permitted,
    inbound_headers,
    outbound_headers,
    upstream_url,
)

HOSTS = ["api.github.com", "*.my.salesforce.com"]


def test_relative_path_joins_the_base_url_and_keeps_the_query_verbatim():
    url = upstream_url("https://api.github.com/", "/repos/o/r/issues", "state=open&labels=a%2Cb", HOSTS)

    assert url == "https://api.github.com/repos/o/r/issues?state=open&labels=a%2Cb"


def test_fully_qualified_url_on_a_permitted_host_replaces_the_base():
    assert upstream_url("https://x", "https://acme.my.salesforce.com/services/data", "q=1", HOSTS) == \
        "https://acme.my.salesforce.com/services/data?q=1"
    # A proxy may collapse "//" in a path.
    assert upstream_url("https://x", "https:/api.github.com/user", "", HOSTS) == "https://api.github.com/user"


@pytest.mark.parametrize("path", ["https://evil.com/x", "https://my.salesforce.com.evil.com/",
                                  "https://api.github.com.evil.com/"])
def test_other_hosts_are_not_permitted(path):
    with pytest.raises(HostNotPermitted, match="This domain is invalid for the current integration"):
        upstream_url("https://api.github.com", path, "", HOSTS)


@pytest.mark.parametrize("path", ["a/../b", "a/%2e%2e/b", "a/%2E%2e/b", "a/%252e%252e/b", "a/./b", "..",
                                  "a/..%2fb", "a\\..\\b", "ftp://api.github.com/x", "javascript:alert(1)",
                                  "https://user:pw@api.github.com/", "https://api.github.com@evil.com/",
                                  "a/b\r\nHost: evil"])
def test_unsafe_paths_are_refused(path):
    with pytest.raises(UnsafeRequest):
        upstream_url("https://api.github.com", path, "", HOSTS)


def test_wildcard_hosts_match_subdomains_only():
    assert host_permitted("acme.my.salesforce.com", HOSTS)
    assert not host_permitted("my.salesforce.com", HOSTS)
    assert host_permitted("API.GITHUB.COM.", HOSTS)


def test_outbound_headers_drop_auth_cookies_hop_by_hop_and_those_named_in_connection():
    kept = outbound_headers([
        ("Authorization", "Bearer caller"), ("Cookie", "a=b"), ("Connection", "close, X-Private"),
        ("X-Private", "1"), ("Transfer-Encoding", "chunked"), ("Host", "hw"), ("X-Headwater-Timeout", "3"),
        ("Content-Type", "application/json"), ("Idempotency-Key", "k"),
    ])

    assert kept == [("Content-Type", "application/json"), ("Idempotency-Key", "k")]


@pytest.mark.parametrize("name, value", [("X-A", "1\r\nX-B: 2"), ("X A", "1"), ("X-A", "nul\x00")])
def test_header_injection_is_refused(name, value):
    with pytest.raises(UnsafeRequest):
        outbound_headers([(name, value)])


def test_inbound_headers_drop_hop_by_hop_and_length_but_keep_repeats():
    assert inbound_headers([("Set-Cookie", "a"), ("set-cookie", "b"), ("Connection", "close"),
                            ("Content-Length", "3")]) == [("Set-Cookie", "a"), ("set-cookie", "b")]


def test_link_rewriter_points_base_urls_and_permitted_hosts_back_at_the_proxy():
    r = LinkRewriter("https://api.github.com", ["api.github.com", "uploads.github.com"], "http://hw/v1/proxy/sync/S")

    assert r.rewrite('<https://api.github.com/repos?page=2>; rel="next"') == \
        '<http://hw/v1/proxy/sync/S/repos?page=2>; rel="next"'
    assert r.rewrite("https://uploads.github.com/x") == "http://hw/v1/proxy/sync/S/https://uploads.github.com/x"
    assert r.rewrite("https://elsewhere.com/x") == "https://elsewhere.com/x"
