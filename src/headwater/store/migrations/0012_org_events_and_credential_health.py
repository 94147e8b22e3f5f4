"""An organisation's events stream: streams get a kind."""

from peewee import CharField


def up(migrator, db):
    migrator.migrate(migrator.add_column("stream", "kind", CharField(default="records")))
