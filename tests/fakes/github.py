"""The GitHub emulator: the calls Headwater makes, answered as GitHub answers them (see GitHubFake).

tests/test_fake_providers.py shows each call."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from urllib.parse import urlencode

from emulators import Received
from fakes.core import Answer, FakeProvider, Item, Limit, Reject, parse_iso, query_params, random_token, route, utc


def _whole(text: str | None, default: int) -> int:
    """A query parameter as a whole number; GitHub takes anything else as the default."""
    return int(text) if text and text.isdigit() else default


def github_time(ms: int) -> str:
    return utc(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def github_error(status: int, message: str, **extra) -> Answer:
    return Answer(status, {"message": message, "documentation_url": "https://docs.github.com/rest",
                           "status": str(status), **extra})


class GitHubFake(FakeProvider):
    """GitHub REST: a repository's issues (collections are "owner/repo"; a repository exists once seeded).

    GET /repos/{owner}/{repo}/issues: `state` open (default) | closed | all, `since` (ISO-8601:
    updated at or after), `sort` created (default) | updated, `direction` desc (default) | asc,
    `per_page` (default 30, max 100), `page`. Paging is in the `Link` header, with absolute URLs
    of the form GitHub uses: {base}/repositories/{repo id}/issues?...&page=N, rel next/last/prev/first.
    Times have whole seconds ("2024-01-15T10:30:00Z"). Tokens go as `Bearer` or `token`.
    Also GET/PATCH /repos/{owner}/{repo}/issues/{number} and POST /repos/{owner}/{repo}/issues;
    an issue deleted behind the API's back answers 410, as GitHub does. GET /user answers the
    token's user (`octocat`): what checks a token.
    """

    name = "github"
    id_field = "number"
    repo = "octocat/Hello-World"

    def __init__(self):
        super().__init__()
        self.aliases = {"issue": self.repo, "issues": self.repo}

    def make_token(self) -> str:
        return "ghp_" + random_token(36)

    def authorized(self, request: Received) -> bool:
        return request.header("authorization") in (f"Bearer {self.token}", f"token {self.token}")

    def unauthorized(self) -> Answer:
        return github_error(401, "Bad credentials")

    def budget_headers(self, limit: Limit) -> list[tuple[str, str]]:
        """docs.github.com, "Rate limits for the REST API": the reset in whole epoch seconds."""
        return [("x-ratelimit-limit", str(limit.allowed)), ("x-ratelimit-remaining", str(limit.remaining)),
                ("x-ratelimit-reset", str(math.ceil(limit.resets_at))), ("x-ratelimit-used", str(limit.used)),
                ("x-ratelimit-resource", "core")]

    def rate_limited(self, limit: Limit) -> Answer:
        """GitHub's primary rate limit: 403 (not 429), remaining 0 and the reset in the headers."""
        return github_error(403, "API rate limit exceeded for user ID 1. If you reach out to GitHub Support "
                                 "for help, please include the request ID.")

    def error(self, status: int, message: str) -> Answer:
        if status == 404:
            message = "Not Found"
        if status == 403:
            message = "Resource not accessible by integration"
        if status == 429:
            message = "API rate limit exceeded for user ID 1."
        return github_error(status, message)

    def collection(self, name: str) -> str:
        name = self.aliases.get(name, name)
        if name.count("/") != 1:
            raise ValueError(f"GitHub collections are repositories, 'owner/repo'; not {name!r}")
        return name

    def routes(self):
        user = {"login": "octocat", "id": 1, "type": "User", "name": "The Octocat"}
        return [
            route("GET", "/user", lambda r: Answer(200, user)),
            route("GET", "/repos/{owner}/{repo}/issues", lambda r, owner, repo: self.list(r, f"{owner}/{repo}")),
            route("GET", "/repositories/{repo_id}/issues", lambda r, repo_id: self.list(r, self._by_id(repo_id))),
            route("POST", "/repos/{owner}/{repo}/issues", lambda r, owner, repo: self.create(r, f"{owner}/{repo}")),
            route("GET", "/repos/{owner}/{repo}/issues/{number}",
                   lambda r, owner, repo, number: Answer(200, self.render(f"{owner}/{repo}",
                                                                          self._find(f"{owner}/{repo}", number)))),
            route("PATCH", "/repos/{owner}/{repo}/issues/{number}",
                   lambda r, owner, repo, number: self.update(r, f"{owner}/{repo}", number)),
        ]

    def new_id(self, collection: str) -> str:
        return str(len(self.store.collections[collection]) + 1)

    def repo_id(self, repo: str) -> int:
        return 1_000_000 + list(self.store.collections).index(repo)

    def _by_id(self, repo_id: str) -> str:
        repos = list(self.store.collections)
        index = int(repo_id) - 1_000_000 if repo_id.isdigit() else -1
        if not 0 <= index < len(repos):
            raise Reject(self.error(404, "Not Found"))
        return repos[index]

    def sample(self, collection: str, k: int, given: dict) -> dict:
        return {"title": f"Issue {k}", "body": f"Something to look at ({k}).", "state": "open"}

    def render(self, collection: str, item: Item) -> dict:
        api = f"{self.base_url}/repos/{collection}"
        fields = {"state": "open", "body": None, "labels": [], **item.fields}
        closed = fields["state"] == "closed"
        return {"id": 2_000_000_000 + item.seq, "node_id": "I_kwDO" + base64.b64encode(
                    hashlib.sha1(f"{collection}#{item.id}".encode()).digest()[:9]).decode(),
                "url": f"{api}/issues/{item.id}", "repository_url": api,
                "html_url": f"https://github.com/{collection}/issues/{item.id}", "number": int(item.id),
                "state": fields["state"], "state_reason": "completed" if closed else None,
                "title": fields.get("title"), "body": fields["body"],
                "user": {"login": "octocat", "id": 1, "type": "User"},
                "labels": [{"name": name} for name in fields["labels"]], "assignee": None, "assignees": [],
                "locked": False, "comments": 0, "created_at": github_time(item.created),
                "updated_at": github_time(item.updated), "closed_at": github_time(item.updated) if closed else None,
                "author_association": "OWNER"}

    def _repo(self, repo: str) -> str:
        if repo not in self.store.collections:
            raise Reject(self.error(404, "Not Found"))
        return repo

    def _find(self, repo: str, number: str) -> Item:
        item = self.store.find(self._repo(repo), number)
        if item is None:
            raise Reject(self.error(404, "Not Found"))
        if item.deleted:
            raise Reject(github_error(410, "This issue was deleted"))
        return item

    def _fields(self, request: Received, creating: bool) -> dict:
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise Reject(github_error(400, "Problems parsing JSON"))
        if creating and not body.get("title"):
            raise Reject(github_error(422, 'Invalid request.\n\n"title" wasn\'t supplied.'))
        if body.get("state", "open") not in ("open", "closed"):
            raise Reject(github_error(422, "Validation Failed",
                                      errors=[{"resource": "Issue", "field": "state", "code": "invalid"}]))
        return {k: v for k, v in body.items() if k in ("title", "body", "state", "labels")}

    def create(self, request: Received, repo: str) -> Answer:
        item = self._insert(self._repo(repo), self._fields(request, True))
        return Answer(201, self.render(repo, item))

    def update(self, request: Received, repo: str, number: str) -> Answer:
        item = self._find(repo, number)
        self._modify(repo, item, self.merge(repo, item.fields, self._fields(request, False)))
        return Answer(200, self.render(repo, item))

    def list(self, request: Received, repo: str) -> Answer:
        params = query_params(request)
        state = params.get("state", "open")
        items = [it for it in self.store.items(self._repo(repo))
                 if state == "all" or it.fields.get("state", "open") == state]
        if "since" in params:
            try:
                since = parse_iso(params["since"]) // 1000 * 1000
            except ValueError:
                invalid = [{"resource": "Issue", "field": "since", "code": "invalid"}]
                raise Reject(github_error(422, "Validation Failed", errors=invalid)) from None
            items = [it for it in items if it.updated // 1000 * 1000 >= since]
        timestamp = (lambda it: (it.updated // 1000, it.seq)) if params.get("sort") == "updated" else \
            (lambda it: (it.created // 1000, it.seq))
        items.sort(key=timestamp, reverse=params.get("direction", "desc") != "asc")
        per_page = min(_whole(params.get("per_page"), 30), 100) or 30
        page = max(_whole(params.get("page"), 1), 1)
        last = max((len(items) + per_page - 1) // per_page, 1)
        links = {"prev": page - 1, "next": page + 1, "last": last, "first": 1}
        shown = [rel for rel in (("prev", "first") if page > 1 else ()) + (("next", "last") if page < last else ())]
        url = f"{self.base_url}/repositories/{self.repo_id(repo)}/issues"
        header = ", ".join(f'<{url}?{urlencode({**params, "page": links[rel]})}>; rel="{rel}"'
                           for rel in sorted(shown, key=["prev", "next", "last", "first"].index))
        body = [self.render(repo, it) for it in items[(page - 1) * per_page:page * per_page]]
        return Answer(200, body, [("link", header)] if header else [])

