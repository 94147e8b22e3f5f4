"""Persistence: Peewee models over SQLite (default) or PostgreSQL, used without blocking the loop."""

from headwater.store.database import Store, open_database
from headwater.store.models import ApiToken, Credential, Org, Project, Stream, Sync, new_id, utcnow

__all__ = ["Store", "open_database", "ApiToken", "Credential", "Org", "Project", "Stream", "Sync", "new_id", "utcnow"]
