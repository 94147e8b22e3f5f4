"""A claim's head-of-record check reads one index whatever the planner knows: (consumer_id ||
record_id, event_id) replaces (consumer_id, record_id, event_id); and the index on consumer_id
alone goes, since (consumer_id, event_id) answers whatever it did.

A claim (headwater.engine.queue.claim) walks a consumer's messages in event order and keeps those
that are the oldest unparked message of their record: for each, "is there an older unparked one
of the same record?", an index probe. With (consumer_id, record_id, event_id), PostgreSQL, while
it has no statistics for the table (a queue filled in the minute before autovacuum looks at it),
answered the probe from (consumer_id, event_id) instead, walking the consumer's queue up to the
candidate for each one (a claim's cost growing with the backlog's length). The probe now compares the
expression this index holds (consumer ids are fixed-length uuids, so the concatenation names one
pair), which no other index can answer. On PostgreSQL the table is also analyzed sooner than the
default (after 2% of its rows changed rather than 10%), since a queue's size swings widely.

A claim changes indexed columns (state, visible_at, ack_token), so each claimed row is written
into every index of the table again: one index fewer is a seventh less of that work.
"""

from peewee import PostgresqlDatabase


def up(migrator, db):
    db.execute_sql("DROP INDEX IF EXISTS consumer_message_consumer_id_record_id_event_id")
    db.execute_sql("DROP INDEX IF EXISTS consumer_message_consumer_id")
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS consumer_message_head ON consumer_message ((consumer_id || record_id), event_id)"
    )
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql("ALTER TABLE consumer_message SET (autovacuum_analyze_scale_factor = 0.02)")
