"""The hosted connect page's HTML: jinja2 templates packaged beside this module, escaped
automatically, served with a strict Content-Security-Policy and no third-party assets.

    html(200, "page.html", {"title": "Connect an account", ...}, form_targets=["https://github.com"])

Every answer forbids framing, sniffing, caching and referrers, and allows nothing but this
server's own stylesheet; forms may post to this server only, and follow its redirect to
`form_targets` (the providers' authorization pages, the application's redirect URL): browsers hold
a form's redirects to `form-action` too.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources

import jinja2

from headwater.connect.sessions import origin_of

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("headwater.connect", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a name the template lacks is a bug, not an empty string
)
STYLESHEET = resources.files("headwater.connect").joinpath("templates", "connect.css").read_bytes()

COMMON_HEADERS = [
    ("cache-control", "no-store"),
    ("referrer-policy", "no-referrer"),  # the provider never sees the page's URL
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
]


def content_security_policy(form_targets: Iterable[str] = ()) -> str:
    targets = sorted({origin for url in form_targets if (origin := origin_of(url))})
    return "; ".join([
        "default-src 'none'", "style-src 'self'", "img-src 'self'", "base-uri 'none'",
        "frame-ancestors 'none'", "form-action " + " ".join(["'self'", *targets]),
    ])


def html(status: int, template: str, context: dict, form_targets: Iterable[str] = (),
         headers: Iterable[tuple[str, str]] = ()) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of a rendered page."""
    body = _templates.get_template(template).render(**context).encode()
    return status, [
        ("content-type", "text/html; charset=utf-8"),
        ("content-security-policy", content_security_policy(form_targets)),
        *COMMON_HEADERS, *headers,
    ], body


def redirect(location: str, headers: Iterable[tuple[str, str]] = ()) -> tuple[int, list[tuple[str, str]], bytes]:
    """303 See Other: the browser GETs `location` (after a form's POST too)."""
    return 303, [("location", location), *COMMON_HEADERS, *headers], b""


def stylesheet() -> tuple[int, list[tuple[str, str]], bytes]:
    return 200, [("content-type", "text/css; charset=utf-8"), ("cache-control", "public, max-age=3600"),
                 ("x-content-type-options", "nosniff")], STYLESHEET
