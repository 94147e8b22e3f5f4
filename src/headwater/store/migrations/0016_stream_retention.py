"""Bounded streams: each stream's retention (`retention_days`, 7 unless set), consumers' health as
the pruner finds it (headwater.store.retention), and an index on event (stream_id, seq), which the
pruner walks a stream by in order; it replaces the index on stream_id alone."""

from peewee import BigIntegerField, CharField, DateTimeField, DoubleField, TextField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("stream", "retention_days", DoubleField(default=7.0)),
        migrator.add_column("consumer", "health_status", CharField(default="healthy")),
        migrator.add_column("consumer", "health_last_error", TextField(default="")),
        migrator.add_column("consumer", "health_last_error_at", DateTimeField(null=True)),
        migrator.add_column("consumer", "dropped_messages", BigIntegerField(default=0)),
    )
    db.execute_sql("CREATE INDEX IF NOT EXISTS event_stream_id_seq ON event (stream_id, seq)")
    db.execute_sql("DROP INDEX IF EXISTS event_stream_id")
