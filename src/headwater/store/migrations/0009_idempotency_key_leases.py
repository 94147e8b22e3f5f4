"""A running idempotency key has an owner (the call running it) and a lease that call renews, and
it keeps what that call has applied so far, so that a retry can take over a key whose process died.

A key left running by an older version has no owner and no lease: a retry takes it over at once."""

from peewee import CharField, DateTimeField, TextField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("idempotency_key", "owner", CharField(default="")),
        migrator.add_column("idempotency_key", "lease_expires_at", DateTimeField(null=True)),
        migrator.add_column("idempotency_key", "applied", TextField(null=True)),
    )
