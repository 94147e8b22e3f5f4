"""An OAuth2 authorization server and the API it guards: a real HTTP server on loopback for tests.

It plays a provider's side of the authorization-code flow (RFC 6749 section 4.1, PKCE RFC 7636)
and of refresh grants, strictly, so that what passes here follows the protocol:

    GET  /authorize    the consent page: an HTML form naming the client and its scopes, with
                       Approve and Deny buttons (checks client_id, redirect_uri, response_type)
    POST /authorize    the end user's decision: 302 to redirect_uri with `code` and `state`, or
                       with error=access_denied
    POST /token        authorization_code: checks the code (single use, 10 minutes), the
                       redirect_uri it was issued for, the client (client_secret_basic or
                       client_secret_post) and the PKCE verifier (S256); refresh_token: rotates
                       (the old refresh token dies on use). Errors in RFC 6749's shape
                       (`invalid_grant`, `invalid_client`, ...), 400 or 401.
    GET  /api/me       200 with the account only for a live access token (Bearer), else 401

and the calls the providers' docs name for what an access token's account is (the catalogue's
`oauth.account_requests`), under /api, each answered in its provider's shape for a live token:

    GET  /api/user                         GitHub's authenticated user: login, id (Bearer)
    GET  /api/oauth/v1/access-tokens/{t}   HubSpot's token metadata: hub_id, hub_domain, user (the
                                           token in the path; 404 for a dead one)
    GET  /api/auth.test                    Slack's identity: url, team, user_id (Bearer; a refused
                                           token is HTTP 200 with {"ok": false, "error": "invalid_auth"})
    GET  /api/about?fields=user            Google Drive's user: emailAddress, permissionId (Bearer)

    server = await start_oauth_server()
    server.register("client-1", "secret-1", redirect_uris=["http://127.0.0.1:8080/v1/connect/callback"])
    tokens = server.issue("client-1", scopes=["read"])     # an account connected already
    server.expire(tokens["access_token"])                   # its access token is no longer accepted
    server.revoke(tokens["refresh_token"])                  # the user disconnected the app
    server.token_requests                                   # what reached /token, as parsed forms
    server.refuse_account_requests = True                   # the account calls refuse every token
    await server.close()

Run as a program, it serves one registered client, for the README's examples:

    eval "$(.venv/bin/python tests/oauth_server.py --background --client client-1:secret-1 \
              --redirect-uri http://127.0.0.1:8080/v1/connect/callback)"   # sets OAUTH_SERVER_URL
    kill $OAUTH_SERVER_PID
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import html
import json
import secrets
import shlex
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from emulators import Received, read_request, serve_in_background, serve_on_loopback, serve_until_stopped

CODE_LIFETIME_SECONDS = 600


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uris: list[str]


@dataclass
class Grant:
    """What an authorization code stands for, until it is exchanged (once)."""

    client_id: str
    redirect_uri: str
    scopes: list[str]
    account: str
    code_challenge: str | None
    expires_at: float
    used: bool = False


@dataclass
class Token:
    client_id: str
    scopes: list[str]
    account: str
    expires_at: float = float("inf")
    revoked: bool = False


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


@dataclass
class OAuthServer:
    access_token_lifetime: int = 3600
    account: str = "user-1"  # whose approval the consent page gives
    port: int = 0
    clients: dict[str, Client] = field(default_factory=dict)
    codes: dict[str, Grant] = field(default_factory=dict)
    access_tokens: dict[str, Token] = field(default_factory=dict)
    refresh_tokens: dict[str, Token] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)  # each /token form, client auth included
    token_extras: dict = field(default_factory=dict)  # more in every token answer (Salesforce's instance_url)
    refuse_account_requests: bool = False  # the account calls refuse every token, each as its provider does
    hide_email: bool = False  # the account hides its email address (Drive then leaves emailAddress out)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def authorization_url(self) -> str:
        return f"{self.base_url}/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    def register(self, client_id: str, client_secret: str, redirect_uris: list[str] = ()) -> Client:
        client = self.clients[client_id] = Client(client_id, client_secret, list(redirect_uris))
        return client

    def issue(self, client_id: str, scopes: list[str] = (), account: str | None = None) -> dict:
        """Tokens for an account that approved `client_id` before (as a token answer)."""
        return self._tokens(client_id, list(scopes), account or self.account)

    def expire(self, access_token: str) -> None:
        self.access_tokens[access_token].expires_at = 0

    def revoke(self, refresh_token: str) -> None:
        self.refresh_tokens[refresh_token].revoked = True

    async def close(self) -> None:
        self._server.should_exit = True
        await self._task

    # --- HTTP ----------------------------------------------------------------------------------

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        request = await read_request(scope, receive)
        self.requests.append(request)
        status, headers, body = self._answer(request)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in headers]})
        await send({"type": "http.response.body", "body": body})

    def _answer(self, request: Received) -> tuple[int, list[tuple[str, str]], bytes]:
        try:
            if request.path == "/authorize" and request.method == "GET":
                return self._consent_page(dict(parse_qsl(request.query)))
            if request.path == "/authorize" and request.method == "POST":
                return self._decision(dict(parse_qsl(request.body.decode())))
            if request.path == "/token" and request.method == "POST":
                return _json(200, self._token(request))
            if request.path == "/api/me" and request.method == "GET":
                return _json(200, self._me(request))
            if request.path.startswith("/api/") and request.method == "GET" and (
                    answer := self._account_call(request)) is not None:
                return answer
        except OAuthError as error:
            headers = [("www-authenticate", f'Bearer error="{error.error}"')] if error.status == 401 else []
            status, json_headers, body = _json(error.status, {"error": error.error, "error_description": error.description})
            return status, json_headers + headers, body
        return _json(404, {"error": "not_found"})

    def _authorization_request(self, params: dict[str, str]) -> Client:
        """The client of a valid authorization request (errors here are shown, never redirected:
        the redirect URI cannot be trusted until it is checked)."""
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            raise OAuthError("invalid_client", "unknown client_id")
        if params.get("redirect_uri") not in client.redirect_uris:
            raise OAuthError("invalid_request", "redirect_uri is not registered for this client")
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "only response_type=code")
        if params.get("code_challenge") and params.get("code_challenge_method") != "S256":
            raise OAuthError("invalid_request", "code_challenge_method must be S256")
        return client

    def _consent_page(self, params: dict[str, str]):
        client = self._authorization_request(params)
        scopes = [s for s in params.get("scope", "").replace(",", " ").split() if s]
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in params.items()
        )
        listed = "".join(f"<li>{html.escape(s)}</li>" for s in scopes) or "<li>(no scopes)</li>"
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorize {html.escape(client.client_id)}</title></head>
<body><main>
<h1>Authorize {html.escape(client.client_id)}</h1>
<p>{html.escape(client.client_id)} asks to act for <strong>{html.escape(self.account)}</strong> with:</p>
<ul id="scopes">{listed}</ul>
<form method="post" action="/authorize">{hidden}
<button type="submit" name="decision" value="approve" id="approve">Approve</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button>
</form>
</main></body></html>"""
        return 200, [("content-type", "text/html; charset=utf-8")], page.encode()

    def _decision(self, form: dict[str, str]):
        self._authorization_request(form)
        answer = {"state": form["state"]} if "state" in form else {}
        if form.get("decision") == "approve":
            code = secrets.token_urlsafe(24)
            self.codes[code] = Grant(
                form["client_id"], form["redirect_uri"], form.get("scope", "").replace(",", " ").split(),
                self.account, form.get("code_challenge") or None, time.time() + CODE_LIFETIME_SECONDS,
            )
            answer = {"code": code, **answer}
        else:
            answer = {"error": "access_denied", "error_description": "the user denied the request", **answer}
        separator = "&" if urlsplit(form["redirect_uri"]).query else "?"
        return 302, [("location", form["redirect_uri"] + separator + urlencode(answer))], b""

    def _authenticated_client(self, request: Received, form: dict[str, str]) -> Client:
        """client_secret_basic (the Authorization header) or client_secret_post (the form)."""
        authorization = request.header("authorization") or ""
        if authorization.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        client = self.clients.get(client_id)
        if client is None or not secrets.compare_digest(client.client_secret, secret):
            raise OAuthError("invalid_client", "client authentication failed", status=401)
        return client

    def _token(self, request: Received) -> dict:
        form = dict(parse_qsl(request.body.decode()))
        self.token_requests.append(form | {"authorization": request.header("authorization") or ""})
        client = self._authenticated_client(request, form)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            grant = self.codes.get(form.get("code", ""))
            if grant is None or grant.used or grant.expires_at < time.time() or grant.client_id != client.client_id:
                raise OAuthError("invalid_grant", "the code is unknown, used, expired or not this client's")
            grant.used = True  # single use, whatever follows
            if form.get("redirect_uri") != grant.redirect_uri:
                raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request's")
            if grant.code_challenge is not None:
                verifier = form.get("code_verifier", "")
                if not verifier or create_s256_code_challenge(verifier) != grant.code_challenge:
                    raise OAuthError("invalid_grant", "the code_verifier does not match the code_challenge")
            return self._tokens(client.client_id, grant.scopes, grant.account)
        if grant_type == "refresh_token":
            token = self.refresh_tokens.get(form.get("refresh_token", ""))
            if token is None or token.revoked or token.client_id != client.client_id:
                raise OAuthError("invalid_grant", "the refresh token is unknown, revoked, used or not this client's")
            token.revoked = True  # rotation: each refresh token is good for one refresh
            return self._tokens(client.client_id, token.scopes, token.account)
        raise OAuthError("unsupported_grant_type", "authorization_code or refresh_token")

    def _tokens(self, client_id: str, scopes: list[str], account: str) -> dict:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.access_tokens[access] = Token(client_id, scopes, account, time.time() + self.access_token_lifetime)
        self.refresh_tokens[refresh] = Token(client_id, scopes, account)
        return {"access_token": access, "token_type": "Bearer", "expires_in": self.access_token_lifetime,
                "refresh_token": refresh, "scope": " ".join(scopes), **self.token_extras}

    def _live(self, access_token: str) -> Token | None:
        """The token `access_token` names, if it is live."""
        token = self.access_tokens.get(access_token)
        return token if token is not None and token.expires_at > time.time() else None

    def _bearer(self, request: Received) -> Token | None:
        authorization = request.header("authorization") or ""
        return self._live(authorization.removeprefix("Bearer ")) if authorization.startswith("Bearer ") else None

    def _me(self, request: Received) -> dict:
        token = self._bearer(request)
        if token is None:
            raise OAuthError("invalid_token", "the access token is missing, unknown or expired", status=401)
        return {"account": token.account, "client_id": token.client_id, "scopes": token.scopes}

    def _account_call(self, request: Received) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """A provider's call for the token's account (see the module's docstring), or None for a
        path that is none of them."""
        path = request.path.removeprefix("/api")
        if path.startswith("/oauth/v1/access-tokens/"):  # HubSpot: the token is the path's last segment
            access_token = path.rsplit("/", 1)[1]
            token = None if self.refuse_account_requests else self._live(access_token)
            if token is None:
                return _json(404, {"status": "error", "message": "Token not found", "category": "OBJECT_NOT_FOUND"})
            return _json(200, {
                "token": access_token, "user": f"{token.account}@example.com",
                "hub_domain": f"{token.account}.example.com", "hub_id": account_number(token.account),
                "scopes": token.scopes, "token_type": "access", "user_id": account_number(token.account) + 1,
                "app_id": 1, "expires_in": int(token.expires_at - time.time()),
            })
        if path not in ("/user", "/auth.test", "/about"):
            return None
        token = None if self.refuse_account_requests else self._bearer(request)
        if path == "/auth.test":  # Slack answers HTTP 200 either way, and says `ok`
            if token is None:
                return _json(200, {"ok": False, "error": "invalid_auth"})
            return _json(200, {"ok": True, "url": f"https://{token.account}.slack.com/", "team": f"{token.account}'s team",
                               "user": token.account, "team_id": "T1", "user_id": f"U{account_number(token.account)}"})
        if token is None:
            return _json(401, {"message": "Bad credentials"} if path == "/user" else {
                "error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}})
        if path == "/user":
            return _json(200, {"login": token.account, "id": account_number(token.account), "type": "User"})
        if dict(parse_qsl(request.query)).get("fields") != "user":  # Drive asks for the fields wanted
            return _json(400, {"error": {"code": 400, "message": "The 'fields' parameter is required for this method."}})
        user = {"kind": "drive#user", "displayName": token.account, "me": True,
                "permissionId": str(account_number(token.account))}
        return _json(200, {"user": user if self.hide_email else user | {"emailAddress": f"{token.account}@example.com"}})


def account_number(account: str) -> int:
    """A stable number for an account (its id at the providers that number theirs)."""
    return int(hashlib.sha256(account.encode()).hexdigest()[:7], 16)


def _json(status: int, body: dict) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [("content-type", "application/json"), ("cache-control", "no-store")], json.dumps(body).encode()


async def start_oauth_server(**settings) -> OAuthServer:
    """An OAuthServer on 127.0.0.1 and a free port, in this loop (stop it with `close`)."""
    server = OAuthServer(**settings)
    server.port, server._server, server._task = await serve_on_loopback(server)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve an OAuth2 authorization server and its API on a loopback "
                                                 "port; print the shell variable of its URL.")
    parser.add_argument("--client", required=True, metavar="CLIENT_ID:SECRET", help="the client it knows")
    parser.add_argument("--redirect-uri", action="append", default=[], help="a redirect URI of the client")
    parser.add_argument("--background", action="store_true",
                        help="serve from a background process and return; also print OAUTH_SERVER_PID")
    args = parser.parse_args(argv)
    client_id, _, secret = args.client.partition(":")

    async def serve(ready) -> None:
        server = None

        async def start() -> list[str]:
            nonlocal server
            server = await start_oauth_server()
            server.register(client_id, secret, redirect_uris=args.redirect_uri)
            return [f"export OAUTH_SERVER_URL={shlex.quote(server.base_url)}"]

        await serve_until_stopped(start, ready)
        await server.close()

    if args.background:
        return serve_in_background(serve, "OAUTH_SERVER_PID")
    asyncio.run(serve(lambda lines: print(*lines, sep="\n", flush=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
