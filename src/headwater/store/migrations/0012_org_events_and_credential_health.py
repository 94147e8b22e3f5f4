"""An organisation's events stream (streams get a kind), and credentials' health."""

from peewee import CharField, DateTimeField, TextField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("stream", "kind", CharField(default="records")),
        migrator.add_column("credential", "health_status", CharField(default="healthy")),
        migrator.add_column("credential", "health_last_error", TextField(default="")),
        migrator.add_column("credential", "health_last_error_at", DateTimeField(null=True)),
    )
