"""The tables, as Peewee models. Every resource row carries its organisation.

Models are bound to `database` (a proxy) and used through `headwater.store.database.Store`, which
runs synchronous Peewee code on the event loop through playhouse.pwasyncio's greenlet bridge.
The schema itself is created by the migrations in `migrations/`, not by these classes.
"""

from __future__ import annotations

import datetime
import json
import uuid

from peewee import (
    AutoField,
    BigAutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    DatabaseProxy,
    DateTimeField,
    DoubleField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

database = DatabaseProxy()


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime.datetime:
    """Naive UTC, the form every timestamp column holds."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def as_datetime(value) -> datetime.datetime | None:
    """A timestamp column's value from an aggregate (SQLite answers MIN of datetimes as text)."""
    return datetime.datetime.fromisoformat(value) if isinstance(value, str) else value


def iso(value: datetime.datetime | None) -> str | None:
    """A timestamp column's value as JSON documents carry it: "2024-01-31T12:00:00.123456Z"."""
    return None if value is None else value.replace(tzinfo=datetime.UTC).isoformat().replace("+00:00", "Z")


DEFAULT_RETENTION_DAYS = 7.0

# The kind of an organisation's internal events stream and of the consumers that read it (its
# event endpoints: headwater.store.org_events). Neither is shown by the stream and consumer APIs.
ORG_EVENTS = "events"


class JSONField(TextField):
    """JSON in a text column, the same on SQLite and PostgreSQL."""

    def db_value(self, value):
        return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)

    def python_value(self, value):
        return None if value is None else json.loads(value)


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Org(BaseModel):
    id = CharField(primary_key=True, default=new_id)
    name = CharField(unique=True)
    created_at = DateTimeField(default=utcnow)


class ApiToken(BaseModel):
    id = CharField(primary_key=True, default=new_id)
    org = ForeignKeyField(Org, backref="tokens", on_delete="CASCADE")
    token_hash = CharField(unique=True)
    name = CharField(default="")
    created_at = DateTimeField(default=utcnow)
    last_used_at = DateTimeField(null=True)  # to the minute (headwater.auth), migration 0010


class Stream(BaseModel):
    id = CharField(primary_key=True, default=new_id)
    org = ForeignKeyField(Org, on_delete="CASCADE")
    name = CharField()
    kind = CharField(default="records")  # records | events (ORG_EVENTS), migration 0012
    # Events older than this are pruned once every consumer has acked them (headwater.store.retention),
    # migration 0016.
    retention_days = DoubleField(default=DEFAULT_RETENTION_DAYS)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("org", "name"), True),)

    @classmethod
    def visible_to(cls, org_id: str):
        """The organisation's streams as the API shows them: not its internal events stream."""
        return cls.select().where((cls.org == org_id) & (cls.kind != ORG_EVENTS))


class Credential(BaseModel):
    id = CharField(primary_key=True, default=new_id)
    org = ForeignKeyField(Org, on_delete="CASCADE")
    provider = CharField()
    kind = CharField()
    # Non-secret properties in the clear; secret ones as one encrypted JSON object.
    properties = JSONField(default=dict)
    secrets = TextField()
    oauth_app_id = CharField(default="", index=True)  # indexed by migration 0011
    metadata = JSONField(null=True)
    external_id = CharField(default="", index=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    # healthy | error (its refresh was refused: headwater.store.health), migration 0012
    health_status = CharField(default="healthy")
    health_last_error = TextField(default="")
    health_last_error_at = DateTimeField(null=True)


class OAuthApp(BaseModel):
    """An organisation's OAuth app: the client it registered with a provider (migration 0011).
    Credentials name it by id (`Credential.oauth_app_id`, not a foreign key: an id may also name
    the instance's default app, which is no row)."""

    id = CharField(primary_key=True, default=new_id)
    org = ForeignKeyField(Org, on_delete="CASCADE")
    provider = CharField()
    client_id = CharField()
    client_secret = TextField()  # encrypted (SecretBox)
    scopes = JSONField(default=list)
    authorization_url = TextField(default="")  # "": the provider's (the catalogue's)
    token_url = TextField(default="")
    metadata = JSONField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "oauth_app"
        indexes = ((("org", "provider", "client_id"), False),)


class Sync(BaseModel):
    id = CharField(primary_key=True, default=new_id)
    org = ForeignKeyField(Org, on_delete="CASCADE")
    provider = CharField()
    stream = ForeignKeyField(Stream, on_delete="RESTRICT")
    credential = ForeignKeyField(Credential, on_delete="RESTRICT")
    name = CharField(default="")
    status = CharField(default="active")
    health_status = CharField(default="healthy")
    health_last_error = TextField(default="")
    health_last_error_at = DateTimeField(null=True)
    collection_ids = JSONField(default=list)
    rate_allowed_requests = IntegerField()
    rate_interval = IntegerField()
    rate_max_concurrent = IntegerField(default=0)
    rate_windows = JSONField(default=list)  # further windows: [[allowed_requests, interval], ...]
    max_age_days = IntegerField(null=True)
    sync_frequency = CharField(default="continuous")
    initial_backfill_completed_at = DateTimeField(null=True)
    metadata = JSONField(null=True)
    external_id = CharField(default="", index=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)


class Project(BaseModel):
    """A connected-user space: its public key verifies the users' tokens (RS256 JWTs)."""

    id = CharField(primary_key=True, default=new_id)
    org = ForeignKeyField(Org, on_delete="CASCADE")
    name = CharField(default="")
    signing_public_key = TextField()
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)


