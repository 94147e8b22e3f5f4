"""The hosted connect flow, from the session's token to the end user's credential.

    flow = ConnectFlow(backend, public_url="https://hw.example.com", session_seconds=1800)
    session_id, browser = await flow.open(token)            # spends the token, once
    session = await flow.session(session_id, cookies)        # the page's session, this browser's
    url = await flow.start_oauth(session, "github")         # the provider's authorization URL
    location = await flow.callback(query, cookies)           # the session's redirect_url + ?credential_id=
    location = await flow.submit_key(session, "stripe", "stripe_api_key", {"secret": "sk_..."})

What each step guarantees:
- the token opens the page once; the page is then bound to that browser by a cookie (its secret
  kept hashed), and every form it posts carries the session's CSRF token;
- an OAuth2 authorization request carries a `state` bound to the session (random, kept hashed)
  and, where the catalogue says the provider checks it, a PKCE verifier (S256, kept encrypted);
  the callback spends the state once, within STATE_SECONDS, in the browser that started it;
- the code is exchanged through authlib's client (headwater.upstream.token_client), so the token
  request goes through the forwarder like every upstream call; a typed-in key is checked with the
  kind's `verification` request before anything is stored;
- the account's facts are kept: those of the token answer, and those the provider's follow-up
  requests answer when asked with the new token (headwater.upstream.account_facts); a follow-up
  that fails fails the connection, and nothing is stored;
- the credential is the end user's (`external_id`), named after the app it came through
  (`oauth_app_id`), its tokens encrypted; a second connection replaces the tokens and the facts
  in place;
- the organisation's event endpoints hear `connection.created` in the transaction that stores it,
  `connection.failed` (with the reason shown to the user) when the provider refused.
Tokens, codes, keys and the verifier never reach a log line nor the browser.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import re
import secrets
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlencode, urlsplit, urlunsplit

from headwater.connect import sessions
from headwater.crypto import SECRET_MASK
from headwater.errors import ApiError
from headwater.services._common import Backend
from headwater.services.credentials import check_properties
from headwater.store import Credential, utcnow
from headwater.store.models import ConnectAttempt, ConnectSession
from headwater.store.org_events import emit
from headwater.upstream.account_facts import AccountFactsFailed, account_properties, asked_facts
from headwater.upstream.accounts import UpstreamAccount, credential_budget, open_properties, seal_properties
from headwater.upstream.catalogue import CredentialKind, Provider
from headwater.upstream.connected_users import users_credential
from headwater.upstream.gateway import UpstreamCall
from headwater.upstream.oauth_apps import OAuthAppClient
from headwater.upstream.reading import dig
from headwater.upstream.requests import UnsafeRequest
from headwater.upstream.token_client import OAuth2Error, TokenClient, TokenEndpointFailed

log = logging.getLogger("headwater.connect")

STATE_SECONDS = 600  # an authorization request must come back within this
UPSTREAM_SECONDS = 15.0  # the code exchange, each follow-up request, the key's verification
COOKIE_PREFIX = "hw_connect_"
CALLBACK_PATH = "/v1/connect/callback"


class PageError(Exception):
    """What the page shows instead of going on (the browser is not sent anywhere): a link that is
    unknown, used or expired, a state that does not check out, a form from elsewhere."""

    def __init__(self, status: int, title: str, message: str):
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


class KeyRefused(Exception):
    """The provider refused a typed-in key (or could not be asked): shown beside the form."""


@dataclass(frozen=True)
class Session:
    """A connect session as the page uses it."""

    id: str
    org_id: str
    end_user_id: str
    end_user_name: str  # how the page names the user: the display name, else the email, else the id
    integrations: tuple[str, ...]
    redirect_url: str
    preset: dict  # {integration: {property: value}}: the session's integration_properties
    csrf_token: str
    expires_at: datetime.datetime


def session_of(row: ConnectSession) -> Session:
    name = row.end_user_display_name or row.end_user_email or row.end_user_id
    return Session(row.id, row.org_id, row.end_user_id, name, tuple(row.allowed_integrations), row.redirect_url,
                   dict(row.integration_properties), row.csrf_token, row.expires_at)


def cookie_name(session_id: str) -> str:
    return COOKIE_PREFIX + session_id


def cookies_of(header: str) -> dict[str, str]:
    """The `Cookie` header's values by name; {} for one that does not parse."""
    jar = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def with_query(url: str, params: dict[str, str]) -> str:
    """`url` with `params` added to its query (what it had kept)."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


def key_fields(kind: CredentialKind, preset: dict) -> list[str]:
    """The properties a form asks for: the kind's required ones the session did not preset."""
    return [name for name in kind.required if name not in preset]


