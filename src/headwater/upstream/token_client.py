"""authlib's OAuth2 client, sending its token requests through the Forwarder.

    client = TokenClient(forwarder, client_id, client_secret)
    token = await client.refresh_token(token_url, refresh_token=refresh_token)
    token["access_token"], token.get("expires_at")                 # authlib's OAuth2Token

authlib writes the requests (the grant's form, the client's authentication) and reads the answers
(an OAuth2Token, whose `expires_at` it derives from `expires_in`; or OAuth2Error, whose `error` is
RFC 6749's code, e.g. "invalid_grant"); the Forwarder sends them, so a token endpoint is called
under the rules every upstream call keeps: the SSRF guard, the size limit, no redirects followed,
a timeout. Its other methods (`create_authorization_url` with PKCE, `fetch_token` for a code)
work the same way.

The client authenticates with `client_secret_post` (client_id and client_secret in the form), which
most providers accept (HubSpot accepts nothing else), or with `client_secret_basic` (HTTP Basic)
where the catalogue's `client_auth: basic` says the provider wants it (Notion); without a secret it
sends the client id alone, without a client id neither.
"""

from __future__ import annotations

import json

from authlib.oauth2 import OAuth2Client, OAuth2Error
from authlib.oauth2.rfc6749 import OAuth2Token

from headwater.upstream.forwarder import Forwarder, UpstreamError, UpstreamRequest, UpstreamResponse

__all__ = ["OAuth2Error", "OAuth2Token", "TokenClient", "TokenEndpointFailed"]


class TokenEndpointFailed(Exception):
    """The token endpoint gave no token and no OAuth error: no answer, a 5xx, a body that is not a
    JSON object. `status` is the HTTP status, or None without an answer."""

    def __init__(self, status: int | None):
        super().__init__(f"token endpoint answered {status}" if status else "token endpoint did not answer")
        self.status = status


def _no_client_authentication(client, method, uri, headers, body):
    return uri, headers, body


def _authentication(client_id: str | None, client_secret: str | None, basic: bool = False):
    """authlib's client authentication method: client_secret_post (client_secret_basic if `basic`),
    or "none" (the client id alone) for a public client, or nothing at all without a client id."""
    if not client_id:
        return _no_client_authentication
    if not client_secret:
        return "none"
    return "client_secret_basic" if basic else "client_secret_post"


class _Answer:
    """An upstream answer as authlib reads one (the `requests` interface it was written against)."""

    def __init__(self, response: UpstreamResponse):
        self.status_code = response.status
        self._body = response.body

    def json(self):
        return json.loads(self._body)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise TokenEndpointFailed(self.status_code)


class TokenClient(OAuth2Client):
    def __init__(self, forwarder: Forwarder, client_id: str | None, client_secret: str | None, *,
                 timeout: float, basic_auth: bool = False, **settings):
        super().__init__(
            session=None, client_id=client_id, client_secret=client_secret,
            token_endpoint_auth_method=_authentication(client_id, client_secret, basic_auth),
            **settings,
        )
        self.forwarder = forwarder
        self.timeout = timeout
        self.status: int | None = None  # of the token endpoint's last answer (None: none yet)

    def parse_response_token(self, resp) -> OAuth2Token:
        try:
            token = super().parse_response_token(resp)
        except (ValueError, TypeError):  # not a JSON object, or an `expires_in` that is no number
            raise TokenEndpointFailed(resp.status_code) from None
        if resp.status_code >= 400:  # an error answer without RFC 6749's `error` (HubSpot's BAD_REFRESH_TOKEN)
            raise TokenEndpointFailed(resp.status_code)
        return token

    async def _fetch_token(self, url, body="", headers=None, auth=None, method="POST", **kwargs) -> OAuth2Token:
        return self.parse_response_token(await self._post(url, body, headers, auth))

    async def _refresh_token(self, url, refresh_token=None, body="", headers=None, auth=None, **kwargs) -> OAuth2Token:
        return self.parse_response_token(await self._post(url, body, headers, auth))

    async def _post(self, url: str, body: str, headers: dict, auth) -> _Answer:
        url, headers, body = auth.prepare("POST", url, dict(headers or {}), body)
        try:
            response = await self.forwarder.send(UpstreamRequest(
                method="POST", url=url, headers=list(headers.items()), body=body.encode(), timeout=self.timeout,
            ))
        except UpstreamError:
            raise TokenEndpointFailed(None) from None  # its message may name the host only; nothing to add
        self.status = response.status
        return _Answer(response)
