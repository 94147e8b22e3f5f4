"""Settings, read once from the environment.

| variable                   | default                         | meaning                                      |
|----------------------------|---------------------------------|----------------------------------------------|
| HEADWATER_DATABASE_URL     | sqlite:///<data dir>/headwater.db | `sqlite:///path` or `postgresql://...`      |
| HEADWATER_DATA_DIR         | ./data                          | where the default SQLite file and key live   |
| HEADWATER_SECRET_KEY       | generated into <data dir>/secret.key for SQLite | Fernet key encrypting secrets |
| HEADWATER_GRPC_ADDRESS     | 127.0.0.1:50051                 | gRPC listen address                          |
| HEADWATER_HTTP_ADDRESS     | 127.0.0.1:8080                  | REST listen address                          |
| HEADWATER_HTTP_HEADER_TIMEOUT | 10                           | seconds for a request's line and headers to arrive (else 408, closed) |
| HEADWATER_HTTP_IDLE_TIMEOUT   | 75                           | seconds a kept-alive connection waits for its next request |
| HEADWATER_HTTP_MAX_CONNECTIONS | 10000                       | REST connections open at once; more are answered 503 and closed |
| HEADWATER_WORKERS          | 1                               | server processes behind the same addresses (`serve --workers`; more than 1 needs PostgreSQL and Redis) |
| HEADWATER_REDIS_URL        | (unset: in-process pacer)       | shared rate limiter for several replicas     |
| HEADWATER_PACING_MARGIN_MS | 20                              | added to every budget's interval (pacer)     |
| HEADWATER_ALLOW_PRIVATE_NETWORKS | false                     | let the proxy call loopback/private addresses |
| HEADWATER_MAX_REQUEST_BYTES  | 10485760 (10 MiB)             | largest request body accepted                 |
| HEADWATER_MAX_RESPONSE_BYTES | 52428800 (50 MiB)             | largest upstream answer body passed on        |
| HEADWATER_SYNC_ENGINE        | true                          | run the sync engine in this process           |
| HEADWATER_SYNC_INTERVAL      | 5                             | seconds between passes of a `continuous` sync |
| HEADWATER_SYNC_WORKERS       | 8                             | collections one process syncs at once         |
| HEADWATER_SYNC_LEASE_SECONDS | 30                            | a dead process's syncs are taken over after this |
| HEADWATER_WEBHOOK_RETRY_SECONDS | 1                          | first retry delay of a failed webhook POST (doubles each time, at most 5 min) |
| HEADWATER_RETENTION_INTERVAL_SECONDS | 60                  | how often the pruner keeps streams within their retention |
| HEADWATER_RETENTION_BATCH    | 500                           | rows one unit of the pruner's work touches at most |
| HEADWATER_IDEMPOTENCY_LEASE_SECONDS | 15                     | a mutation whose process died is taken over by a retry with its key after this |
| HEADWATER_OAUTH_APPS         | (none)                        | the instance's default OAuth app per provider: JSON, or the path of a JSON file |
| HEADWATER_PUBLIC_URL         | http://<REST address>         | the REST front as browsers reach it: connect pages and the OAuth callback |
| HEADWATER_CONNECT_SESSION_SECONDS | 1800                     | how long a connect session (its token and page) lasts |
| HEADWATER_METRICS_ADDRESS    | (unset: the REST address)     | where `GET /metrics` listens, if not on the REST port |
| HEADWATER_METRICS_TOKEN      | (unset: no token)             | `GET /metrics` then needs `Authorization: Bearer <it>` |
| HEADWATER_METRICS_PER_CREDENTIAL | false                     | label metrics with credential, sync and consumer ids |
| HEADWATER_TRACE_PROPAGATE_UPSTREAM | false                   | with traces on, send each upstream request's W3C traceparent to the upstream |

Traces are configured by the standard OTEL_* variables (headwater.tracing), off by default.

HEADWATER_OAUTH_APPS maps a provider to its app, e.g.
`{"github": {"client_id": "Iv1.8a61f9b3a7aba766", "client_secret": "...", "scopes": ["repo"]}}`
(also `authorization_url` and `token_url`, overriding the provider's).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class InstanceOAuthApp:
    """An OAuth app the operator configures for a provider, for every organisation of the instance
    (credentials name it "headwater:<provider>")."""

    provider: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] = ()
    authorization_url: str | None = None
    token_url: str | None = None


@dataclass(frozen=True)
class Settings:
    database_url: str
    secret_key: bytes
    grpc_address: str = "127.0.0.1:50051"
    http_address: str = "127.0.0.1:8080"
    # REST connections (headwater.rest.ConnectionLimits).
    http_header_timeout: float = 10.0
    http_idle_timeout: float = 75.0
    http_max_connections: int = 10_000
    # `headwater serve --workers N` (headwater.workers): processes serving the same addresses.
    workers: int = 1
    redis_url: str | None = None
    pacing_margin: float = 0.02  # seconds added to every budget's interval (headwater.upstream.budget)
    allow_private_networks: bool = False
    max_request_bytes: int = 10 * 2**20
    max_response_bytes: int = 50 * 2**20
    # The sync engine (headwater.engine.sync); tests shorten the intervals.
    sync_engine: bool = True
    sync_interval: float = 5.0  # seconds between incremental passes of a `continuous` sync
    sync_workers: int = 8  # collections synced at once by this process
    sync_lease_seconds: float = 30.0  # a lease not renewed for this long is taken over
    sync_poll_seconds: float = 1.0  # how often the engine looks for due work and renews leases
    sync_retry_max_seconds: float = 300.0  # the longest wait before retrying a failing collection
    sync_request_timeout: float = 60.0  # deadline of one upstream read, budget wait included
    # Webhook consumers (headwater.engine.delivery): the backoff of failed POSTs.
    webhook_retry_seconds: float = 1.0  # the first retry's delay; doubles with each attempt
    webhook_retry_max_seconds: float = 300.0
    # Streams' retention (headwater.engine.retention): how often the pruner passes, rows per unit.
    retention_interval: float = 60.0
    retention_batch: int = 500
    # OAuth refresh (headwater.upstream.oauth): a refresh token the provider refused is tried again
    # after this long at the earliest; calls in between are answered the refusal at once.
    refused_refresh_retry_seconds: float = 60.0
    # Mutations with an idempotency key (headwater.services.mutations): the key's lease.
    idempotency_lease_seconds: float = 15.0  # renewed every third of it while the call runs
    # The instance's default OAuth app of each provider (headwater.upstream.oauth_apps), by provider.
    oauth_apps: dict[str, InstanceOAuthApp] = field(default_factory=dict)
    # The hosted connect page (headwater.connect): the REST front's address as browsers reach it
    # (None: http:// and the bound REST address), and how long a connect session lasts.
    public_url: str | None = None
    connect_session_seconds: float = 1800.0
    # GET /metrics (headwater.metrics): on the REST address unless `metrics_address` is given; an
    # operator's token of its own if set (no API token: scrapers have none); ids as labels.
    metrics_address: str | None = None
    metrics_token: str | None = field(default=None, repr=False)
    metrics_per_credential: bool = False

    @property
    def browser_url(self) -> str:
        """How browsers reach the REST front (connect pages, the console): HEADWATER_PUBLIC_URL, else
        http:// and the REST address."""
        return self.public_url or f"http://{self.http_address}"
    # Traces (headwater.tracing): whether the upstream sees our traceparent. Off: it would tell a
    # third party our trace ids (and the caller's, whose trace it continues).
    trace_propagate_upstream: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("HEADWATER_DATA_DIR", "data"))
        database_url = env.get("HEADWATER_DATABASE_URL") or f"sqlite:///{data_dir / 'headwater.db'}"
        return cls(
            database_url=database_url,
            secret_key=_secret_key(env, database_url),
            grpc_address=env.get("HEADWATER_GRPC_ADDRESS", "127.0.0.1:50051"),
            http_address=env.get("HEADWATER_HTTP_ADDRESS", "127.0.0.1:8080"),
            http_header_timeout=_int(env, "HEADWATER_HTTP_HEADER_TIMEOUT", 10),
            http_idle_timeout=_int(env, "HEADWATER_HTTP_IDLE_TIMEOUT", 75),
            http_max_connections=_int(env, "HEADWATER_HTTP_MAX_CONNECTIONS", 10_000),
            workers=_int(env, "HEADWATER_WORKERS", 1),
            redis_url=env.get("HEADWATER_REDIS_URL") or None,
            pacing_margin=_milliseconds(env, "HEADWATER_PACING_MARGIN_MS", 20),
            allow_private_networks=_flag(env, "HEADWATER_ALLOW_PRIVATE_NETWORKS"),
            max_request_bytes=_int(env, "HEADWATER_MAX_REQUEST_BYTES", 10 * 2**20),
            max_response_bytes=_int(env, "HEADWATER_MAX_RESPONSE_BYTES", 50 * 2**20),
            sync_engine=_flag(env, "HEADWATER_SYNC_ENGINE", default=True),
            sync_interval=_int(env, "HEADWATER_SYNC_INTERVAL", 5),
            sync_workers=_int(env, "HEADWATER_SYNC_WORKERS", 8),
            sync_lease_seconds=_int(env, "HEADWATER_SYNC_LEASE_SECONDS", 30),
            webhook_retry_seconds=_int(env, "HEADWATER_WEBHOOK_RETRY_SECONDS", 1),
            retention_interval=_int(env, "HEADWATER_RETENTION_INTERVAL_SECONDS", 60),
            retention_batch=_int(env, "HEADWATER_RETENTION_BATCH", 500),
            idempotency_lease_seconds=_int(env, "HEADWATER_IDEMPOTENCY_LEASE_SECONDS", 15),
            oauth_apps=_oauth_apps(env, "HEADWATER_OAUTH_APPS"),
            public_url=_public_url(env, "HEADWATER_PUBLIC_URL"),
            connect_session_seconds=_int(env, "HEADWATER_CONNECT_SESSION_SECONDS", 1800),
            metrics_address=env.get("HEADWATER_METRICS_ADDRESS", "").strip() or None,
            metrics_token=env.get("HEADWATER_METRICS_TOKEN", "").strip() or None,
            metrics_per_credential=_flag(env, "HEADWATER_METRICS_PER_CREDENTIAL"),
            trace_propagate_upstream=_flag(env, "HEADWATER_TRACE_PROPAGATE_UPSTREAM"),
        )


