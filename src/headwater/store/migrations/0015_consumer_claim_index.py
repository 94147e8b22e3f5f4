"""A claim's head-of-record check reads one index whatever the planner knows: (consumer_id ||
record_id, event_id) replaces (consumer_id, record_id, event_id).

A claim (headwater.engine.queue.claim) walks a consumer's messages in event order and keeps those
that are the oldest unparked message of their record: for each, "is there an older unparked one
of the same record?", an index probe. With (consumer_id, record_id, event_id), PostgreSQL, while
it has no statistics for the table (a queue filled in the minute before autovacuum looks at it),
answered the probe from (consumer_id, event_id) instead, walking the consumer's whole queue for
each candidate (seconds per claim at a few thousand messages). The probe now compares the
expression this index holds (consumer ids are fixed-length uuids, so the concatenation names one
pair), which no other index can answer. On PostgreSQL the table is also analyzed sooner than the
default (after 2% of its rows changed rather than 10%), since a queue's size swings widely.
"""


from peewee import PostgresqlDatabase


def up(migrator, db):
    db.execute_sql("DROP INDEX IF EXISTS consumer_message_consumer_id_record_id_event_id")
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS consumer_message_head ON consumer_message ((consumer_id || record_id), event_id)"
    )
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql("ALTER TABLE consumer_message SET (autovacuum_analyze_scale_factor = 0.02)")
