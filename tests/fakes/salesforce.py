"""The Salesforce emulator: the calls Headwater makes, answered as Salesforce answers them (see SalesforceFake).

tests/test_fake_providers.py shows each call."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable

from emulators import Received
from fakes.core import (
    EMAIL, Answer, FakeProvider, Item, Limit, Reject, parse_iso, query_params, random_token, route, utc,
)


def salesforce_time(ms: int) -> str:
    return utc(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+0000"


def salesforce_error(status: int, code: str, message: str, fields: list[str] | None = None) -> Answer:
    entry = {"message": message, "errorCode": code}
    if fields is not None:
        entry["fields"] = fields
    return Answer(status, [entry])


def _case_safe(id15: str) -> str:
    """Salesforce's 18-character id: 3 letters telling which characters of the 15 are upper case."""
    letters = string.ascii_uppercase + "012345"
    suffix = ""
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        suffix += letters[sum(1 << i for i, ch in enumerate(chunk) if ch.isupper())]
    return id15 + suffix


_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


class SalesforceFake(FakeProvider):
    """Salesforce REST API v59.0 (any vNN.N path works): sObjects CRUD, SOQL query, deleted/updated.

    Records carry attributes, Id, their fields (null when unset), IsDeleted, CreatedDate,
    LastModifiedDate and SystemModstamp ("2024-01-15T10:30:00.000+0000"). POST answers 201
    {"id","success":true,"errors":[]}; PATCH and DELETE answer 204 with no body. Errors are a list:
    [{"message","errorCode","fields"}]. A deleted record answers 404 ENTITY_IS_DELETED.

    SOQL: `SELECT f1, f2 | FIELDS(ALL) FROM T [WHERE f op literal [AND ...]] [ORDER BY f [ASC|DESC], ...]
    [LIMIT n]` with op one of = != > >= < <= and literals of datetimes, 'strings', numbers, true,
    false, null. Pages of `query_batch_size` records (2000, as Salesforce; the header
    `Sforce-Query-Options: batchSize=N` asks for fewer), the rest behind nextRecordsUrl
    (/query/<locator>-<offset>), a snapshot taken when the query ran. /queryAll includes deleted records.
    """

    name = "salesforce"
    id_field = "Id"
    types = {
        "Contact": {"prefix": "003", "required": "LastName",
                    "fields": ["AccountId", "FirstName", "LastName", "Email", "Phone", "MobilePhone", "Title",
                               "Department", "Description", "LeadSource", "MailingCity", "MailingCountry"]},
        "Account": {"prefix": "001", "required": "Name",
                    "fields": ["Name", "Type", "Industry", "Phone", "Website", "Description", "BillingCity",
                               "BillingCountry", "NumberOfEmployees", "AnnualRevenue"]},
        "Task": {"prefix": "00T", "required": "Subject",
                 "fields": ["Subject", "Status", "Priority", "WhoId", "WhatId", "ActivityDate", "Description"]},
    }
    defaults = {"Task": {"Status": "Not Started", "Priority": "Normal"}}
    system_fields = ["Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp"]
    date_fields = {"CreatedDate", "LastModifiedDate", "SystemModstamp"}
    aliases = {"contact": "Contact", "account": "Account", "task": "Task",
               "Contact": "Contact", "Account": "Account", "Task": "Task"}
    query_batch_size = 2000

    def __init__(self):
        super().__init__()
        self._cursors: dict[str, tuple[list[dict], int]] = {}  # locator -> (rows, batch size)

    def make_token(self) -> str:
        return "00D" + random_token(12) + "!" + random_token(40)

    def new_id(self, collection: str) -> str:
        n = next(self._serial) + 100_000
        digits = ""
        while n:
            n, r = divmod(n, 62)
            digits = _BASE62[r] + digits
        return _case_safe(self.types[collection]["prefix"] + "5g0000" + digits.rjust(6, "0"))

    def unauthorized(self) -> Answer:
        return salesforce_error(401, "INVALID_SESSION_ID", "Session expired or invalid")

    def budget_headers(self, limit: Limit) -> list[tuple[str, str]]:
        """The org's API allowance (a rolling 24 h in Salesforce; `window` here): used/allowed."""
        return [("Sforce-Limit-Info", f"api-usage={limit.used}/{limit.allowed}")]

    def rate_limited(self, limit: Limit) -> Answer:
        return salesforce_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")

    def error(self, status: int, message: str) -> Answer:
        """Salesforce has no 429: its API limit is 403 REQUEST_LIMIT_EXCEEDED, which fail_next gives
        with body=[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]."""
        known = {403: ("INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id"),
                 404: ("NOT_FOUND", "The requested resource does not exist"),
                 503: ("SERVER_UNAVAILABLE", "Server is unavailable; please retry")}
        code, message = known.get(status, ("BAD_REQUEST" if status < 500 else "UNKNOWN_EXCEPTION", message))
        return salesforce_error(status, code, message)

    def routes(self):
        data = "/services/data/{version}"
        return [
            route("GET", data + "/query", lambda r, version: self.query(r, version, deleted=False)),
            route("GET", data + "/queryAll", lambda r, version: self.query(r, version, deleted=True)),
            route("GET", data + "/query/{locator}", lambda r, version, locator: self.more(version, locator)),
            route("GET", data + "/queryAll/{locator}", lambda r, version, locator: self.more(version, locator)),
            route("GET", data + "/sobjects/{sobject}/deleted", self.get_deleted),
            route("GET", data + "/sobjects/{sobject}/updated", self.get_updated),
            route("POST", data + "/sobjects/{sobject}", self.create),
            route("GET", data + "/sobjects/{sobject}/{id}", self.retrieve),
            route("PATCH", data + "/sobjects/{sobject}/{id}", self.update),
            route("DELETE", data + "/sobjects/{sobject}/{id}", self.remove),
        ]

    def known_collections(self):
        return set(self.types)

    def sample(self, collection: str, k: int, given: dict) -> dict:
        return {"Contact": {"FirstName": f"First{k}", "LastName": f"Last{k}", "Email": f"contact{k}@example.com"},
                "Account": {"Name": f"Account {k}"},
                "Task": {"Subject": f"Task {k}"}}[collection]

    def render(self, collection: str, item: Item, version: str = "v59.0") -> dict:
        spec = self.types[collection]
        url = f"/services/data/{version}/sobjects/{collection}/{item.id}"
        record = {"attributes": {"type": collection, "url": url}, "Id": item.id}
        record.update({name: None for name in spec["fields"]})
        record.update(self.defaults.get(collection, {}))
        record.update(item.fields)
        if collection == "Contact":
            record["Name"] = " ".join(filter(None, [record["FirstName"], record["LastName"]]))
        record.update({"IsDeleted": item.deleted is not None, "CreatedDate": salesforce_time(item.created),
                       "LastModifiedDate": salesforce_time(item.updated),
                       "SystemModstamp": salesforce_time(item.updated)})
        return record

    # -- handlers ------------------------------------------------------------------------

    def _type(self, sobject: str) -> dict:
        if sobject not in self.types:
            raise Reject(salesforce_error(404, "NOT_FOUND", "The requested resource does not exist"))
        return self.types[sobject]

    def _find(self, sobject: str, id: str) -> Item:
        self._type(sobject)
        item = self.store.find(sobject, id)
        if item is None:
            raise Reject(salesforce_error(404, "NOT_FOUND", "The requested resource does not exist"))
        if item.deleted:
            raise Reject(salesforce_error(404, "ENTITY_IS_DELETED", "entity is deleted", []))
        return item

    def _fields(self, request: Received, sobject: str, creating: bool, current: dict) -> dict:
        spec = self._type(sobject)
        try:
            fields = json.loads(request.body or b"null")
        except ValueError:
            fields = None
        if not isinstance(fields, dict):
            raise Reject(salesforce_error(400, "JSON_PARSER_ERROR", "The request body must be a JSON object"))
        read_only = [name for name in fields if name in self.system_fields or (sobject == "Contact" and name == "Name")]
        if read_only:
            raise Reject(salesforce_error(400, "INVALID_FIELD_FOR_INSERT_UPDATE",
                                          f"Unable to create/update fields: {', '.join(read_only)}. Please check the "
                                          "security settings of this field and verify that it is read/write for "
                                          "your profile or permission set.", read_only))
        canonical = {known.lower(): known for known in spec["fields"]}  # field names ignore case
        for name in list(fields):
            if name.lower() in canonical:
                fields[canonical[name.lower()]] = fields.pop(name)
            elif not name.endswith("__c"):
                raise Reject(salesforce_error(400, "INVALID_FIELD",
                                              f"No such column '{name}' on sobject of type {sobject}", []))
        email = fields.get("Email")
        if email and not EMAIL.match(str(email)):
            raise Reject(salesforce_error(400, "INVALID_EMAIL_ADDRESS", "Invalid email", ["Email"]))
        required = spec["required"]
        if (creating or required in fields) and not {**current, **fields}.get(required):
            raise Reject(salesforce_error(400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{required}]",
                                          [required]))
        return fields

    def create(self, request: Received, version: str, sobject: str) -> Answer:
        fields = self._fields(request, sobject, True, {})
        item = self._insert(sobject, fields)
        return Answer(201, {"id": item.id, "success": True, "errors": []})

    def retrieve(self, request: Received, version: str, sobject: str, id: str) -> Answer:
        record = self.render(sobject, self._find(sobject, id), version)
        wanted = query_params(request).get("fields")
        if wanted:
            names = [name.strip() for name in wanted.split(",")]
            record = {"attributes": record["attributes"], **{name: record.get(name) for name in names}}
        return Answer(200, record)

    def update(self, request: Received, version: str, sobject: str, id: str) -> Answer:
        item = self._find(sobject, id)
        fields = self._fields(request, sobject, False, item.fields)
        self._modify(sobject, item, self.merge(sobject, item.fields, fields))
        return Answer(204)

    def remove(self, request: Received, version: str, sobject: str, id: str) -> Answer:
        self._remove(sobject, self._find(sobject, id))
        return Answer(204)

    def _window(self, request: Received) -> tuple[int, int]:
        params = query_params(request)
        try:
            return parse_iso(params["start"]), parse_iso(params["end"])
        except KeyError as missing:
            raise Reject(salesforce_error(400, "MISSING_ARGUMENT", f"Missing required parameter: {missing}")) from None
        except ValueError:
            raise Reject(salesforce_error(400, "INVALID_DATE_FORMAT",
                                          "start and end must be ISO-8601 date-times, e.g. 2024-01-01T00:00:00+00:00"
                                          )) from None

    def get_deleted(self, request: Received, version: str, sobject: str) -> Answer:
        """Deletions in [start, end]. (Salesforce rounds latestDateCovered down to the minute, so a sync
        sees a deletion up to a minute late; here it is `end` or now, to keep tests quick.)"""
        self._type(sobject)
        start, end = self._window(request)
        end = min(end, self.store.now())
        found = [it for c, it in self.store.deletions if c == sobject and start <= it.deleted <= end]
        earliest = min((it.deleted for c, it in self.store.deletions if c == sobject), default=start)
        return Answer(200, {"deletedRecords": [{"id": it.id, "deletedDate": salesforce_time(it.deleted)}
                                               for it in found],
                            "earliestDateAvailable": salesforce_time(earliest),
                            "latestDateCovered": salesforce_time(end)})

    def get_updated(self, request: Received, version: str, sobject: str) -> Answer:
        self._type(sobject)
        start, end = self._window(request)
        end = min(end, self.store.now())
        ids = [it.id for it in self.store.items(sobject) if start <= it.updated <= end]
        return Answer(200, {"ids": ids, "latestDateCovered": salesforce_time(end)})

    # -- SOQL ----------------------------------------------------------------------------

    _SOQL = re.compile(r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<object>\w+)"
                       r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+ORDER\s+BY\s+(?P<order>.+?))?"
                       r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$", re.I | re.S)
    _CONDITION = re.compile(r"^\s*(\w+)\s*(>=|<=|!=|=|>|<)\s*(.+?)\s*$", re.S)

    def query(self, request: Received, version: str, deleted: bool) -> Answer:
        soql = query_params(request).get("q")
        match = self._SOQL.match(soql or "")
        if not match:
            raise Reject(salesforce_error(400, "MALFORMED_QUERY", f"unexpected token in query: {soql!r}"))
        sobject = next((t for t in self.types if t.lower() == match["object"].lower()), None)
        if sobject is None:
            raise Reject(salesforce_error(400, "INVALID_TYPE", f"sObject type '{match['object']}' is not supported."))
        names = self._columns(sobject, match["fields"])
        where = re.split(r"\s+AND\s+", match["where"] or "", flags=re.I)
        conditions = [self._condition(sobject, text) for text in where if text.strip()]
        rows = [self.render(sobject, it, version) for it in self.store.items(sobject, deleted=deleted)]
        rows = [row for row in rows if all(test(row) for test in conditions)]
        for name, descending in reversed(self._order(sobject, match["order"])):
            rows.sort(key=lambda row: (row[name] is None, row[name] or ""), reverse=descending)
        if match["limit"]:
            rows = rows[:int(match["limit"])]
        rows = [{"attributes": row["attributes"], **{name: row[name] for name in names}} for row in rows]
        options = dict(part.strip().split("=", 1) for part in (request.header("sforce-query-options") or "").split(",")
                       if "=" in part)
        batch = min(self.query_batch_size, int(options.get("batchSize", self.query_batch_size)))
        locator = "01g" + random_token(15)
        self._cursors[locator] = (rows, batch)
        return self._page(version, locator, 0)

    def more(self, version: str, locator_offset: str) -> Answer:
        locator, _, offset = locator_offset.rpartition("-")
        if locator not in self._cursors or not offset.isdigit():
            raise Reject(salesforce_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator"))
        return self._page(version, locator, int(offset))

    def _page(self, version: str, locator: str, offset: int) -> Answer:
        rows, batch = self._cursors[locator]
        page = rows[offset:offset + batch]
        body = {"totalSize": len(rows), "done": offset + batch >= len(rows), "records": page}
        if not body["done"]:
            body["nextRecordsUrl"] = f"/services/data/{version}/query/{locator}-{offset + batch}"
        return Answer(200, body)

    def _field(self, sobject: str, name: str) -> str:
        for known in self.system_fields + self.types[sobject]["fields"] + (["Name"] if sobject == "Contact" else []):
            if known.lower() == name.lower():
                return known
        raise Reject(salesforce_error(400, "INVALID_FIELD", f"No such column '{name}' on entity '{sobject}'. If you "
                                      "are attempting to use a custom field, be sure to append the '__c' after the "
                                      "custom field name."))

    def _columns(self, sobject: str, text: str) -> list[str]:
        names = []
        for part in (p.strip() for p in text.split(",")):
            if part.upper() in ("FIELDS(ALL)", "FIELDS(STANDARD)"):
                names += [n for n in self.render(sobject, Item("", {}, 0, 0, 0)) if n != "attributes"]
            else:
                names.append(self._field(sobject, part))
        return list(dict.fromkeys(names))

    def _order(self, sobject: str, text: str | None) -> list[tuple[str, bool]]:
        order = []
        for part in filter(None, (p.strip() for p in (text or "").split(","))):
            words = part.split()
            order.append((self._field(sobject, words[0]), len(words) > 1 and words[1].upper() == "DESC"))
        return order

    def _condition(self, sobject: str, text: str) -> Callable[[dict], bool]:
        match = self._CONDITION.match(text)
        if not match:
            raise Reject(salesforce_error(400, "MALFORMED_QUERY", f"unexpected token: {text.strip()!r}"))
        name, op, literal = self._field(sobject, match[1]), match[2], match[3]
        value = self._literal(literal)
        if name in self.date_fields:
            if not isinstance(value, int) or isinstance(value, bool):
                raise Reject(salesforce_error(400, "INVALID_FIELD", f"value of filter criterion for field '{name}' "
                                              "must be of type dateTime and should not be enclosed in quotes"))
            key = lambda row: parse_iso(row[name])  # noqa: E731
        else:
            key = lambda row: row[name]  # noqa: E731
        compare = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a is not None and a > b,
                   ">=": lambda a, b: a is not None and a >= b, "<": lambda a, b: a is not None and a < b,
                   "<=": lambda a, b: a is not None and a <= b}[op]
        return lambda row: compare(key(row), value)

    @staticmethod
    def _literal(text: str):
        if text.startswith("'") and text.endswith("'"):
            return text[1:-1].replace("\\'", "'")
        lowered = text.lower()
        if lowered in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[lowered]
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\S+", text):
            try:
                return parse_iso(text)
            except ValueError:
                pass
        try:
            return float(text)
        except ValueError:
            raise Reject(salesforce_error(400, "MALFORMED_QUERY", f"unexpected token: '{text}'")) from None
