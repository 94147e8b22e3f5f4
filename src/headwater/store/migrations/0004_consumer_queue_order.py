"""Consumer queues are read oldest first: an index in that order (consumer, event).

A claim walks a consumer's messages in event order and stops after its batch, instead of sorting
the whole backlog each time (see headwater.engine.queue.claim)."""


def up(migrator, db):
    migrator.migrate(migrator.add_index("consumer_message", ("consumer_id", "event_id"), False))
