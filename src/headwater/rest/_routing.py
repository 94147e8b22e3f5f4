"""Path templates (the `google.api.http` syntax) and the route table that picks one for a request.

Grammar (from google/api/http.proto):

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    Verb     = ":" LITERAL ;

Matching rules, as grpc-gateway has them:
- `{id}` is `{id=*}`: exactly one non-empty segment.
- `{path=**}` takes the rest of the path (zero or more segments), joined by "/"; it must be last.
- `{name=projects/*}` spans several segments; its value is "projects/p1".
- Several templates may match one path: literal segments win over `*`, `*` over `**`
  (compared segment by segment from the left); a template with a `:verb` wins over one without.
- The HTTP method decides last: a path that only matches routes of other methods is a 405.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

ANY_METHOD = "*"  # a route for every HTTP method (raw routes, e.g. the proxy)

_FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

# Segment kinds, in order of precedence (a lower rank wins).
_LITERAL, _ONE, _REST = 0, 1, 2


class Match(enum.Enum):
    """How a route matches a request (like Starlette's routing.Match)."""

    NONE = 0  # the path does not match
    PARTIAL = 1  # the path matches, the HTTP method does not (a 405 if nothing better matches)
    FULL = 2  # path and method match


class DuplicateRouteError(ValueError):
    """Two routes would answer the same method on the same paths."""


@dataclass(frozen=True)
class _Variable:
    name: str  # a field path, e.g. "sync.id"
    start: int  # index of its first segment
    end: int | None  # one past its last segment; None when it ends with `**`


@dataclass(frozen=True)
class PathTemplate:
    """A compiled template; see `compile_template`."""

    template: str
    segments: tuple[str | int, ...]  # a literal string, or _ONE (`*`) or _REST (`**`)
    variables: tuple[_Variable, ...]
    verb: str | None  # the `:verb` suffix, without the colon

    @property
    def key(self) -> tuple:
        """What makes two templates match the same paths (variable names do not matter)."""
        return (self.segments, self.verb)

    @property
    def precedence(self) -> tuple:
        """Sort key: the most specific template first."""
        ranks = tuple(_LITERAL if isinstance(s, str) else s for s in self.segments)
        return (ranks, 0 if self.verb else 1)

    def match(self, raw_segments: list[str]) -> dict[str, str] | None:
        """The variables' values if the (still percent-encoded) path segments match, else None."""
        parts = raw_segments
        if self.verb is not None:
            suffix = ":" + self.verb
            if not parts or not parts[-1].endswith(suffix):
                return None
            parts = [*parts[:-1], parts[-1][: -len(suffix)]]
        if self.segments and self.segments[-1] == _REST:
            if len(parts) < len(self.segments) - 1:
                return None
        elif len(parts) != len(self.segments):
            return None
        for segment, part in zip(self.segments, parts):
            if segment == _REST:
                break
            if segment == _ONE:
                if not part:
                    return None
            elif part != segment and ("%" not in part or unquote(part) != segment):
                return None
        values = {}
        for var in self.variables:
            taken = parts[var.start : var.end]
            if var.end is not None and var.end - var.start == 1:
                values[var.name] = _decoded(taken[0])
            else:
                joined = "/".join(taken)
                if "%" in joined:
                    # A multi-segment value keeps an encoded "/" (%2F) encoded, as grpc-gateway does.
                    joined = "/".join(unquote(re.sub("%2[fF]", "%252F", p)) if "%" in p else p for p in taken)
                values[var.name] = joined
        return values


def _decoded(segment: str) -> str:
    """unquote(segment), without its call for the segments (most) with nothing to decode."""
    return unquote(segment) if "%" in segment else segment


def compile_template(template: str) -> PathTemplate:
    """Compile a `google.api.http` path template.

    Worked example:

        >>> t = compile_template("/v1/{parent=projects/*}/syncs/{sync.id}:run")
        >>> t.segments                      # literals, and 1 for `*`, 2 for `**`
        ('v1', 'projects', 1, 'syncs', 1)
        >>> t.verb
        'run'
        >>> t.match("v1/projects/p1/syncs/s%201:run".split("/"))
        {'parent': 'projects/p1', 'sync.id': 's 1'}
        >>> compile_template("/v1/proxy/{path=**}").match(["v1", "proxy", "a", "b", ""])
        {'path': 'a/b/'}
        >>> compile_template("/v1/proxy/{path=**}").match(["v1", "proxy"])
        {'path': ''}

    Raises ValueError for a template outside the grammar.
    """

    def fail(why: str) -> ValueError:
        return ValueError(f"bad path template {template!r}: {why}")

    if not template.startswith("/"):
        raise fail("must start with '/'")
    body, verb = template, None
    colon = template.rfind(":")
    if colon > max(template.rfind("/"), template.rfind("}")):
        body, verb = template[:colon], template[colon + 1 :]
        if not verb:
            raise fail("empty verb")

    segments: list[str | int] = []
    variables: list[_Variable] = []
    for part in _split_top_level(body[1:], fail):
        if part.startswith("{"):
            if not part.endswith("}"):
                raise fail(f"unclosed variable {part!r}")
            name, _, sub = part[1:-1].partition("=")
            if not _FIELD_PATH.match(name):
                raise fail(f"bad variable name {name!r}")
            if any(v.name == name for v in variables):
                raise fail(f"variable {name!r} appears twice")
            start = len(segments)
            for piece in (sub or "*").split("/"):
                segments.append(_plain_segment(piece, fail))
            end = None if segments[-1] == _REST else len(segments)
            variables.append(_Variable(name, start, end))
        else:
            segments.append(_plain_segment(part, fail))
    if _REST in segments[:-1]:
        raise fail("'**' must be the last segment")
    return PathTemplate(template, tuple(segments), tuple(variables), verb)


def _split_top_level(text: str, fail) -> list[str]:
    """Split on "/" outside braces: "v1/{name=a/*}/x" -> ["v1", "{name=a/*}", "x"]."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "{":
            depth += 1
            if depth > 1:
                raise fail("nested variables")
        elif char == "}":
            depth -= 1
            if depth < 0:
                raise fail("unbalanced '}'")
        if char == "/" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise fail("unbalanced '{'")
    parts.append(current)
    return parts


def _plain_segment(piece: str, fail) -> str | int:
    if piece == "*":
        return _ONE
    if piece == "**":
        return _REST
    if not piece or any(c in piece for c in "{}*"):
        raise fail(f"bad segment {piece!r}")
    return piece


@dataclass(frozen=True)
class Route:
    """One (methods, template) pair and whatever should handle it (`endpoint`)."""

    methods: frozenset[str]  # upper-case HTTP methods, or {ANY_METHOD}
    template: PathTemplate
    endpoint: object

    def matches(self, method: str, raw_segments: list[str]) -> tuple[Match, dict[str, str]]:
        values = self.template.match(raw_segments)
        if values is None:
            return Match.NONE, {}
        if ANY_METHOD in self.methods or method in self.methods:
            return Match.FULL, values
        return Match.PARTIAL, values


@dataclass
class Lookup:
    """The outcome of `RouteTable.lookup`."""

    match: Match
    route: Route | None = None  # set when FULL
    path_params: dict[str, str] = field(default_factory=dict)
    allow: tuple[str, ...] = ()  # set when PARTIAL: the methods this path does answer


class RouteTable:
    """All routes, most specific first. `lookup` answers FULL, PARTIAL (405) or NONE (404)."""

    def __init__(self, routes: Iterable[Route] = ()):
        self._routes: list[Route] = []
        # The routes a path can match, by its first two segments (each a literal of some route, or
        # "" for any other): the routes whose first two segments are those literals or variables,
        # in precedence order. Most paths then try a handful of routes, not all of them.
        self._by_prefix: dict[tuple[str, str], list[Route]] = {("", ""): []}
        self._literals: tuple[set[str], set[str]] = (set(), set())
        for route in routes:
            self.add(route)

    def __iter__(self):
        return iter(self._routes)

    def add(self, route: Route) -> None:
        for other in self._routes:
            same_methods = (
                route.methods & other.methods or ANY_METHOD in route.methods or ANY_METHOD in other.methods
            )
            if other.template.key == route.template.key and same_methods:
                raise DuplicateRouteError(
                    f"duplicate route: {sorted(route.methods)} {route.template.template} "
                    f"({route.endpoint}) and {sorted(other.methods)} {other.template.template} ({other.endpoint})"
                )
        self._routes.append(route)
        self._routes.sort(key=lambda r: r.template.precedence)
        prefixes = {r: _literal_prefix(r) for r in self._routes}
        self._literals = ({p[0] for p in prefixes.values()}, {p[1] for p in prefixes.values()})
        self._by_prefix = {
            (a, b): [r for r, (ra, rb) in prefixes.items() if ra in (a, "") and rb in (b, "")]
            for a in self._literals[0] | {""}
            for b in self._literals[1] | {""}
        }

    def lookup(self, method: str, raw_path: str) -> Lookup:
        """Find the route for `method` on `raw_path` (percent-encoded, starting with "/")."""
        segments = raw_path[1:].split("/") if raw_path.startswith("/") else [raw_path]
        first = _decoded(segments[0])
        second = _decoded(segments[1]) if len(segments) > 1 else ""
        known_first, known_second = self._literals
        candidates = self._by_prefix[(first if first in known_first else "", second if second in known_second else "")]
        allow: set[str] = set()
        for route in candidates:
            match, values = route.matches(method, segments)
            if match is Match.FULL:
                return Lookup(Match.FULL, route, values)
            if match is Match.PARTIAL:
                allow |= route.methods
        if allow:
            return Lookup(Match.PARTIAL, allow=tuple(sorted(allow)))
        return Lookup(Match.NONE)


def _literal_prefix(route: Route) -> tuple[str, str]:
    """The route's first two segments where they are literals, else "" (a variable, a segment
    carrying the `:verb`, or no segment)."""
    segments = route.template.segments
    last = len(segments) - 1 if route.template.verb else len(segments)
    return tuple(  # type: ignore[return-value]
        segments[i] if i < len(segments) and i != last and isinstance(segments[i], str) else "" for i in range(2)
    )
