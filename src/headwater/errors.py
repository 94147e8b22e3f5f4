"""The one error type every layer raises, and its two renderings (gRPC status, REST body).

Servicers and the code below them raise `ApiError`; the gRPC server turns it into a status with
`google.rpc.Status` details (`grpc-status-details-bin`), the REST bridge into the documented body:

    {"error": "Error: sync_frequency must be ...", "docs": [...], "code": 3,
     "message": "sync_frequency must be ...", "details": [{"@type": ".../google.rpc.BadRequest", ...}]}

    raise invalid("rate_limit.interval", "must be a positive number of seconds")
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory
from google.rpc import error_details_pb2, status_pb2

DOCS_URL = "https://github.com/headwater-dev/headwater#errors"

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
        super().__init__(message)
        self._http_status = http_status
        self.code = code
        self.message = message
        self.details = list(details)
        violations = list(field_violations)
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

    def to_status(self) -> status_pb2.Status:
        """The google.rpc.Status carried in `grpc-status-details-bin`."""
        packed = []
        for detail in self.details:
            any_msg = any_pb2.Any()
            any_msg.Pack(detail)
            packed.append(any_msg)
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=packed)

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


def invalid(field: str, description: str, *more: tuple[str, str]) -> ApiError:
    """INVALID_ARGUMENT naming the field(s): `invalid("name", "is required")`."""
    violations = [(field, description), *more]
    message = "; ".join(f"{f}: {d}" for f, d in violations)
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, message, field_violations=violations)


def raise_if_invalid(violations: list[tuple[str, str]]) -> None:
    """Raises one INVALID_ARGUMENT listing every (field, description) pair, if there are any."""
    if violations:
        raise invalid(*violations[0], *violations[1:])


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError(grpc.StatusCode.NOT_FOUND, f"{kind} {ident!r} not found")


def failed_precondition(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.FAILED_PRECONDITION, message)


def unauthenticated(message: str = "a valid API token is required: Authorization: Bearer <token>") -> ApiError:
    return ApiError(grpc.StatusCode.UNAUTHENTICATED, message)

