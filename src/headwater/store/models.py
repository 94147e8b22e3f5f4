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
    CharField,
    DatabaseProxy,
    DateTimeField,
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


class Stream(BaseModel):
    id = CharField(primary_key=True, default=new_id)
    org = ForeignKeyField(Org, on_delete="CASCADE")
    name = CharField()
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("org", "name"), True),)


class Credential(BaseModel):
    id = CharField(primary_key=True, default=new_id)
    org = ForeignKeyField(Org, on_delete="CASCADE")
    provider = CharField()
    kind = CharField()
    # Non-secret properties in the clear; secret ones as one encrypted JSON object.
    properties = JSONField(default=dict)
    secrets = TextField()
    oauth_app_id = CharField(default="")
    metadata = JSONField(null=True)
    external_id = CharField(default="", index=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)


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


ALL_MODELS = [Org, ApiToken, Stream, Credential, Sync, Project]
