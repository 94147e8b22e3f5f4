"""The one error type every layer raises, and its two renderings (gRPC status, REST body).

Servicers and the code below them raise `ApiError`; the gRPC server turns it into a status with
`google.rpc.Status` details (`grpc-status-details-bin`), the REST bridge into the documented body:

    {"error": "Error: sync_frequency must be ...", "docs": [...], "code": 3,
     "message": "sync_frequency must be ...", "details": [{"@type": ".../google.rpc.BadRequest", ...}]}

    raise invalid("rate_limit.interval", "must be a positive number of seconds")

Errors never echo unbounded input: an echoed value (`not_found`'s id) is cut at MAX_ECHO_CHARS,
field names and descriptions (`invalid`) at MAX_ECHO_CHARS and MAX_DESCRIPTION_CHARS, and a
message at MAX_MESSAGE_CHARS, whatever built it.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.rpc import error_details_pb2, status_pb2

DOCS_URL = "https://github.com/headwater-dev/headwater#errors"

MAX_ECHO_CHARS = 200  # an id, a key or a field name shown back to the caller
MAX_DESCRIPTION_CHARS = 500  # one field violation's description
MAX_MESSAGE_CHARS = 1000  # a whole message (every violation, joined)

# grpc-gateway's mapping from gRPC status to HTTP status (runtime/errors.go HTTPStatusFromCode).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


class ApiError(Exception):
    """An error a caller should see: a status code, a message and optional rich details."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        field_violations: Iterable[tuple[str, str]] = (),
        details: Iterable[object] = (),
        headers: dict[str, str] | None = None,
        http_status: int | None = None,
    ):
        message = clip(message, MAX_MESSAGE_CHARS)
        super().__init__(message)
        self._http_status = http_status
        self.code = code
        self.message = message
        self.details = list(details)
        violations = [_clipped(*violation) for violation in field_violations]
        if violations:
            self.details.insert(
                0,
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                        for f, d in violations
                    ]
                ),
            )
        # Extra response headers over REST (e.g. Retry-After), trailing metadata over gRPC.
        self.headers = headers or {}

    @property
    def http_status(self) -> int:
        """grpc-gateway's status for the code, unless the error names its own (502 Bad Gateway)."""
        return self._http_status or HTTP_STATUS.get(self.code, 500)

    def to_status(self, max_bytes: int | None = None) -> status_pb2.Status:
        """The google.rpc.Status carried in `grpc-status-details-bin`.

        With `max_bytes` (gRPC trailers have a size limit), the message takes at most half of them,
        and details are kept in order while the status fits: a BadRequest that does not fit whole
        keeps the field violations that do, any other detail that does not fit is left out (the
        REST body always has them all).
        """
        message = self.message
        if max_bytes is not None:
            message = message.encode()[: max_bytes // 2].decode(errors="ignore")
        status = status_pb2.Status(code=self.code.value[0], message=message)
        for detail in self.details:
            packed = status.details.add()
            packed.Pack(detail)
            if max_bytes is None or status.ByteSize() <= max_bytes:
                continue
            if isinstance(detail, error_details_pb2.BadRequest):
                kept = error_details_pb2.BadRequest()
                for violation in detail.field_violations:
                    kept.field_violations.append(violation)
                    packed.Pack(kept)
                    if status.ByteSize() > max_bytes:
                        del kept.field_violations[-1]
                        break
                packed.Pack(kept)
                if kept.field_violations:
                    continue
            del status.details[-1]
        return status

    @classmethod
    def from_status(cls, status: status_pb2.Status, *, headers: dict[str, str] | None = None,
                    http_status: int | None = None) -> ApiError:
        """The error that `to_status` came from (to answer a stored error again)."""
        details = []
        for packed in status.details:
            descriptor = descriptor_pool.Default().FindMessageTypeByName(packed.TypeName())
            detail = message_factory.GetMessageClass(descriptor)()
            packed.Unpack(detail)
            details.append(detail)
        code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
        return cls(code, status.message, details=details, headers=headers, http_status=http_status)

    def to_json(self) -> dict:
        """The REST error body."""
        status = self.to_status()
        return {
            "error": f"Error: {self.message}",
            "docs": [DOCS_URL],
            "code": status.code,
            "message": self.message,
            "details": [
                json_format.MessageToDict(d, preserving_proto_field_name=True) for d in status.details
            ],
        }

    def __repr__(self) -> str:
        return f"ApiError({self.code.name}, {self.message!r})"


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters ("..." marks the cut), with anything that is not Unicode
    text (a lone surrogate) escaped, so that every answer can be encoded.

        clip("x" * 1000, 10)  # 'xxxxxxx...'
    """
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _clipped(field: str, description: str) -> tuple[str, str]:
    return clip(field, MAX_ECHO_CHARS), clip(description, MAX_DESCRIPTION_CHARS)


def shown(value: object) -> str:
    """A value of the caller's as an error message shows it: its repr, cut at MAX_ECHO_CHARS."""
    return clip(repr(value), MAX_ECHO_CHARS)


def invalid(field: str, description: str, *more: tuple[str, str]) -> ApiError:
    """INVALID_ARGUMENT naming the field(s): `invalid("name", "is required")`."""
    violations = [_clipped(field, description), *(_clipped(*violation) for violation in more)]
    message = "; ".join(f"{f}: {d}" for f, d in violations)
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, message, field_violations=violations)


def raise_if_invalid(violations: list[tuple[str, str]]) -> None:
    """Raises one INVALID_ARGUMENT listing every (field, description) pair, if there are any."""
    if violations:
        raise invalid(*violations[0], *violations[1:])


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError(grpc.StatusCode.NOT_FOUND, f"{kind} {shown(ident)} not found")


def failed_precondition(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.FAILED_PRECONDITION, message)


def unauthenticated(message: str = "a valid API token is required: Authorization: Bearer <token>") -> ApiError:
    return ApiError(grpc.StatusCode.UNAUTHENTICATED, message)

