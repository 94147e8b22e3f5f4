"""Sync engine state: one row per (sync, collection) with its cursor, progress, last error and lease."""

from peewee import AutoField, CharField, DateTimeField, ForeignKeyField, IntegerField, Model, TextField


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Sync(Base):
        id = CharField(primary_key=True)

    class SyncCollection(Base):
        id = AutoField()
        sync = ForeignKeyField(Sync, on_delete="CASCADE")
        collection_id = CharField()
        backfill_state = CharField()
        cursor = TextField(null=True)
        records_synced = IntegerField()
        backfill_started_at = DateTimeField(null=True)
        backfill_completed_at = DateTimeField(null=True)
        last_synced_at = DateTimeField(null=True)
        next_run_at = DateTimeField()
        health = CharField()
        failures = IntegerField()
        last_error = TextField()
        last_error_at = DateTimeField(null=True)
        lease_owner = CharField(null=True)
        lease_expires_at = DateTimeField(null=True)

        class Meta:
            indexes = (
                (("sync", "collection_id"), True),
                (("next_run_at",), False),
            )

    db.create_tables([SyncCollection])
