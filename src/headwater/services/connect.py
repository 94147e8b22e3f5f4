"""ConnectService: connect sessions and the organisation's connect settings over both fronts; and
the hosted connect page itself, as raw routes of the REST bridge (`page_routes`: HTML and forms,
not JSON), both on headwater.connect's flow.

    POST /v1/connect/sessions                        the application's backend: a session, its connect_url
    POST /projects/{project_id}/sdk/connect/{integration}   the same for a connected user's JWT
    GET|PATCH /v1/connect/settings                   allowed_redirect_origins

    GET  /v1/connect?session_token=...               opens the page (once), binds it to the browser
    GET  /v1/connect/pages/{session_id}              the page: the session's integrations
    POST /v1/connect/pages/{session_id}/{integration}  a form: OAuth (to the provider) or an API key
    GET  /v1/connect/callback                        the provider's answer: back to redirect_url
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlsplit

from google.protobuf import json_format

from headwater.connect import sessions
from headwater.connect.flow import (
    ConnectFlow,
    KeyRefused,
    PageError,
    Session,
    cookie_name,
    cookies_of,
    key_fields,
    label,
)
from headwater.connect.pages import html, redirect, stylesheet
from headwater.errors import invalid, raise_if_invalid
from headwater.inputs import string_problem
from headwater.rest import RawRequest, RawResponse, RawRoute
from headwater.rest.openapi import RawDoc, describe
from headwater.services._common import Backend, struct, timestamp, update_paths
from headwater.store import utcnow
from headwater.store.models import ConnectSettings
from headwater.v1 import connect_pb2, connect_pb2_grpc

MAX_TYPED_CHARS = 4096  # a key typed into the page's form


def session_to_proto(row, token: str, flow: ConnectFlow) -> connect_pb2.ConnectSession:
    return connect_pb2.ConnectSession(
        id=row.id, token=token, connect_url=flow.connect_url(token), expires_at=timestamp(row.expires_at),
        end_user=connect_pb2.EndUser(id=row.end_user_id, email=row.end_user_email or None,
                                     display_name=row.end_user_display_name or None),
        allowed_integrations=row.allowed_integrations, redirect_url=row.redirect_url,
        integration_properties={key: struct(value) for key, value in row.integration_properties.items()},
    )


def settings_to_proto(row: ConnectSettings | None) -> connect_pb2.ConnectSettings:
    if row is None:
        return connect_pb2.ConnectSettings()
    return connect_pb2.ConnectSettings(allowed_redirect_origins=row.allowed_redirect_origins,
                                       updated_at=timestamp(row.updated_at))


class ConnectServicer(connect_pb2_grpc.ConnectServiceServicer):
    def __init__(self, backend: Backend, flow: ConnectFlow):
        self.backend = backend
        self.flow = flow

    async def CreateConnectSession(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        row, token = await self._create(org_id, request.end_user, list(request.allowed_integrations),
                                        request.redirect_url, request.integration_properties, "allowed_integrations")
        return connect_pb2.CreateConnectSessionResponse(session=session_to_proto(row, token, self.flow))

    async def CreateConnectedUserSession(self, request, context):
        org_id, user_id = await self.backend.connected_users.user(request.project_id, context)
        if problem := string_problem(user_id):
            raise invalid("sub", f"the user token's sub {problem}")
        if not request.integration:
            raise invalid("integration", "is required")
        end_user = connect_pb2.EndUser(id=user_id, email=request.email, display_name=request.display_name)
        row, token = await self._create(org_id, end_user, [request.integration], request.redirect_url, {},
                                        "integration", project_id=request.project_id)
        return connect_pb2.CreateConnectedUserSessionResponse(session=session_to_proto(row, token, self.flow))

    async def _create(self, org_id: str, end_user, integrations: list[str], redirect_url: str, preset,
                      integrations_field: str, project_id: str = ""):
        """A session from a request's fields, every mistake listed at once (nothing stored then)."""
        backend = self.backend
        preset = {key: json_format.MessageToDict(value) for key, value in preset.items()}
        violations = [] if end_user.id else [("end_user.id", "is required: the application's id of the user")]

        def create():
            offered = list(dict.fromkeys(integrations)) or sessions.connectable(
                backend.catalogue, backend.oauth_apps, org_id)
            found = sessions.integrations_violations(
                backend.catalogue, backend.oauth_apps, org_id, offered, integrations_field)
            if not offered:
                found.append((integrations_field, "no integration can be connected: register an OAuth app first"))
            if problem := sessions.redirect_problem(org_id, redirect_url):
                found.append(("redirect_url", problem))
            found += sessions.properties_violations(backend.catalogue, offered, preset, "integration_properties")
            raise_if_invalid(violations + found)
            return sessions.new_session(org_id, end_user, offered, redirect_url, preset,
                                        self.flow.session_seconds, project_id)

        return await backend.store.run(create)

    async def GetConnectSettings(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        row = await self.backend.store.run(lambda: ConnectSettings.get_or_none(ConnectSettings.org == org_id))
        return connect_pb2.GetConnectSettingsResponse(settings=settings_to_proto(row))

    async def UpdateConnectSettings(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        message = request.settings
        tops = {p.split(".")[0] for p in update_paths(request.update_mask, message)}
        violations = [(f"settings.{top}", "is output only" if top == "updated_at" else "is not a field of ConnectSettings")
                      for top in sorted(tops - {"allowed_redirect_origins"})]
        origins = [sessions.origin_of(o) or o for o in message.allowed_redirect_origins]
        raise_if_invalid(violations + sessions.settings_violations(list(message.allowed_redirect_origins)))

        def update():
            row = ConnectSettings.get_or_none(ConnectSettings.org == org_id)
            created = row is None
            row = row or ConnectSettings(org=org_id)
            if "allowed_redirect_origins" in tops:
                row.allowed_redirect_origins = list(dict.fromkeys(origins))
            row.updated_at = utcnow()
            row.save(force_insert=created)
            return row

        row = await self.backend.store.run(update)
        return connect_pb2.UpdateConnectSettingsResponse(settings=settings_to_proto(row))


# --- the hosted page: raw routes of the REST bridge --------------------------------------------


def page_routes(flow: ConnectFlow) -> list[RawRoute]:
    """The hosted connect page's routes (HTML in, form posts out), for `build_app(raw_routes=...)`."""
    base = flow.public_url
    cookie_path = urlsplit(base).path + "/v1/connect"
    own_origin = sessions.origin_of(base)

    def page(handler: Callable[[RawRequest], Awaitable[tuple]]):
        """A handler answering (status, headers, body), a PageError as a page of its own."""
        async def handle(http: RawRequest) -> RawResponse:
            try:
                return RawResponse(*await handler(http))
            except PageError as error:
                return RawResponse(*html(error.status, "message.html", {
                    "base": base, "title": error.title, "message": error.message}))
        return handle

    async def open_page(http: RawRequest):
        token = dict(parse_qsl(http.query_string.decode("latin-1"))).get("session_token", "")
        session_id, browser = await flow.open(token)
        secure = "; Secure" if flow.secure_cookies else ""
        cookie = (f"{cookie_name(session_id)}={browser}; Path={cookie_path}; Max-Age={int(flow.session_seconds)}; "
                  f"HttpOnly; SameSite=Lax{secure}")
        return redirect(f"{base}/v1/connect/pages/{session_id}", [("set-cookie", cookie)])

    async def session_of(http: RawRequest) -> Session:
        session_id = http.path_params["session_id"]
        if string_problem(session_id):  # no such id; never a query the database refuses
            raise PageError(404, "This page is not valid", "Open the connect link the application gave you.")
        return await flow.session(session_id, cookies_of(dict(http.headers).get("cookie", "")))

    async def show(session: Session, errors: dict[str, str] | None = None, status: int = 200):
        options = await flow.options(session)
        listed = []
        for option in options:
            key, preset = option.provider.key, session.preset.get(option.provider.key, {})
            listed.append({
                "key": key, "name": option.provider.name, "oauth": option.oauth_app is not None,
                "forms": [{
                    "kind": kind.name, "title": _kind_title(key, kind.name),
                    "fields": [{"name": name, "label": label(name), "type": "password" if name in kind.secret else "text"}
                               for name in key_fields(kind, preset)],
                } for kind in option.forms],
            })
        targets = [session.redirect_url] + [
            o.oauth_app.authorization_url or o.provider.oauth.authorization_url for o in options if o.oauth_app]
        return html(status, "page.html", {
            "base": base, "title": "Connect an account", "session_id": session.id, "csrf_token": session.csrf_token,
            "end_user": session.end_user_name, "options": listed, "errors": errors or {},
            "expires_at": session.expires_at.strftime("%Y-%m-%d %H:%M"),
        }, form_targets=targets)

    async def show_page(http: RawRequest):
        return await show(await session_of(http))

    async def submit(http: RawRequest):
        session = await session_of(http)
        headers = dict(http.headers)
        origin = headers.get("origin")
        if origin is not None and origin != "null" and sessions.origin_of(origin) != own_origin:
            raise PageError(403, "This form came from elsewhere", "Use the connect page itself.")
        content_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        form = dict(parse_qsl(http.body.decode("utf-8", "replace"))) if content_type == (
            "application/x-www-form-urlencoded") else {}
        if not secrets.compare_digest(form.get("csrf_token", ""), session.csrf_token):
            raise PageError(403, "This form came from elsewhere", "Reload the connect page and try again.")
        integration = http.path_params["integration"]
        if form.get("method") == "oauth":
            return redirect(await flow.start_oauth(session, integration))
        typed = {k: v for k, v in form.items() if k not in ("csrf_token", "method", "kind")}
        try:
            if any(len(v) > MAX_TYPED_CHARS or any(ord(c) < 32 for c in v) for v in typed.values()):
                raise KeyRefused(f"What you typed is over {MAX_TYPED_CHARS} characters or holds control characters.")
            return redirect(await flow.submit_key(session, integration, form.get("kind", ""), typed))
        except KeyRefused as refused:
            return await show(session, {integration: str(refused)}, status=400)

    async def callback(http: RawRequest):
        query = dict(parse_qsl(http.query_string.decode("latin-1")))
        return redirect(await flow.callback(query, cookies_of(dict(http.headers).get("cookie", ""))))

    async def css(http: RawRequest):
        return stylesheet()

    def shown_as(summary: str, media_type: str = "text/html") -> RawDoc:  # in the OpenAPI document
        return RawDoc(summary, tag="Connect pages", authenticated=False, media_type=media_type)

    return [
        (("GET",), "/v1/connect", describe(page(open_page), shown_as(
            "Opens a connect session's page (`?session_token=`, once) in this browser: a redirect to it."))),
        (("GET",), "/v1/connect/pages/{session_id}", describe(page(show_page), shown_as(
            "The connect page: the session's integrations."))),
        (("POST",), "/v1/connect/pages/{session_id}/{integration}", describe(page(submit), shown_as(
            "A connect page's form (an API key, or on to the provider's OAuth consent)."))),
        (("GET",), "/v1/connect/callback", describe(page(callback), shown_as(
            "The provider's OAuth answer: a redirect back to the session's redirect_url."))),
        (("GET",), "/v1/connect/assets/connect.css", describe(page(css), shown_as(
            "The connect page's stylesheet.", "text/css"))),
    ]


def _kind_title(provider: str, kind: str) -> str:
    """How a form names its kind: "stripe_api_key" -> "an API key", "github_token" -> "a token"."""
    words = kind.removeprefix(provider + "_").split("_")
    name = " ".join(w.upper() if w == "api" else w for w in words)
    return ("an " if name[0].lower() in "aeiou" else "a ") + name
