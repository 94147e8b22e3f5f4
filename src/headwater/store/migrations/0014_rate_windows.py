"""A sync's rate limit may hold several windows (HubSpot's 100 per 10 s and 250,000 per day): the
windows beside the first, as a JSON list of [allowed_requests, interval] pairs (none until now)."""

from peewee import TextField


def up(migrator, db):
    migrator.migrate(migrator.add_column("sync", "rate_windows", TextField(default="[]")))
