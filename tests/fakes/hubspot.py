"""The HubSpot emulator: the calls Headwater makes, answered as HubSpot answers them (see HubSpotFake).

tests/test_fake_providers.py shows each call."""

from __future__ import annotations

import json
import operator
import uuid
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode

from emulators import Received
from fakes.core import EMAIL, Answer, FakeProvider, Item, Limit, Reject, parse_iso, query_params, route, utc


def hubspot_time(ms: int) -> str:
    return utc(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def hubspot_error(status: int, message: str, category: str, **extra) -> Answer:
    return Answer(status, {"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
                           "category": category, **extra})


class HubSpotFake(FakeProvider):
    """HubSpot CRM v3 objects: contacts, companies, deals.

    Objects: {"id","properties":{...},"createdAt","updatedAt","archived"} with times like
    "2024-01-15T10:30:00.123Z"; property values are strings. Reads return the object type's default
    properties plus those named in `properties` (a comma list, or a list in a search body); creates
    and updates answer with every stored property. DELETE archives (204): the object leaves the
    list and GET answers 404 unless `archived=true`. Contacts' emails are unique (409 CONFLICT).

    OAuth (v1): POST /oauth/v1/token, form-encoded `grant_type=refresh_token&refresh_token=...`
    with the refresh token an installed app holds (`fake.refresh_token`), answers a new access token
    (`{"token_type": "bearer", "refresh_token", "access_token", "expires_in": 1800}`), accepted from
    then on beside `fake.token`; any other refresh token, 400 `{"status": "BAD_REFRESH_TOKEN", ...}`.

    Lists: `limit` (max 100, default 10) and `after` (the `paging.next.after` of the previous page),
    ordered by id. Search: POST .../search {"filterGroups":[{"filters":[{"propertyName","operator",
    "value"}]}], "sorts":[{"propertyName","direction"}], "properties", "limit" (max 200), "after"};
    operators EQ NEQ LT LTE GT GTE BETWEEN IN NOT_IN HAS_PROPERTY NOT_HAS_PROPERTY CONTAINS_TOKEN
    NOT_CONTAINS_TOKEN; dates as epoch ms or ISO; at most 10,000 results reachable, as in HubSpot.
    """

    name = "hubspot"
    aliases = {"contact": "contacts", "company": "companies", "deal": "deals",
               "contacts": "contacts", "companies": "companies", "deals": "deals"}
    properties = {
        "contacts": ["email", "firstname", "lastname", "phone", "mobilephone", "company", "website", "jobtitle",
                     "lifecyclestage", "hs_lead_status", "city", "state", "country", "zip", "address"],
        "companies": ["name", "domain", "industry", "phone", "city", "state", "country", "numberofemployees",
                      "annualrevenue", "description", "lifecyclestage", "website"],
        "deals": ["dealname", "amount", "dealstage", "pipeline", "closedate", "dealtype", "description",
                  "hubspot_owner_id"],
    }
    defaults = {
        "contacts": ["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"],
        "companies": ["createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"],
        "deals": ["amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate",
                  "hs_object_id", "pipeline"],
    }
    read_only = {"createdate", "hs_object_id", "lastmodifieddate", "hs_lastmodifieddate"}
    dates = {"createdate", "lastmodifieddate", "hs_lastmodifieddate", "closedate"}
    numbers = {"amount", "numberofemployees", "annualrevenue"}

    def make_token(self) -> str:
        return "pat-na1-" + str(uuid.uuid4())

    def new_id(self, collection: str) -> str:
        return str(10_000_000_000 + next(self._serial))

    def __init__(self):
        super().__init__()
        self.refresh_token = str(uuid.uuid4())  # an installed app's: /oauth/v1/token trades it for access tokens
        self.refreshed_tokens: set[str] = set()  # the access tokens it bought

    def answer(self, request: Received) -> Answer:
        if request.path == "/oauth/v1/token":  # the app's own credentials go in the form, no bearer token
            return self.oauth_token(request)
        return super().answer(request)

    def authorized(self, request: Received) -> bool:
        sent = request.header("authorization")
        return super().authorized(request) or sent in {f"Bearer {token}" for token in self.refreshed_tokens}

    def budget_headers(self, limit: Limit) -> list[tuple[str, str]]:
        """developers.hubspot.com, "API usage guidelines and limits": the window's allowance."""
        return [("X-HubSpot-RateLimit-Max", str(limit.allowed)),
                ("X-HubSpot-RateLimit-Remaining", str(limit.remaining)),
                ("X-HubSpot-RateLimit-Interval-Milliseconds", str(round(limit.window * 1000)))]

    def rate_limited(self, limit: Limit) -> Answer:
        return hubspot_error(429, "You have reached your ten_secondly_rolling limit.", "RATE_LIMITS",
                             errorType="RATE_LIMIT", policyName="TEN_SECONDLY_ROLLING")

    def oauth_token(self, request: Received) -> Answer:
        form = dict(parse_qsl(request.body.decode(errors="replace")))
        if request.method != "POST" or form.get("grant_type") != "refresh_token" \
                or form.get("refresh_token") != self.refresh_token:
            return Answer(400, {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token",
                                "correlationId": str(uuid.uuid4())})
        access_token = "hubspot-oauth-" + str(uuid.uuid4())
        self.refreshed_tokens.add(access_token)
        return Answer(200, {"token_type": "bearer", "refresh_token": self.refresh_token,
                            "access_token": access_token, "expires_in": 1800})

    def unauthorized(self) -> Answer:
        return hubspot_error(401, "Authentication credentials not found. This API supports OAuth 2.0 authentication "
                                  "and you can find more details at "
                                  "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                             "INVALID_AUTHENTICATION")

    def error(self, status: int, message: str) -> Answer:
        if status == 429:
            return hubspot_error(429, "You have reached your secondly limit.", "RATE_LIMITS", errorType="RATE_LIMIT",
                                 policyName="SECONDLY")
        if status == 403:
            return hubspot_error(403, "This app hasn't been granted all required scopes to make this call. Read "
                                      "more about required scopes here: https://developers.hubspot.com/scopes.",
                                 "MISSING_SCOPES")
        categories = {400: "VALIDATION_ERROR", 404: "OBJECT_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        return hubspot_error(status, "resource not found" if status == 404 else message,
                             categories.get(status, "INTERNAL_ERROR"))

    def routes(self):
        base = "/crm/v3/objects/{object_type}"
        return [
            route("POST", base + "/search", self.search),
            route("GET", base, self.list),
            route("POST", base, self.create),
            route("GET", base + "/{id}", self.retrieve),
            route("PATCH", base + "/{id}", self.update),
            route("DELETE", base + "/{id}", self.archive),
        ]

    def sample(self, collection: str, k: int, given: dict) -> dict:
        return {"contacts": {"email": f"contact{k}@example.com", "firstname": f"First{k}", "lastname": f"Last{k}"},
                "companies": {"name": f"Company {k}", "domain": f"company{k}.example.com"},
                "deals": {"dealname": f"Deal {k}", "amount": str(1000 * k), "dealstage": "appointmentscheduled",
                          "pipeline": "default"}}[collection]

    def fields_of(self, obj: dict) -> dict:
        return obj["properties"] if "properties" in obj else super().fields_of(obj)

    def render(self, collection: str, item: Item, wanted: list[str] | None = None) -> dict:
        """`wanted`: the properties a read asked for (None: every stored one, as writes answer)."""
        stored = {k: None if v is None else str(v) for k, v in item.fields.items()}
        system = {"createdate": hubspot_time(item.created), "hs_object_id": item.id,
                  "hs_lastmodifieddate": hubspot_time(item.updated)}
        if collection == "contacts":
            system["lastmodifieddate"] = system["hs_lastmodifieddate"]
        every = {**stored, **system}
        names = every if wanted is None else [*self.defaults[collection], *wanted]
        obj = {"id": item.id, "properties": {name: every.get(name) for name in names},
               "createdAt": hubspot_time(item.created), "updatedAt": hubspot_time(item.updated),
               "archived": item.deleted is not None}
        if item.deleted is not None:
            obj["archivedAt"] = hubspot_time(item.deleted)
        return obj

    # -- handlers ------------------------------------------------------------------------

    def _type(self, object_type: str) -> str:
        if object_type not in self.properties:
            raise Reject(hubspot_error(400, f"Unable to infer object type from: {object_type}", "VALIDATION_ERROR"))
        return object_type

    def _find(self, object_type: str, id: str, archived: bool = False) -> Item:
        item = self.store.find(self._type(object_type), id)
        if item is None or (item.deleted is not None) != archived:
            raise Reject(self.error(404, "resource not found"))
        return item

    def _body(self, request: Received) -> dict:
        try:
            body = json.loads(request.body or b"null")
        except ValueError as exc:
            raise Reject(hubspot_error(400, f"Invalid input JSON: {exc}", "VALIDATION_ERROR")) from None
        if not isinstance(body, dict):
            raise Reject(hubspot_error(400, "Invalid input JSON: expected an object", "VALIDATION_ERROR"))
        return body

    def _properties(self, request: Received, object_type: str, id: str | None = None) -> dict:
        properties = self._body(request).get("properties")
        if not isinstance(properties, dict):
            raise Reject(hubspot_error(400, "Invalid input JSON: `properties` must be an object",
                                       "VALIDATION_ERROR"))
        invalid = []
        for name, value in properties.items():
            problem = None
            if name in self.read_only:
                problem = ("READ_ONLY_VALUE", f'"{name}" is a read only property; its value cannot be set.')
            elif name not in self.properties[object_type]:
                problem = ("PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
            elif name == "email" and value and not EMAIL.match(str(value)):
                problem = ("INVALID_EMAIL", f"Email address {value} is invalid")
            elif name in self.numbers and value not in (None, ""):
                try:
                    float(value)
                except (TypeError, ValueError):
                    problem = ("INVALID_FLOAT", f"{value} was not a valid number.")
            if problem:
                invalid.append({"isValid": False, "message": problem[1], "error": problem[0], "name": name,
                                "localizedErrorMessage": problem[1]})
        if invalid:
            reasons = json.dumps(invalid, separators=(",", ":"))
            raise Reject(hubspot_error(400, f"Property values were not valid: {reasons}", "VALIDATION_ERROR"))
        email = properties.get("email")
        if object_type == "contacts" and email:
            for other in self.store.items("contacts"):
                if other.id != id and str(other.fields.get("email", "")).lower() == str(email).lower():
                    raise Reject(hubspot_error(409, f"Contact already exists. Existing ID: {other.id}", "CONFLICT"))
        return {k: None if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
                for k, v in properties.items()}

    @staticmethod
    def _wanted(params: dict) -> list[str]:
        return [p for p in params.get("properties", "").split(",") if p]

    def create(self, request: Received, object_type: str) -> Answer:
        item = self._insert(object_type, self._properties(request, self._type(object_type)))
        return Answer(201, self.render(object_type, item))

    def retrieve(self, request: Received, object_type: str, id: str) -> Answer:
        params = query_params(request)
        item = self._find(object_type, id, archived=params.get("archived") == "true")
        return Answer(200, self.render(object_type, item, self._wanted(params)))

    def update(self, request: Received, object_type: str, id: str) -> Answer:
        item = self._find(object_type, id)
        changes = self._properties(request, object_type, id)
        self._modify(object_type, item, self.merge(object_type, item.fields, changes))
        return Answer(200, self.render(object_type, item))

    def archive(self, request: Received, object_type: str, id: str) -> Answer:
        item = self.store.find(self._type(object_type), id)
        if item is not None and item.deleted is None:
            self._remove(object_type, item)
        return Answer(204)  # archiving an archived or unknown id also answers 204, as HubSpot does

    @staticmethod
    def _limit(value, cap: int) -> int:
        if not str(value).isdigit() or not 1 <= int(value) <= cap:
            raise Reject(hubspot_error(400, f"limit must be between 1 and {cap}", "VALIDATION_ERROR"))
        return int(value)

    def list(self, request: Received, object_type: str) -> Answer:
        """Ordered by id; `after` is the id to start from (the last one seen plus one, as HubSpot gives it)."""
        params = query_params(request)
        limit = self._limit(params.get("limit", "10"), 100)
        archived = params.get("archived") == "true"
        after = int(params["after"]) if params.get("after", "").isdigit() else 0
        remaining = sorted((it for it in self.store.items(self._type(object_type), deleted=True)
                            if (it.deleted is not None) == archived and int(it.id) >= after),
                           key=lambda it: int(it.id))
        body = {"results": [self.render(object_type, it, self._wanted(params)) for it in remaining[:limit]]}
        if len(remaining) > limit:
            next_after = str(int(remaining[limit - 1].id) + 1)
            link = f"{self.base_url}{request.path}?{urlencode({**params, 'after': next_after})}"
            body["paging"] = {"next": {"after": next_after, "link": link}}
        return Answer(200, body)

    def search(self, request: Received, object_type: str) -> Answer:
        """Filter groups are OR-ed, the filters within one AND-ed; `after` is an offset into the results."""
        body = self._body(request)
        limit = self._limit(body.get("limit", 10), 200)
        after = int(body["after"]) if str(body.get("after", "")).isdigit() else 0
        if after >= 10_000:
            raise Reject(hubspot_error(400, "Search results are limited to 10,000: narrow the filters",
                                       "VALIDATION_ERROR"))
        items = self.store.items(self._type(object_type))
        groups = [[self._filter(object_type, f) for f in group.get("filters", [])]
                  for group in body.get("filterGroups") or []]
        if groups:
            items = [it for it in items if any(all(test(it) for test in group) for group in groups)]
        items.sort(key=lambda it: int(it.id))
        for sort in reversed(body.get("sorts") or []):
            name = sort if isinstance(sort, str) else sort.get("propertyName")
            descending = not isinstance(sort, str) and sort.get("direction") == "DESCENDING"
            items.sort(key=lambda it: self._sort_key(object_type, it, name), reverse=descending)
        wanted = body.get("properties") or []
        answer = {"total": len(items),
                  "results": [self.render(object_type, it, wanted) for it in items[after:after + limit]]}
        if len(items) > after + limit:
            answer["paging"] = {"next": {"after": str(after + limit)}}
        return Answer(200, answer)

    @staticmethod
    def _value(object_type: str, item: Item, name: str):
        """A property's value without rendering the object (a search scans every one): times in epoch ms."""
        system = {"createdate": item.created, "hs_lastmodifieddate": item.updated, "hs_object_id": item.id}
        if object_type == "contacts":
            system["lastmodifieddate"] = item.updated
        return system[name] if name in system else item.fields.get(name)

    def _sort_key(self, object_type: str, item: Item, name: str):
        value = self._value(object_type, item, name)
        return (value is None, self._comparable(name, value) if value is not None else 0)

    def _comparable(self, name: str, value):
        if isinstance(value, int):  # a time from _value
            return value
        if name in self.dates:
            text = str(value)
            return int(text) if text.isdigit() else parse_iso(text)
        if name in self.numbers or name == "hs_object_id":
            return float(value)
        return str(value).lower()

    def _filter(self, object_type: str, flt: dict) -> Callable[[Item], bool]:
        """One search filter as a test of an object."""
        name, op = flt.get("propertyName"), flt.get("operator", "EQ")
        value_of = lambda item: self._value(object_type, item, name)  # noqa: E731
        if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
            return lambda item: (value_of(item) not in (None, "")) == (op == "HAS_PROPERTY")
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            token = str(flt.get("value", "")).lower()
            return lambda item: (token in str(value_of(item) or "").lower()) == (op == "CONTAINS_TOKEN")
        try:
            if op in ("IN", "NOT_IN"):
                values = [self._comparable(name, v) for v in flt.get("values", [])]
                test = lambda mine: (mine in values) == (op == "IN")  # noqa: E731
            elif op == "BETWEEN":
                low, high = self._comparable(name, flt.get("value")), self._comparable(name, flt.get("highValue"))
                test = lambda mine: low <= mine <= high  # noqa: E731
            else:
                theirs = self._comparable(name, flt.get("value"))
                compare = {"EQ": operator.eq, "NEQ": operator.ne, "LT": operator.lt, "LTE": operator.le,
                           "GT": operator.gt, "GTE": operator.ge}
                if op not in compare:
                    raise Reject(hubspot_error(400, f"Unknown operator {op}", "VALIDATION_ERROR"))
                test = lambda mine: compare[op](mine, theirs)  # noqa: E731
        except (TypeError, ValueError):
            raise Reject(hubspot_error(400, f"Invalid value for filter on {name}", "VALIDATION_ERROR")) from None

        def matches(item: Item) -> bool:
            value = value_of(item)
            if value in (None, ""):  # an object without the property matches only the negative operators
                return op in ("NEQ", "NOT_IN")
            return test(self._comparable(name, value))

        return matches
