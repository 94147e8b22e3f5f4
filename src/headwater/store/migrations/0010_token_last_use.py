"""API tokens remember when they were last used (`headwater tokens list`), to the minute."""

from peewee import DateTimeField


def up(migrator, db):
    migrator.migrate(migrator.add_column("api_token", "last_used_at", DateTimeField(null=True)))