class ConnectSettings(BaseModel):
    """An organisation's settings of the hosted connect page (migration 0013)."""

    org = ForeignKeyField(Org, primary_key=True, on_delete="CASCADE")
    allowed_redirect_origins = JSONField(default=list)  # ["https://app.example.com", ...]
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "connect_settings"


class ConnectSession(BaseModel):
    """One end user's visit to the hosted connect page (headwater.connect), from the backend's
    call until a credential is made or it expires (migration 0013).

    The token is kept hashed and opens the page once; opening it binds the session to that
    browser (a cookie whose hash is `browser_hash`), and every form the page posts carries
    `csrf_token`."""

    id = CharField(primary_key=True, default=new_id)
    org = ForeignKeyField(Org, on_delete="CASCADE")
    token_hash = CharField(unique=True)
    browser_hash = CharField(null=True)  # set when the token is used: the page is this browser's
    csrf_token = CharField()
    end_user_id = CharField()
    end_user_email = CharField(default="")
    end_user_display_name = CharField(default="")
    allowed_integrations = JSONField(default=list)
    integration_properties = JSONField(default=dict)  # {integration: {property: value}}
    redirect_url = TextField()
    project_id = CharField(default="")  # a connected user's session: the project of its JWT
    expires_at = DateTimeField(index=True)
    opened_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "connect_session"


class ConnectAttempt(BaseModel):
    """One OAuth2 authorization request of a connect session: its `state` (hashed), PKCE verifier
    (encrypted) and the app it asked through, until the callback spends it (once)."""

    state_hash = CharField(primary_key=True)
    session = ForeignKeyField(ConnectSession, on_delete="CASCADE")
    integration = CharField()
    oauth_app_id = CharField()
    code_verifier = TextField(default="")  # encrypted (SecretBox); "" without PKCE
    redirect_uri = TextField()
    expires_at = DateTimeField()
    used_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "connect_attempt"


class Record(BaseModel):
    """The latest known state of one upstream record of a sync's collection."""

    id = CharField(primary_key=True, default=new_id)
    org = ForeignKeyField(Org, on_delete="CASCADE")
    sync = ForeignKeyField(Sync, on_delete="CASCADE")  # deleting a sync removes its records
    collection_id = CharField()
    upstream_id = CharField()
    upstream_updated_at = DateTimeField(null=True)
    data = JSONField(default=dict)
    deleted = BooleanField(default=False)
    inserted_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("sync", "collection_id", "upstream_id"), True),)


class Event(BaseModel):
    """One change of one record, in its stream's order (`seq`). Outlives the sync and the record:
    sync and record are named by id, not by foreign key.

    In an organisation's events stream (ORG_EVENTS), one event of the organisation: `action` is its
    type, `record` the event as endpoints receive it, `record_id` what it is about (its subject),
    so that one subject's events are delivered in order (headwater.store.org_events)."""

    seq = BigAutoField()
    # indexed with seq, (stream_id, seq), by migration 0016
    stream = ForeignKeyField(Stream, on_delete="CASCADE", index=False)
    org = ForeignKeyField(Org, on_delete="CASCADE")
    sync_id = CharField()
    collection_id = CharField()
    record_id = CharField()
    action = CharField()  # insert | update | delete
    record = JSONField()  # the record as consumers receive it, at the time of the change
    created_at = DateTimeField(default=utcnow)


