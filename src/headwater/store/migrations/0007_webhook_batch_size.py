"""Webhook consumers choose how many changes one POST carries (until now always 50)."""

from peewee import IntegerField


def up(migrator, db):
    migrator.migrate(migrator.add_column("consumer", "webhook_batch_size", IntegerField(default=50)))
