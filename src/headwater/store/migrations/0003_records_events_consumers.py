"""Records, the events of their streams, consumers, and the messages owed to consumers."""

from peewee import (
    BigAutoField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Org(Base):
        id = CharField(primary_key=True)

    class Stream(Base):
        id = CharField(primary_key=True)

    class Sync(Base):
        id = CharField(primary_key=True)

    class Record(Base):
        id = CharField(primary_key=True)
        org = ForeignKeyField(Org, on_delete="CASCADE")
        sync = ForeignKeyField(Sync, on_delete="CASCADE")
        collection_id = CharField()
        upstream_id = CharField()
        upstream_updated_at = DateTimeField(null=True)
        data = TextField()
        deleted = BooleanField()
        inserted_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            indexes = ((("sync", "collection_id", "upstream_id"), True),)

    class Event(Base):
        seq = BigAutoField()
        stream = ForeignKeyField(Stream, on_delete="CASCADE")
        org = ForeignKeyField(Org, on_delete="CASCADE")
        sync_id = CharField()
        collection_id = CharField()
        record_id = CharField()
        action = CharField()
        record = TextField()
        created_at = DateTimeField()

    class Consumer(Base):
        id = CharField(primary_key=True)
        org = ForeignKeyField(Org, on_delete="CASCADE")
        stream = ForeignKeyField(Stream, on_delete="CASCADE")
        name = CharField()
        kind = CharField()
        filters = TextField()
        deliver_policy = CharField()
        ack_wait_ms = IntegerField()
        max_deliver = IntegerField()
        max_ack_pending = IntegerField()
        webhook_url = TextField()
        webhook_secret = TextField()
        created_at = DateTimeField()
        updated_at = DateTimeField()

    class ConsumerMessage(Base):
        id = BigAutoField()
        consumer = ForeignKeyField(Consumer, on_delete="CASCADE")
        event = ForeignKeyField(Event, on_delete="CASCADE")
        record_id = CharField()
        state = CharField()
        deliver_count = IntegerField()
        visible_at = DateTimeField()
        ack_token = CharField(null=True, unique=True)
        last_error = TextField()
        created_at = DateTimeField()

        class Meta:
            indexes = (
                (("consumer", "state", "visible_at"), False),
                (("consumer", "record_id", "event"), False),
            )

    db.create_tables([Record, Event, Consumer, ConsumerMessage])
