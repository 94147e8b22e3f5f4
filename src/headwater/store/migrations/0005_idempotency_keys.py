"""Idempotency keys of mutations: the first call's answer, replayed for 24 hours."""

from peewee import CharField, DateTimeField, ForeignKeyField, Model, TextField


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Org(Base):
        id = CharField(primary_key=True)

    class IdempotencyKey(Base):
        id = CharField(primary_key=True)
        org = ForeignKeyField(Org, on_delete="CASCADE")
        key = CharField()
        request_hash = CharField()
        answer = TextField(null=True)
        created_at = DateTimeField()
        expires_at = DateTimeField(index=True)

        class Meta:
            indexes = ((("org", "key"), True),)

    db.create_tables([IdempotencyKey])