def message_at(body: bytes, path: str) -> str | None:
    """The string at the dotted `path` of a JSON body, if it holds one."""
    try:
        value = dig(json.loads(body), path)
    except ValueError:
        return None
    return value if isinstance(value, str) and value else None


class ConnectFlow:
    def __init__(self, backend: Backend, public_url: str, session_seconds: float):
        self.backend = backend
        self.public_url = public_url.rstrip("/")
        self.session_seconds = session_seconds
        self.secure_cookies = public_url.startswith("https://")

    @property
    def redirect_uri(self) -> str:
        """The OAuth2 redirect URI (the callback): register it with every OAuth app."""
        return self.public_url + CALLBACK_PATH

    def connect_url(self, token: str) -> str:
        return f"{self.public_url}/v1/connect?{urlencode({'session_token': token})}"

    # --- the page ------------------------------------------------------------------------------

    async def open(self, token: str) -> tuple[str, str]:
        """Spends a session's token: (session id, the browser's secret for its cookie)."""
        browser = sessions.new_secret()

        def spend():
            row = ConnectSession.get_or_none(ConnectSession.token_hash == sessions.token_hash(token))
            if row is None:
                raise PageError(404, "This link is not valid", "Ask the application for a new connect link.")
            if row.expires_at <= utcnow():
                raise PageError(410, "This link has expired", "Ask the application for a new connect link.")
            # Single use: only the first request that finds it unopened opens it.
            opened = ConnectSession.update(opened_at=utcnow(), browser_hash=sessions.token_hash(browser)).where(
                (ConnectSession.id == row.id) & ConnectSession.opened_at.is_null()).execute()
            if not opened:
                raise PageError(409, "This link was used already",
                                "A connect link opens once. Ask the application for a new one.")
            return row.id

        return await self.backend.store.run(spend), browser

    async def session(self, session_id: str, cookies: dict[str, str]) -> Session:
        """The session of the page, if this browser opened it and it has not expired."""
        browser = cookies.get(cookie_name(session_id), "")
        row = await self.backend.store.run(lambda: ConnectSession.get_or_none(ConnectSession.id == session_id))
        if row is None or not row.browser_hash or not browser or not secrets.compare_digest(
                row.browser_hash, sessions.token_hash(browser)):
            raise PageError(403, "This page is not yours",
                            "Open the connect link the application gave you, in this browser.")
        if row.expires_at <= utcnow():
            raise PageError(410, "This page has expired", "Ask the application for a new connect link.")
        return session_of(row)

    async def options(self, session: Session) -> list[sessions.ConnectOptions]:
        """How the page can connect each of the session's integrations, in its order."""
        backend = self.backend

        def find():
            return [sessions.connect_options(backend.catalogue, backend.oauth_apps, session.org_id, key)
                    for key in session.integrations]

        return [o for o in await backend.store.run(find) if o is not None and o.possible]

    async def option(self, session: Session, integration: str) -> sessions.ConnectOptions:
        found = next((o for o in await self.options(session) if o.provider.key == integration), None)
        if found is None:
            raise PageError(404, "Not offered here", "This connect page does not offer that integration.")
        return found

    # --- OAuth2 authorization code -----------------------------------------------------------

    async def start_oauth(self, session: Session, integration: str) -> str:
        """Records an authorization request and answers the provider's authorization URL."""
        option = await self.option(session, integration)
        app, oauth = option.oauth_app, option.provider.oauth
        if app is None:
            raise PageError(404, "Not offered here", f"{option.provider.name} connects with a key here, not OAuth.")
        verifier = secrets.token_urlsafe(48) if oauth.pkce else ""
        state = sessions.new_secret()
        client = TokenClient(self.backend.upstream.forwarder, app.client_id, app.client_secret,
                             timeout=UPSTREAM_SECONDS, redirect_uri=self.redirect_uri,
                             code_challenge_method="S256" if verifier else None)
        url, _ = client.create_authorization_url(
            app.authorization_url or oauth.authorization_url, state=state, code_verifier=verifier or None,
            scope=oauth.scope(app.scopes or oauth.default_scopes), **oauth.authorization_params,
        )
        await self.backend.store.run(lambda: ConnectAttempt.create(
            state_hash=sessions.token_hash(state), session=session.id, integration=integration,
            oauth_app_id=app.id, code_verifier=self.backend.box.encrypt(verifier) if verifier else "",
            redirect_uri=self.redirect_uri, expires_at=utcnow() + datetime.timedelta(seconds=STATE_SECONDS),
        ))
        return url

    async def callback(self, query: dict[str, str], cookies: dict[str, str]) -> str:
        """Where the provider's answer sends the browser: the session's redirect_url with
        `credential_id` (or `error`). A state that does not check out raises PageError."""
        state = query.get("state", "")
        attempt, session = await self.backend.store.run(self._spend_state, state, cookies)
        provider = self.backend.catalogue.provider(attempt.integration)
        if query.get("error") or not query.get("code"):
            # RFC 6749's error codes are printable ASCII; anything else is the sender's, not shown.
            error = re.sub(r"[^\x20-\x7e]", "", query.get("error") or "invalid_request")[:80]
            return await self._failed(session, provider, error, f"{provider.name} did not authorize the connection ({error})")
        app = await self.backend.store.run(self.backend.oauth_apps.find, session.org_id, attempt.oauth_app_id)
        verifier = self.backend.box.decrypt(attempt.code_verifier) if attempt.code_verifier else None
        token, reason = None, "no access token"
        if app is not None:
            token, reason = await self._exchange(app, provider, query["code"], attempt.redirect_uri, verifier)
        if token is None:
            return await self._failed(session, provider, "token_exchange_failed",
                                      f"{provider.name} did not issue a token ({reason})")
        kind = provider.credential_kinds[provider.oauth.credential_kind]
        issued = {kind.auth["property"]: token["access_token"]}
        if token.get("refresh_token"):
            issued["refresh_token"] = token["refresh_token"]
        if isinstance(token.get("expires_at"), int):
            issued["expires_at"] = token["expires_at"]
        issued |= account_properties(provider.oauth, token)
        # Facts the provider put on the redirect (QuickBooks' realmId): checked as every property is
        issued |= {name: query[param] for name, param in provider.oauth.callback_properties.items() if query.get(param)}
        try:
            issued |= await self._asked_facts(session, provider, kind, issued)
        except AccountFactsFailed as failed:
            return await self._failed(session, provider, "account_facts_failed",
                                      f"{provider.name} did not say which account it is: {failed}")
        return await self._connected(session, provider, kind, issued, app.id)

    async def _asked_facts(self, session: Session, provider: Provider, kind: CredentialKind, issued: dict) -> dict:
        """The facts the provider's follow-up requests answer, asked with the new tokens where the
        credential's calls will go (its stored base_url on a reconnect, else the session's)."""
        if not provider.oauth.account_requests:
            return {}
        standing = await self.backend.store.run(self._standing_properties, session, provider)
        # No refresh token: a token refused right after it was issued is not refreshed.
        properties = {name: value for name, value in {**standing, **issued}.items() if name != "refresh_token"}
        account = self._unstored_account(session, provider, kind, properties)
        return await asked_facts(self.backend.upstream, account, provider.oauth.account_requests, UPSTREAM_SECONDS)

    def _standing_properties(self, session: Session, provider: Provider) -> dict:
        """(in `store.run`) The properties the credential keeps through the connection: the user's
        stored credential's (secrets left out), else the session's presets."""
        row = users_credential(session.org_id, provider.key, session.end_user_id)
        if row is None:
            return dict(session.preset.get(provider.key, {}))
        return {name: value for name, value in row.properties.items() if value != SECRET_MASK}

    def _unstored_account(self, session: Session, provider: Provider, kind: CredentialKind,
                          properties: dict) -> UpstreamAccount:
        """`properties` as a credential to call the provider with before it is stored (a budget of
        the session's own)."""
        return UpstreamAccount(
            credential_id=f"connect:{session.id}", org_id=session.org_id, provider=provider, kind=kind,
            budget=credential_budget(provider, []), properties=properties,
        )

    def _spend_state(self, state: str, cookies: dict[str, str]) -> tuple[ConnectAttempt, Session]:
        """The authorization request `state` names, spent (in `store.run`): once, in time, and in
        the browser whose page started it."""
        query = ConnectAttempt.select().where(ConnectAttempt.state_hash == sessions.token_hash(state))
        attempt = (query.for_update() if self.backend.store.is_postgres else query).first() if state else None
        if attempt is None:
            raise PageError(400, "This sign-in answer is not valid",
                            "Its state names no sign-in that Headwater started. Start again from the application.")
        if attempt.used_at is not None:
            raise PageError(400, "This sign-in answer was used already",
                            "Each sign-in completes once. Start again from the application.")
        attempt.used_at = utcnow()
        attempt.save()
        if attempt.expires_at <= utcnow():
            raise PageError(400, "This sign-in has expired", "Start again from the application.")
        row = attempt.session
        browser = cookies.get(cookie_name(row.id), "")
        if not browser or not secrets.compare_digest(row.browser_hash or "", sessions.token_hash(browser)):
            raise PageError(400, "This sign-in was started in another browser",
                            "Finish it in the browser that opened the connect link.")
        return attempt, session_of(row)

    async def _exchange(self, app: OAuthAppClient, provider: Provider, code: str, redirect_uri: str,
                        verifier: str | None) -> tuple[dict | None, str]:
        """authlib's token request for the code: (the token answer, or None and why)."""
        client = TokenClient(self.backend.upstream.forwarder, app.client_id, app.client_secret, timeout=UPSTREAM_SECONDS,
                             basic_auth=provider.oauth.client_auth == "basic")
        try:
            token = await client.fetch_token(app.token_url or provider.oauth.token_url, grant_type="authorization_code",
                                             code=code, redirect_uri=redirect_uri, code_verifier=verifier)
        except OAuth2Error as refused:
            return None, refused.error  # RFC 6749's code: no secret in it
        except TokenEndpointFailed as failed:
            return None, f"HTTP {failed.status}" if failed.status else "no answer"
        return (token, "") if token.get("access_token") else (None, "no access token")

    # --- API keys ------------------------------------------------------------------------------

    async def submit_key(self, session: Session, integration: str, kind_name: str, fields: dict[str, str]) -> str:
        """Checks a typed-in key with the kind's verification request and, if the provider accepts
        it, stores the credential; KeyRefused (nothing stored) if not."""
        option = await self.option(session, integration)
        kind = next((k for k in option.forms if k.name == kind_name), None)
        if kind is None:
            raise PageError(404, "Not offered here", f"{option.provider.name} has no such form here.")
        preset = session.preset.get(integration, {})
        typed = {name: fields.get(name, "").strip() for name in key_fields(kind, preset)}
        if missing := [name for name, value in typed.items() if not value]:
            raise KeyRefused(f"Fill in {', '.join(label(name) for name in missing)}.")
        properties = {**preset, **typed, "kind": kind.name}
        try:
            await self._verify(session, option.provider, kind, properties)
        except KeyRefused as refused:
            await self.backend.store.run(emit, session.org_id, "connection.failed", failure(
                session, option.provider, "key_refused", str(refused)))
            raise
        return await self._connected(session, option.provider, kind, typed, "")

    async def _verify(self, session: Session, provider: Provider, kind: CredentialKind, properties: dict) -> None:
        """The kind's verification GET with `properties` as the credential; KeyRefused unless 2xx."""
        check = kind.verification
        account = self._unstored_account(session, provider, kind, properties)
        deadline = asyncio.get_running_loop().time() + UPSTREAM_SECONDS
        try:
            call = UpstreamCall(method="GET", path=check.path, query=urlencode(check.query), deadline=deadline)
            sent = await self.backend.upstream.send(account, call)
        except UnsafeRequest as unsafe:
            raise KeyRefused(f"{provider.name} cannot be called with it: {unsafe}") from None
        except ApiError as failed:
            raise KeyRefused(f"{provider.name} could not check it: {failed.message}") from None
        status = sent.response.status
        if not 200 <= status < 300:
            said = message_at(sent.response.body, check.error_message)
            raise KeyRefused(f"{provider.name} refused it (HTTP {status})" + (f": {said}" if said else "."))

    # --- the outcome ----------------------------------------------------------------------------

    async def _failed(self, session: Session, provider: Provider, error: str, message: str) -> str:
        """Tells the organisation (`connection.failed`), and answers the redirect to the
        application with `error` and `error_description`."""
        log.info("connect: session %s did not connect %s: %s", session.id, provider.name, message)
        await self.backend.store.run(emit, session.org_id, "connection.failed", failure(session, provider, error, message))
        return with_query(session.redirect_url, {"integration": provider.key, "error": error,
                                                 "error_description": message})

    async def _connected(self, session: Session, provider: Provider, kind: CredentialKind, issued: dict,
                         oauth_app_id: str) -> str:
        """Stores what the connection gave, as the end user's credential: a new one, or the one the
        user has (its tokens replaced in place); answers the redirect to the application."""
        credential_id, reconnected = await self.backend.store.run(
            self._store_credential, session, provider, kind, issued, oauth_app_id)
        self.backend.accounts.forget()
        log.info("connect: %s credential %s %s for end user %r of organisation %s", provider.name, credential_id,
                 "reconnected" if reconnected else "connected", session.end_user_id[:80], session.org_id)
        return with_query(session.redirect_url, {"integration": provider.key, "credential_id": credential_id})

    def _store_credential(self, session: Session, provider: Provider, kind: CredentialKind, issued: dict,
                          oauth_app_id: str) -> tuple[str, bool]:
        """(in `store.run`) The credential's id, and whether it was the user's already."""
        if oauth_app_id and (problem := self.backend.oauth_apps.problem(
                session.org_id, provider.key, oauth_app_id, lock=self.backend.store.is_postgres)):
            raise PageError(409, "The connection could not be saved", f"Its OAuth app is gone: {problem}.")
        row = users_credential(session.org_id, provider.key, session.end_user_id)
        reconnected = row is not None
        if row is None:
            row = Credential(org=session.org_id, provider=provider.key, external_id=session.end_user_id, secrets="")
            properties = dict(session.preset.get(provider.key, {}))
        else:
            properties = open_properties(row, self.backend.box)
            if issued.get("refresh_token") is None:
                properties.pop("refresh_token", None)  # a refresh token of the old grant is dead
            for name in provider.oauth.fact_properties if provider.oauth else ():
                properties.pop(name, None)  # the old grant's: perhaps another account's
        properties |= {**issued, "kind": kind.name}
        checked, violations = check_properties(self.backend.catalogue, provider.key, properties, "properties")
        if violations:
            missing = ", ".join(field.removeprefix("properties.") for field, _ in violations)
            raise PageError(502, "The connection could not be saved",
                            f"{provider.name} did not give what its credential needs: {missing}.")
        row.kind = kind.name
        row.oauth_app_id = oauth_app_id
        row.updated_at = utcnow()
        seal_properties(row, checked.kind, checked.properties, self.backend.box)
        row.save(force_insert=not reconnected)
        emit(session.org_id, "connection.created", {
            "credential_id": row.id, "provider": provider.key, "end_user_id": session.end_user_id,
            "session_id": session.id, "reconnected": reconnected,
        })
        return row.id, reconnected


def failure(session: Session, provider: Provider, error: str, message: str) -> dict:
    """A `connection.failed` event's data: `message` is what the user was shown."""
    return {"provider": provider.key, "end_user_id": session.end_user_id, "session_id": session.id,
            "error": error, "message": message}


def label(name: str) -> str:
    """A property's name as a form labels it: "access_token" -> "Access token"."""
    return name.replace("_", " ").capitalize()
