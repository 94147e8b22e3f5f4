"""What may go upstream, and how URLs in answers point back at the proxy.

Pure functions, no I/O: the proxy and the mutation code both build their upstream requests here.

    url = upstream_url("https://api.github.com", "repos/o/r/issues", "state=open", hosts)
    # "https://api.github.com/repos/o/r/issues?state=open"
    upstream_url("https://api.github.com", "../admin", "", hosts)          # UnsafeRequest
    upstream_url("https://api.github.com", "https://evil.example/x", "", hosts)  # HostNotPermitted
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, unquote, unquote_plus, urlsplit

HOST_NOT_PERMITTED = "This domain is invalid for the current integration"

# Hop-by-hop headers (RFC 9110 section 7.6.1) never cross a proxy, either way.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
})
# Not passed upstream: the caller's credentials for Headwater, cookies, what the client layer
# sets itself, where the caller is, and our own control headers.
DROPPED_REQUEST = HOP_BY_HOP | frozenset({
    "authorization", "cookie", "host", "content-length", "forwarded", "x-forwarded-for",
    "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "grpc-timeout", "x-paragon-use-raw-response",
})
DROPPED_REQUEST_PREFIXES = ("x-headwater-",)
DROPPED_RESPONSE = HOP_BY_HOP | frozenset({"content-length"})
# Answer headers whose URLs the LinkRewriter rewrites (see there).
LINK_HEADERS = frozenset({"link", "location", "content-location"})

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_CONTROL_BUT_TAB = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TOKENS = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?::[!#$%&'*+\-.^_`|~0-9A-Za-z]+)*")  # names joined by ":"
# One query parameter of a URL, absolute or relative: its separator, name and value. JSON from Go
# escapes "&" as "\u0026", which separates parameters too.
_QUERY_PARAM = re.compile(r"(\?|&|\\u0026)([^?&#=\s<>\"',;\\]+)=([^&#\s<>\"',;\\]*)")


class UnsafeRequest(ValueError):
    """A request Headwater refuses to send (400)."""


class HostNotPermitted(UnsafeRequest):
    def __init__(self):
        super().__init__(HOST_NOT_PERMITTED)


def host_permitted(host: str, permitted: Iterable[str]) -> bool:
    """Exact names, or `*.example.com` for any subdomain of example.com."""
    host = host.lower().rstrip(".")
    for pattern in permitted:
        pattern = pattern.lower()
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def url_problem(url: str) -> str | None:
    """What keeps `url` from being an absolute http(s) URL Headwater can call, or None."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return "must be an absolute http:// or https:// URL"
    try:
        parts.port  # noqa: B018 (urlsplit checks the port when it is read)
    except ValueError:
        return "must have a port from 0 to 65535, if any"
    return None


def _check_path(path: str) -> None:
    if _CONTROL.search(path):
        raise UnsafeRequest("the path contains control characters")
    for segment in path.split("/"):
        if "." not in segment and "%" not in segment:
            continue  # nothing that could spell "." or ".."
        # Percent-decoding twice catches "%252e%252e" as well as "%2e%2e" and "..".
        decoded = unquote(unquote(segment))
        if any(part in ("..", ".") for part in re.split(r"[/\\]", decoded)):
            raise UnsafeRequest("the path may not contain '.' or '..' segments")


def upstream_url(base_url: str, path: str, query: str, permitted_hosts: Iterable[str]) -> str:
    """The absolute upstream URL for a proxied `path` (relative, or fully qualified) and query."""
    if _CONTROL.search(query) or " " in query:
        raise UnsafeRequest("the query string contains control characters or spaces")
    scheme_match = _SCHEME.match(path)
    if scheme_match:
        scheme = scheme_match.group(1).lower()
        if scheme not in ("http", "https"):
            raise UnsafeRequest(f"only http and https URLs can be proxied, not {scheme}:")
        # Some clients and proxies collapse "https://" in a path to "https:/".
        url = re.sub(r"^(https?):/+", r"\1://", path, flags=re.IGNORECASE)
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise UnsafeRequest("URLs with user information are not allowed")
        if not parts.hostname or not host_permitted(parts.hostname, permitted_hosts):
            raise HostNotPermitted()
        if url_problem(url):
            raise UnsafeRequest("the URL's port must be a number from 0 to 65535")
        _check_path(parts.path)
        if query:
            url = f"{url}&{query}" if parts.query else f"{url}?{query}"
        return url
    _check_path(path)
    url = f"{base_url.rstrip('/')}/{path.lstrip('/')}" if path else base_url
    return f"{url}?{query}" if query else url


def check_header(name: str, value: str) -> None:
    if not _TOKEN.match(name):
        raise UnsafeRequest(f"invalid header name {name[:40]!r}")
    if _CONTROL_BUT_TAB.search(value):
        raise UnsafeRequest(f"header {name} contains control characters")