class Consumer(BaseModel):
    """A reader of one stream: pulled over HTTP/gRPC (`pull`) or pushed to a URL (`webhook`), or
    an event endpoint, pushed the organisation's events (`events`, ORG_EVENTS)."""

    id = CharField(primary_key=True, default=new_id)
    org = ForeignKeyField(Org, on_delete="CASCADE")
    stream = ForeignKeyField(Stream, on_delete="CASCADE")
    name = CharField(default="")
    kind = CharField(default="pull")  # pull | webhook | events
    # [{"sync_id": ..., "collection_id": ..., "record_id": ...}, ...]: an event is delivered when
    # it matches every key of at least one filter; no filters, every event.
    filters = JSONField(default=list)
    deliver_policy = CharField(default="all")  # all | new | last
    ack_wait_ms = IntegerField(default=30000)
    max_deliver = IntegerField(default=0)  # 0 = no limit
    max_ack_pending = IntegerField(default=0)  # 0 = no limit
    webhook_url = TextField(default="")
    webhook_secret = TextField(default="")  # encrypted (SecretBox)
    webhook_batch_size = IntegerField(default=50)  # changes per POST (migration 0007)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    # healthy | lagging, and what the pruner last found (headwater.store.retention), migration 0016
    health_status = CharField(default="healthy")
    health_last_error = TextField(default="")
    health_last_error_at = DateTimeField(null=True)
    dropped_messages = BigIntegerField(default=0)  # dropped unacked, past twice the retention

    @classmethod
    def visible_to(cls, org_id: str):
        """The organisation's consumers as the consumer API shows them: not its event endpoints."""
        return cls.select().where((cls.org == org_id) & (cls.kind != ORG_EVENTS))


class ConsumerMessage(BaseModel):
    """One event owed to one consumer, until acked (then the row is deleted).

    Written in the same transaction as the event (fan-out on write), so nothing is ever lost. Only
    the oldest message of a record is deliverable at a time, so one record's events arrive in
    order and never two at once."""

    id = BigAutoField()
    consumer = ForeignKeyField(Consumer, on_delete="CASCADE", index=False)  # (consumer, event) serves
    event = ForeignKeyField(Event, on_delete="CASCADE")
    record_id = CharField()
    state = CharField(default="available")  # available | delivered | parked
    deliver_count = IntegerField(default=0)
    visible_at = DateTimeField(default=utcnow)  # deliverable (again) from then on
    ack_token = CharField(null=True, unique=True)
    last_error = TextField(default="")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("consumer", "state", "visible_at"), False),
            (("consumer", "event"), False),  # migration 0004
            # and ((consumer_id || record_id), event_id), the head-of-record probe's (migration 0015)
        )


class SyncCollection(BaseModel):
    """The sync engine's state of one collection of one sync (see headwater.engine)."""

    id = AutoField()
    sync = ForeignKeyField(Sync, on_delete="CASCADE")
    collection_id = CharField()
    backfill_state = CharField(default="pending")  # pending | running | completed
    cursor = JSONField(null=True)  # where the next page starts, and the incremental watermark
    records_synced = IntegerField(default=0)  # changes written to the stream (inserts, updates, deletes)
    backfill_started_at = DateTimeField(null=True)
    backfill_completed_at = DateTimeField(null=True)
    last_synced_at = DateTimeField(null=True)  # when the last pass finished
    next_run_at = DateTimeField(default=utcnow)  # due from then on
    health = CharField(default="healthy")  # healthy | degraded | error
    failures = IntegerField(default=0)  # consecutive failed attempts (for backoff)
    last_error = TextField(default="")
    last_error_at = DateTimeField(null=True)
    lease_owner = CharField(null=True)  # the engine working on it now, until lease_expires_at
    lease_expires_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("sync", "collection_id"), True),)


class IdempotencyKey(BaseModel):
    """A mutation's idempotency key. The row is inserted before anything is sent upstream (the
    unique (org, key) lets only one of two concurrent calls run) and holds the first call's
    answer, replayed for 24 hours. While the call runs, it holds the key under a lease and the
    records it has applied, so that a retry can take over from a call whose process died
    (headwater.store.idempotency)."""

    id = CharField(primary_key=True, default=new_id)
    org = ForeignKeyField(Org, on_delete="CASCADE")
    key = CharField()
    request_hash = CharField()  # sha256 of the mutation asked for: a reuse for another one is refused
    answer = JSONField(null=True)  # None while the call runs
    owner = CharField(default="")  # the call running it (migration 0009)
    lease_expires_at = DateTimeField(null=True)  # renewed by the owner; past it, a retry takes over
    applied = JSONField(null=True)  # {"records": [...], "event_seqs": [...]} the owner has applied so far
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(index=True)

    class Meta:
        indexes = ((("org", "key"), True),)


ALL_MODELS = [
    Org, ApiToken, Stream, Credential, OAuthApp, ConnectSettings, ConnectSession, ConnectAttempt, Sync, Project, Record, Event, Consumer, ConsumerMessage, SyncCollection,
    IdempotencyKey,
]
