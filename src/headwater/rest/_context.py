"""The servicer context of a REST call: the part of grpc.aio.ServicerContext our servicers use."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence

from headwater.errors import invalid

DEFAULT_TIMEOUT = 30.0  # seconds, when the caller sends no deadline header

_GRPC_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_GRPC_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


class RestContext:
    """What a servicer sees of a REST call, with grpc.aio's method names.

    - `invocation_metadata()`: the HTTP request headers as (lowercase name, value) pairs, so
      `authorization: Bearer X` arrives exactly as gRPC metadata would.
    - `time_remaining()`: seconds left before the deadline (None: no deadline).
    - `peer()`: the caller's address in gRPC's form, e.g. "ipv4:127.0.0.1:51234".
    """

    def __init__(self, metadata: Sequence[tuple[str, str]], deadline: float | None, transport=None):
        self._metadata = tuple(metadata)  # names already lower-case, as the bridge gives them
        self._deadline = deadline  # on the time.monotonic() clock
        self._transport = transport  # the caller's connection (asyncio transport), for peer()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def time_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def peer(self) -> str:
        return peer_of(self._transport)

    def __repr__(self) -> str:
        return f"RestContext(peer={self.peer()!r}, time_remaining={self.time_remaining()})"


def timeout_from_headers(headers: Sequence[tuple[str, str]]) -> float:
    """The call's timeout in seconds: `grpc-timeout` (gRPC's form: "30S", "100m", "5M", "1H",
    "250u", "10n"), else `x-headwater-timeout` (seconds, e.g. "2.5"), else DEFAULT_TIMEOUT."""
    values = dict(headers)
    if "grpc-timeout" in values:
        match = _GRPC_TIMEOUT.match(values["grpc-timeout"].strip())
        if not match:
            raise invalid("grpc-timeout", 'must be up to 8 digits and a unit (H, M, S, m, u, n), e.g. "30S"')
        return int(match.group(1)) * _GRPC_UNITS[match.group(2)]
    if "x-headwater-timeout" in values:
        try:
            seconds = float(values["x-headwater-timeout"])
        except ValueError:
            seconds = -1.0
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise invalid("x-headwater-timeout", "must be a number of seconds, e.g. 2.5")
        return seconds
    return DEFAULT_TIMEOUT


def peer_of(transport) -> str:
    """gRPC's peer string for the caller at the other end of an asyncio transport."""
    client = transport.get_extra_info("peername") if transport is not None else None
    if not client:
        return "unknown"
    host, port = client[0], client[1]
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"