def outbound_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The caller's headers that go upstream: validated, minus auth, cookies and hop-by-hop ones."""
    headers = list(headers)
    # Validated all at once (the names joined by ":", which no valid name holds; the values by a
    # tab, which any value may); only when that finds a fault is each checked, to name the first.
    if not _TOKENS.fullmatch(":".join([name for name, _ in headers])) or _CONTROL_BUT_TAB.search(
        "\t".join([value for _, value in headers])
    ):
        for name, value in headers:
            check_header(name, value)
    kept = []
    connection = []  # the Connection headers' values: the names they list are dropped too
    for name, value in headers:
        lower = name.lower()
        if lower in DROPPED_REQUEST or lower.startswith(DROPPED_REQUEST_PREFIXES):
            if lower == "connection":
                connection.append(value)
            continue
        kept.append((name, value))
    if connection:
        named = {token.strip().lower() for value in connection for token in value.split(",")}
        kept = [(name, value) for name, value in kept if name.lower() not in named]
    return kept


def inbound_headers(headers: Iterable[tuple[str, str]], links: LinkRewriter | None = None) -> list[tuple[str, str]]:
    """The upstream's answer headers that go back to the caller, with `links` rewriting the URLs
    in Link, Location and Content-Location headers (see LinkRewriter)."""
    kept = []
    for name, value in headers:
        lower = name.lower()
        if lower in DROPPED_RESPONSE:
            continue
        if links is not None and lower in LINK_HEADERS:
            value = links.rewrite(value)
        kept.append((name, value))
    return kept


def without_query_param(text: str, name: str, value: str) -> str:
    """`text` without the query parameter `name=value` in any URL it holds (absolute or relative,
    however the value is percent-encoded), the rest of each URL as it was.

        without_query_param('<https://api.x.com/items?api_key=k%2B1&page=2>; rel="next"', "api_key", "k+1")
        # '<https://api.x.com/items?page=2>; rel="next"'
    """
    if name not in text and quote(name, safe="") not in text:
        return text  # the common case: nothing to look for
    kept: list[str] = []
    last = 0  # text[last:] is not in `kept` yet
    promote = False  # a removed parameter was its URL's first: the next one takes over its "?"
    for param in _QUERY_PARAM.finditer(text):
        separator, start = param.group(1), param.start()
        promote = promote and start == last
        if unquote(param.group(2)) == name and value in (unquote(param.group(3)), unquote_plus(param.group(3))):
            kept.append(text[last:start])
            promote = promote or separator == "?"
            last = param.end()
        elif promote:
            kept.append("?")
            last = start + len(separator)
            promote = False
    kept.append(text[last:])
    return "".join(kept)


class LinkRewriter:
    """Points absolute upstream URLs back at the proxy route, so SDKs that follow `Link` and
    `Location` (PyGithub, Stripe's auto-pagination) keep going through Headwater; and removes the
    credential's query-parameter key (`hidden`: its name and value) from every URL first, whatever
    its host, so that an answer never hands the key back.

        r = LinkRewriter("https://api.github.com", ["api.github.com"], "http://hw:8080/v1/proxy/sync/S/")
        r.rewrite('<https://api.github.com/repos/o/r/issues?page=2>; rel="next"')
        # '<http://hw:8080/v1/proxy/sync/S/repos/o/r/issues?page=2>; rel="next"'
        LinkRewriter("https://api.x.com", [], hidden=("api_key", "K")).rewrite("https://api.x.com/a?api_key=K")
        # 'https://api.x.com/a'   (no proxy_base: links keep pointing upstream, only the key goes)
    """

    _URL = re.compile(r"https?://[^\s<>\"',;]+", re.IGNORECASE)

    def __init__(
        self, base_url: str, permitted_hosts: Iterable[str], proxy_base: str = "",
        hidden: tuple[str, str] | None = None,
    ):
        self.base_url = base_url.rstrip("/") + "/"
        self.permitted_hosts = tuple(permitted_hosts)
        self.proxy_base = proxy_base.rstrip("/") + "/" if proxy_base else ""
        self.hidden = hidden

    def _one(self, match: re.Match) -> str:
        url = match.group(0)
        if url.lower().startswith(self.base_url.lower()):
            return self.proxy_base + url[len(self.base_url):]
        if url.rstrip("/").lower() == self.base_url.rstrip("/").lower():
            return self.proxy_base
        host = urlsplit(url).hostname
        if host and host_permitted(host, self.permitted_hosts):
            return self.proxy_base + url
        return url

    def rewrite(self, text: str, point_back: bool = True) -> str:
        if self.hidden:
            text = without_query_param(text, *self.hidden)
        return self._URL.sub(self._one, text) if point_back and self.proxy_base else text

    def json_body(self, body: bytes, point_back: bool) -> bytes:
        """URLs inside a JSON body: the key always removed, the URLs pointed back at the proxy only
        if `point_back` (opt-in: a body is data, and rewriting it is a choice)."""
        if not (self.hidden or point_back and self.proxy_base):
            return body
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return body  # not the JSON it claimed to be: pass it on untouched
        # JSON may escape "/" as "\/"; rewrite the plain form, which is what APIs send.
        return self.rewrite(text, point_back).encode()
