"""Organisations, API tokens, streams, credentials and syncs.

A frozen copy of the tables as they were when this migration was written, deliberately
independent of headwater.store.models (which moves on as later migrations change the schema).
"""

from peewee import CharField, DateTimeField, ForeignKeyField, IntegerField, Model, TextField


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Org(Base):
        id = CharField(primary_key=True)
        name = CharField(unique=True)
        created_at = DateTimeField()

    class ApiToken(Base):
        id = CharField(primary_key=True)
        org = ForeignKeyField(Org, on_delete="CASCADE")
        token_hash = CharField(unique=True)
        name = CharField()
        created_at = DateTimeField()

    class Stream(Base):
        id = CharField(primary_key=True)
        org = ForeignKeyField(Org, on_delete="CASCADE")
        name = CharField()
        created_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            indexes = ((("org", "name"), True),)

    class Credential(Base):
        id = CharField(primary_key=True)
        org = ForeignKeyField(Org, on_delete="CASCADE")
        provider = CharField()
        kind = CharField()
        properties = TextField()
        secrets = TextField()
        oauth_app_id = CharField()
        metadata = TextField(null=True)
        external_id = CharField(index=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()

    class Sync(Base):
        id = CharField(primary_key=True)
        org = ForeignKeyField(Org, on_delete="CASCADE")
        provider = CharField()
        stream = ForeignKeyField(Stream, on_delete="RESTRICT")
        credential = ForeignKeyField(Credential, on_delete="RESTRICT")
        name = CharField()
        status = CharField()
        health_status = CharField()
        health_last_error = TextField()
        health_last_error_at = DateTimeField(null=True)
        collection_ids = TextField()
        rate_allowed_requests = IntegerField()
        rate_interval = IntegerField()
        rate_max_concurrent = IntegerField()
        max_age_days = IntegerField(null=True)
        sync_frequency = CharField()
        initial_backfill_completed_at = DateTimeField(null=True)
        metadata = TextField(null=True)
        external_id = CharField(index=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()

    db.create_tables([Org, ApiToken, Stream, Credential, Sync])
