"""The console's routes: raw routes of the REST bridge answering HTML and forms.

    GET  /console                       to the syncs (or the sign-in form)
    GET  /console/sign-in, POST         an API token in, the session cookie out
    POST /console/sign-out              the cookie cleared
    GET  /console/syncs[/{id}]          health, each collection's backfill, records, a progress bar
    GET  /console/credentials[/{id}]    health, budget use, the last hour's requests and waits
    GET  /console/consumers[/{id}]      pending, ack pending, parked; POST .../redeliver
    GET  /console/calls                 recent upstream calls

Every page reads through the servicers the API runs, called in-process with the session's token as
the call's `authorization`, exactly as the REST bridge calls them: the same auth, the same checks
of the request (`headwater.inputs`), the same organisation scoping (another organisation's id
answers 404 here too).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from urllib.parse import parse_qsl, urlencode

import grpc
import jinja2

# headwater.services first: headwater.connect.flow imports it, and it imports headwater.connect.flow.
from headwater.services._common import MAX_PAGE_SIZE, Backend  # isort: skip
from headwater.connect.flow import cookies_of
from headwater.connect.pages import COMMON_HEADERS, content_security_policy
from headwater.console import rows
from headwater.console.charts import hour_chart
from headwater.console.session import SESSION_COOKIE, SESSION_SECONDS, SIGN_IN_COOKIE, SIGN_IN_SECONDS, ConsoleSessions
from headwater.errors import ApiError, raise_if_invalid
from headwater.inputs import request_violations
from headwater.rest import RawRequest, RawResponse, RawRoute, RestContext, message_json
from headwater.rest.openapi import RawDoc, describe
from headwater.services.consumers import ConsumerServicer
from headwater.services.credentials import CredentialServicer
from headwater.services.syncs import SyncServicer
from headwater.store import Org
from headwater.v1 import consumer_pb2, credential_pb2, sync_pb2

REFRESH_SECONDS = 2  # a page showing a running backfill reloads itself this often
CALL_SECONDS = 10.0  # the deadline of each servicer call a page makes

# The connect page's headers, but for the referrer: "same-origin", since browsers send `Origin: null`
# on a form's POST under "no-referrer", and the console checks that its forms come from itself.
HEADERS = [*((name, value) for name, value in COMMON_HEADERS if name != "referrer-policy"),
           ("referrer-policy", "same-origin")]

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("headwater.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
STYLESHEET = resources.files("headwater.console").joinpath("templates", "console.css").read_bytes()


class _Answer(Exception):
    """Stops a handler with this answer (a sign-in redirect, a 404 page)."""

    def __init__(self, response: RawResponse):
        super().__init__(response.status)
        self.response = response


class Console:
    def __init__(self, backend: Backend, services, secret_key: bytes, public_url: str):
        by_type = {type(servicer): servicer for _, servicer, _ in services}
        self.syncs: SyncServicer = by_type[SyncServicer]
        self.credentials: CredentialServicer = by_type[CredentialServicer]
        self.consumers: ConsumerServicer = by_type[ConsumerServicer]
        self.backend = backend
        self.sessions = ConsoleSessions(secret_key, public_url)
        self.base = public_url.rstrip("/")
        self.root = self.sessions.path  # "/console" under the public URL's path

    # --- rendering ---------------------------------------------------------------------------------

    def page(self, status: int, template: str, context: dict, headers=()) -> RawResponse:
        body = _templates.get_template(template).render(root=self.root, **context).encode()
        return RawResponse(status, [
            ("content-type", "text/html; charset=utf-8"), ("content-security-policy", content_security_policy()),
            *HEADERS, *headers,
        ], body)

    def message(self, status: int, title: str, text: str, signed_in: dict | None = None) -> RawResponse:
        return self.page(status, "message.html", {"title": title, "text": text, "session": signed_in})

    def redirect(self, path: str, headers=()) -> RawResponse:
        return RawResponse(303, [("location", self.base + path), *HEADERS, *headers])

    # --- the session -------------------------------------------------------------------------------

    def signed_in(self, http: RawRequest) -> dict:
        """The session of the request's cookie, else a redirect to the sign-in form."""
        cookie = cookies_of(dict(http.headers).get("cookie", "")).get(SESSION_COOKIE, "")
        token = self.sessions.token(cookie) if cookie else None
        if token is None:
            raise _Answer(self.redirect("/console/sign-in", [self.sessions.clear_cookie(SESSION_COOKIE)]))
        return {"token": token, "csrf_token": self.sessions.csrf_token(cookie)}

    def context(self, session: dict) -> RestContext:
        return RestContext([("authorization", f"Bearer {session['token']}")], time.monotonic() + CALL_SECONDS)

    async def call(self, session: dict, method: Callable[..., Awaitable], request):
        """`method` (a servicer's) as the REST bridge calls it: the request checked first; a token
        no longer valid signs the browser out, NOT_FOUND is this console's 404 page."""
        try:
            raise_if_invalid(request_violations(request))
            return await method(request, self.context(session))
        except ApiError as error:
            if error.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise _Answer(self.message(404, "Not found", error.message, session)) from None
            self.signed_out_if_refused(error)
            raise

    def signed_out_if_refused(self, error: ApiError) -> None:
        """A token refused (revoked since the sign-in): to the sign-in form, the cookie cleared."""
        if error.code == grpc.StatusCode.UNAUTHENTICATED:
            raise _Answer(self.redirect("/console/sign-in", [self.sessions.clear_cookie(SESSION_COOKIE)])) from None

    async def org_name(self, session: dict) -> str:
        try:
            org_id = await self.backend.auth.org_id(self.context(session))
        except ApiError as error:
            self.signed_out_if_refused(error)
            raise
        session["org_id"] = org_id
        return await self.backend.store.run(lambda: Org.get_by_id(org_id).name)

    def form_of(self, http: RawRequest) -> dict[str, str]:
        """A POSTed form's fields, after the origin check (the CSRF token is the caller's to check)."""
        headers = dict(http.headers)
        if not self.sessions.same_origin(headers):
            raise _Answer(self.message(403, "This form came from elsewhere", "Use the console's own pages."))
        content_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return {}
        return dict(parse_qsl(http.body.decode("utf-8", "replace")))

    def checked_form(self, http: RawRequest, session: dict) -> dict[str, str]:
        form = self.form_of(http)
        if not self.sessions.matches(form.get("csrf_token", ""), session["csrf_token"]):
            raise _Answer(self.message(403, "This form came from elsewhere", "Reload the page and try again.", session))
        return form

    # --- sign in and out ---------------------------------------------------------------------------

    def sign_in_form(self, status: int = 200, error: str = "") -> RawResponse:
        if not self.sessions.can_sign_in:
            return self.message(403, "Sign in over https", (
                "This console is served over plain http on an address that is not loopback, where an API token "
                "would cross the network in the clear. Serve it over https (HEADWATER_PUBLIC_URL=https://...)."))
        value = self.sessions.new_sign_in_token()
        return self.page(status, "sign_in.html", {"title": "Sign in", "csrf_token": value, "error": error,
                                                  "session": None},
                         [self.sessions.set_cookie(SIGN_IN_COOKIE, value, SIGN_IN_SECONDS)])

    async def show_sign_in(self, http: RawRequest) -> RawResponse:
        return self.sign_in_form()

    async def sign_in(self, http: RawRequest) -> RawResponse:
        form = self.form_of(http)
        expected = cookies_of(dict(http.headers).get("cookie", "")).get(SIGN_IN_COOKIE, "")
        if not self.sessions.can_sign_in:
            return self.sign_in_form()
        if not self.sessions.matches(form.get("csrf_token", ""), expected):
            return self.message(403, "This form came from elsewhere", "Reload the sign-in page and try again.")
        token = form.get("token", "").strip()
        try:
            await self.backend.auth.org_id(self.context({"token": token}))
        except ApiError:
            return self.sign_in_form(401, "That is not a valid API token.")
        cookie = self.sessions.seal(token)
        return self.redirect("/console/syncs", [
            self.sessions.set_cookie(SESSION_COOKIE, cookie, SESSION_SECONDS), self.sessions.clear_cookie(SIGN_IN_COOKIE)])

    async def sign_out(self, http: RawRequest) -> RawResponse:
        self.checked_form(http, self.signed_in(http))
        return self.redirect("/console/sign-in", [self.sessions.clear_cookie(SESSION_COOKIE)])

    async def home(self, http: RawRequest) -> RawResponse:
        self.signed_in(http)
        return self.redirect("/console/syncs")

    # --- pages -------------------------------------------------------------------------------------

    async def _view(self, http: RawRequest, template: str, title: str, fill) -> RawResponse:
        session = self.signed_in(http)
        session["org"] = await self.org_name(session)
        context = await fill(session)  # may name the page itself ("title")
        return self.page(200, template, {"title": title, "session": session, **context})

    async def all_pages(self, session: dict, method, request_class, **fields) -> list:
        """Every object of a list method, page after page."""
        found, token = [], ""
        while True:
            answer = await self.call(session, method, request_class(page_size=MAX_PAGE_SIZE, page_token=token, **fields))
            found += answer.data
            token = answer.next_page_token
            if not token:
                return found

    async def list_syncs(self, http: RawRequest) -> RawResponse:
        async def fill(session):
            syncs = [message_json(s) for s in await self.all_pages(session, self.syncs.ListSyncs, sync_pb2.ListSyncsRequest)]
            listed = [{**rows.sync_row(s), "progress": rows.backfill_summary(s["progress"])} for s in syncs]
            running = any(s["backfill"] != "done" for s in listed)
            return {"syncs": listed, "refresh": REFRESH_SECONDS if running else None, "columns": rows.SYNC_COLUMNS}

        return await self._view(http, "syncs.html", "Syncs", fill)

    async def show_sync(self, http: RawRequest) -> RawResponse:
        async def fill(session):
            answer = await self.call(session, self.syncs.GetSync, sync_pb2.GetSyncRequest(id=http.path_params["id"]))
            sync = message_json(answer.sync)
            row = rows.sync_row(sync)
            collections = [{**rows.collection_row(p), "last_error": p["last_error"]} for p in sync["progress"]]
            running = row["backfill"] != "done"
            return {"title": f"Sync {row['name'] or row['id']}", "sync": row, "collections": collections, "progress": rows.backfill_summary(sync["progress"]),
                    "last_error": sync["health"]["last_error"], "refresh": REFRESH_SECONDS if running else None}

        return await self._view(http, "sync.html", "Sync", fill)

    async def budget(self, session: dict, credential_id: str) -> dict | None:
        try:
            answer = await self.call(session, self.credentials.GetCredentialBudget,
                                     credential_pb2.GetCredentialBudgetRequest(id=credential_id))
        except ApiError:  # the shared pacer unreachable, a credential no longer usable: shown as unknown
            return None
        return message_json(answer)

    async def list_credentials(self, http: RawRequest) -> RawResponse:
        recent = self.backend.upstream.recent

        async def fill(session):
            found = await self.all_pages(session, self.credentials.ListCredentials, credential_pb2.ListCredentialsRequest)
            listed = []
            for credential in found:
                row = rows.credential_row(message_json(credential), await self.budget(session, credential.id))
                listed.append({**row, "chart": hour_chart(recent.minutes(credential.id))})
            return {"credentials": listed, "columns": rows.CREDENTIAL_COLUMNS}

        return await self._view(http, "credentials.html", "Credentials", fill)

    async def show_credential(self, http: RawRequest) -> RawResponse:
        recent = self.backend.upstream.recent

        async def fill(session):
            credential_id = http.path_params["id"]
            answer = await self.call(session, self.credentials.GetCredential,
                                     credential_pb2.GetCredentialRequest(id=credential_id))
            credential = message_json(answer.credential)
            budget = await self.budget(session, credential_id)
            row = rows.credential_row(credential, budget)
            return {"title": f"Credential {row['name'] or row['id']}", "credential": row, "budget": budget,
                    "last_error": (credential["health"] or {}).get("last_error"),
                    "chart": hour_chart(recent.minutes(credential_id)),
                    "calls": [_call_row(c) for c in recent.calls(session["org_id"], credential_id)]}

        return await self._view(http, "credential.html", "Credential", fill)

    async def list_consumers(self, http: RawRequest) -> RawResponse:
        async def fill(session):
            found = await self.all_pages(session, self.consumers.ListConsumers, consumer_pb2.ListConsumersRequest)
            return {"consumers": [rows.consumer_row(message_json(c)) for c in found], "columns": rows.CONSUMER_COLUMNS}

        return await self._view(http, "consumers.html", "Consumers", fill)

    async def show_consumer(self, http: RawRequest) -> RawResponse:
        async def fill(session):
            consumer_id = http.path_params["id"]
            answer = await self.call(session, self.consumers.GetConsumer, consumer_pb2.GetConsumerRequest(id=consumer_id))
            parked = await self.call(session, self.consumers.ListParkedMessages,
                                     consumer_pb2.ListParkedMessagesRequest(id=consumer_id, page_size=MAX_PAGE_SIZE))
            query = dict(parse_qsl(http.query_string.decode("latin-1")))
            consumer = rows.consumer_row(message_json(answer.consumer))
            return {"title": f"Consumer {consumer['name'] or consumer['id']}", "consumer": consumer,
                    "parked": [message_json(m) for m in parked.data],
                    "more_parked": bool(parked.next_page_token),
                    "redelivered": query.get("redelivered", "") if query.get("redelivered", "").isdigit() else ""}

        return await self._view(http, "consumer.html", "Consumer", fill)

    async def redeliver(self, http: RawRequest) -> RawResponse:
        session = self.signed_in(http)
        form = self.checked_form(http, session)
        consumer_id = http.path_params["id"]
        ids = [form["message_id"]] if form.get("message_id") else []
        answer = await self.call(session, self.consumers.RedeliverParkedMessages,
                                 consumer_pb2.RedeliverParkedMessagesRequest(id=consumer_id, message_ids=ids))
        return self.redirect(f"/console/consumers/{consumer_id}?" + urlencode({"redelivered": answer.redelivered}))

    async def list_calls(self, http: RawRequest) -> RawResponse:
        async def fill(session):
            return {"calls": [_call_row(c) for c in self.backend.upstream.recent.calls(session["org_id"], limit=200)]}

        return await self._view(http, "calls.html", "Recent upstream calls", fill)

    async def stylesheet(self, http: RawRequest) -> RawResponse:
        return RawResponse(200, [("content-type", "text/css; charset=utf-8"), ("cache-control", "public, max-age=3600"),
                                 ("x-content-type-options", "nosniff")], STYLESHEET)

    # --- the routes --------------------------------------------------------------------------------

    def routes(self) -> list[RawRoute]:
        def answering(handler):
            async def handle(http: RawRequest) -> RawResponse:
                try:
                    return await handler(http)
                except _Answer as answer:
                    return answer.response
            return handle

        def shown_as(summary: str, media_type: str = "text/html") -> RawDoc:  # in the OpenAPI document
            return RawDoc(summary, tag="Console", authenticated=False, media_type=media_type)

        table = [
            ("GET", "/console", self.home, "The console: on to its syncs, or to the sign-in form."),
            ("GET", "/console/sign-in", self.show_sign_in, "The console's sign-in form (an API token)."),
            ("POST", "/console/sign-in", self.sign_in, "Signs in with an API token: the session cookie."),
            ("POST", "/console/sign-out", self.sign_out, "Signs out: the session cookie cleared."),
            ("GET", "/console/syncs", self.list_syncs, "The organisation's syncs: health, backfill, records."),
            ("GET", "/console/syncs/{id}", self.show_sync, "A sync: each collection's backfill and health."),
            ("GET", "/console/credentials", self.list_credentials, "Credentials: health, budget use, the last hour."),
            ("GET", "/console/credentials/{id}", self.show_credential, "A credential: budget windows, recent calls."),
            ("GET", "/console/consumers", self.list_consumers, "Consumers: pending, ack pending, parked."),
            ("GET", "/console/consumers/{id}", self.show_consumer, "A consumer: its parked messages."),
            ("POST", "/console/consumers/{id}/redeliver", self.redeliver, "Delivers parked messages again."),
            ("GET", "/console/calls", self.list_calls, "Recent upstream calls of this process."),
        ]
        routes: list[RawRoute] = [((method,), path, describe(answering(handler), shown_as(summary)))
                                  for method, path, handler, summary in table]
        routes.append((("GET",), "/console/assets/console.css",
                       describe(answering(self.stylesheet), shown_as("The console's stylesheet.", "text/css"))))
        return routes


def _call_row(call) -> dict:
    return {
        "at": datetime.datetime.fromtimestamp(call.at, datetime.UTC).strftime("%H:%M:%S"),
        "method": call.method, "host": call.host, "path": call.path, "status": call.status,
        "wait_ms": call.wait_ms, "upstream_ms": call.upstream_ms, "credential_id": call.credential_id,
    }


def console_routes(backend: Backend, services, secret_key: bytes, public_url: str) -> list[RawRoute]:
    """The console's routes, for `build_app(raw_routes=...)`."""
    return Console(backend, services, secret_key, public_url).routes()