def _flag(env: dict[str, str], name: str, default: bool = False) -> bool:
    value = env.get(name, "").strip().lower()
    if value == "":
        return default
    if value in ("0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ConfigError(f"{name} must be true or false, not {value!r}")


def _int(env: dict[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be positive")
    return number


def _milliseconds(env: dict[str, str], name: str, default: int) -> float:
    """A duration given in whole milliseconds (0 allowed), in seconds."""
    value = env.get(name, "").strip()
    if not value:
        return default / 1000
    if not value.isdigit():
        raise ConfigError(f"{name} must be a whole number of milliseconds (0 or more), not {value!r}")
    return int(value) / 1000


def _public_url(env: dict[str, str], name: str) -> str | None:
    """An http(s) origin, perhaps with a path prefix (a reverse proxy's), without a trailing "/"."""
    value = env.get(name, "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"{name} must be an http(s) URL without query, e.g. https://headwater.example.com")
    return value.rstrip("/")


def _oauth_apps(env: dict[str, str], name: str) -> dict[str, InstanceOAuthApp]:
    """The apps of `name`: a JSON object of provider -> app, given inline or as a file's path.
    Messages name the variable and the key at fault, never a value (the secrets are in there)."""
    value = env.get(name, "").strip()
    if not value:
        return {}
    text = value
    if not value.startswith(("{", "[")):
        try:
            text = Path(value).read_text()
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read {value}: {exc.strerror}") from None
    try:
        apps = json.loads(text)
    except ValueError:
        raise ConfigError(f"{name} must be JSON (or the path of a JSON file)") from None
    if not isinstance(apps, dict):
        raise ConfigError(f"{name} must map each provider to its app: {{\"github\": {{\"client_id\": ...}}}}")
    return {provider: _oauth_app(name, provider, app) for provider, app in apps.items()}


def _oauth_app(name: str, provider: str, app: object) -> InstanceOAuthApp:
    where = f"{name}: {provider}"
    known = {"client_id", "client_secret", "scopes", "authorization_url", "token_url"}
    if not isinstance(app, dict):
        raise ConfigError(f"{where} must be an object with client_id and client_secret")
    if unknown := sorted(set(app) - known):
        raise ConfigError(f"{where} has unknown keys {unknown}; known: {', '.join(sorted(known))}")
    for key in ("client_id", "client_secret"):
        if not isinstance(app.get(key), str) or not app[key]:
            raise ConfigError(f"{where}.{key} is required (a string)")
    scopes = app.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(scope, str) and scope for scope in scopes):
        raise ConfigError(f"{where}.scopes must be a list of scopes")
    for key in ("authorization_url", "token_url"):
        url = app.get(key)
        if url is not None and (not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https")):
            raise ConfigError(f"{where}.{key} must be an http(s) URL")
    return InstanceOAuthApp(provider, app["client_id"], app["client_secret"], tuple(scopes),
                            app.get("authorization_url"), app.get("token_url"))


def _secret_key(env: dict[str, str], database_url: str) -> bytes:
    """The key from the environment; for a SQLite file, a key generated once beside it."""
    if env.get("HEADWATER_SECRET_KEY"):
        key = env["HEADWATER_SECRET_KEY"].encode()
        try:
            Fernet(key)
        except ValueError as exc:
            raise ConfigError(
                "HEADWATER_SECRET_KEY must be a Fernet key (32 url-safe base64-encoded bytes); "
                "make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
            ) from exc
        return key
    if not database_url.startswith("sqlite:///"):
        raise ConfigError("HEADWATER_SECRET_KEY is required with a non-SQLite database")
    db_path = Path(database_url.removeprefix("sqlite:///"))
    key_path = db_path.parent / (db_path.name + ".key")
    if not key_path.exists():
        key_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key())
    return key_path.read_bytes().strip()
