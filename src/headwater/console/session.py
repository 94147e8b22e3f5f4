"""The console's sign-in: an API token, kept in a cookie, and the CSRF tokens of its forms.

    sessions = ConsoleSessions(secret_key, public_url="http://127.0.0.1:8080")
    cookie = sessions.seal(token)             # the session cookie's value: the token, encrypted and dated
    sessions.token(cookie)                    # the token again, or None once SESSION_SECONDS have passed
    sessions.csrf_token(cookie)               # the hidden field every form of that session carries

- The cookie holds the token encrypted (Fernet, with a key derived from HEADWATER_SECRET_KEY for
  this one use), so neither the browser's store nor a log of cookies shows it; it lasts
  SESSION_SECONDS, and every replica sharing the key reads it (nothing is stored server-side).
- It is HttpOnly and SameSite=Strict, Path=/console, and Secure when the console is served over
  https (HEADWATER_PUBLIC_URL). Over plain http it is sent without Secure only when the public URL's
  host is loopback (127.0.0.1, ::1, localhost), where nothing crosses a network; on any other plain
  http address the console refuses to sign in (`signs_in_over_plain_http`), since the token would.
- Forms: the CSRF token is an HMAC of the session's cookie (a new one per sign-in); the sign-in form
  itself, before there is a session, carries a random value also set in a cookie of its own (a
  double submit). Every POST must also come from the console's own origin when it says (`Origin`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from headwater.connect.sessions import origin_of

SESSION_COOKIE = "hw_console"
SIGN_IN_COOKIE = "hw_console_sign_in"
SESSION_SECONDS = 12 * 3600
SIGN_IN_SECONDS = 1800  # the sign-in form's own token lasts this long


def _derived(key: bytes, purpose: bytes) -> bytes:
    """32 bytes for one `purpose`, from the server's Fernet key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(base64.urlsafe_b64decode(key))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ConsoleSessions:
    def __init__(self, secret_key: bytes, public_url: str):
        self._fernet = Fernet(base64.urlsafe_b64encode(_derived(secret_key, b"headwater console session")))
        self._csrf_key = _derived(secret_key, b"headwater console csrf")
        parts = urlsplit(public_url)
        self.origin = origin_of(public_url)
        self.path = parts.path.rstrip("/") + "/console"
        self.secure = parts.scheme == "https"
        # Plain http anywhere but loopback would carry the token over the network in the clear.
        self.signs_in_over_plain_http = not self.secure and is_loopback(parts.hostname or "")

    @property
    def can_sign_in(self) -> bool:
        return self.secure or self.signs_in_over_plain_http

    # --- the session cookie ------------------------------------------------------------------------

    def seal(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode()

    def token(self, cookie: str) -> str | None:
        """The API token of a session cookie; None for one not ours, or older than SESSION_SECONDS."""
        try:
            return self._fernet.decrypt(cookie.encode(), ttl=SESSION_SECONDS).decode()
        except (InvalidToken, ValueError):
            return None

    def csrf_token(self, cookie: str) -> str:
        return hmac.new(self._csrf_key, cookie.encode(), hashlib.sha256).hexdigest()

    def set_cookie(self, name: str, value: str, seconds: int) -> tuple[str, str]:
        secure = "; Secure" if self.secure else ""
        return "set-cookie", f"{name}={value}; Path={self.path}; Max-Age={seconds}; HttpOnly; SameSite=Strict{secure}"

    def clear_cookie(self, name: str) -> tuple[str, str]:
        return self.set_cookie(name, "", 0)

    # --- forms -------------------------------------------------------------------------------------

    @staticmethod
    def new_sign_in_token() -> str:
        return secrets.token_urlsafe(32)

    def same_origin(self, headers: dict[str, str]) -> bool:
        """A POST from the console's own pages: its Origin (when the browser sends one) is ours."""
        origin = headers.get("origin")
        return origin is None or origin_of(origin) == self.origin

    @staticmethod
    def matches(given: str, expected: str) -> bool:
        return bool(given) and bool(expected) and hmac.compare_digest(given, expected)
