"""What the lists show, one row per object, from the API's JSON of it (as REST answers it): the
console's tables and the CLI's `syncs list`, `credentials list` and `consumers list` both use these,
so they show the same columns.

    sync_row(sync)                  # {"id": ..., "name": ..., "health": "healthy", "backfill": "2/3 done", ...}
    SYNC_COLUMNS                    # {"id": "ID", "name": "NAME", ...}: the columns, in order, and their headings
"""

from __future__ import annotations

SYNC_COLUMNS = {
    "id": "ID", "name": "NAME", "provider": "PROVIDER", "status": "STATUS", "health": "HEALTH",
    "backfill": "BACKFILL", "records_synced": "RECORDS", "last_synced_at": "LAST PASS",
}
CREDENTIAL_COLUMNS = {
    "id": "ID", "provider": "PROVIDER", "name": "NAME", "external_id": "EXTERNAL ID", "health": "HEALTH",
    "budget": "BUDGET USED",
}
CONSUMER_COLUMNS = {
    "id": "ID", "name": "NAME", "kind": "KIND", "stream_id": "STREAM", "num_pending": "PENDING",
    "num_ack_pending": "ACK PENDING", "num_parked": "PARKED",
}
COLLECTION_COLUMNS = {
    "collection_id": "COLLECTION", "backfill_state": "BACKFILL", "records_synced": "RECORDS", "health": "HEALTH",
    "last_synced_at": "LAST PASS",
}


def backfill_summary(progress: list[dict]) -> tuple[int, int]:
    """(collections whose backfill is done, collections)."""
    return sum(p["backfill_state"] == "completed" for p in progress), len(progress)


def sync_row(sync: dict) -> dict:
    progress = sync["progress"]
    done, total = backfill_summary(progress)
    passes = [p["last_synced_at"] for p in progress if p["last_synced_at"]]
    return {
        "id": sync["id"],
        "name": sync["name"] or "",
        "provider": sync["provider"],
        "status": sync["status"],
        "health": sync["health"]["status"],
        "backfill": "done" if sync["initial_backfill_completed_at"] else f"{done}/{total} done",
        "records_synced": sum(int(p["records_synced"]) for p in progress),
        "last_synced_at": max(passes) if passes else None,
    }


def collection_row(progress: dict) -> dict:
    return {name: progress[name] for name in COLLECTION_COLUMNS} | {"records_synced": int(progress["records_synced"])}


def budget_summary(budget: dict | None) -> str:
    """What a credential's budget has used: "3/100 per 60 s, 40/1000 per 86400 s", "paused" when
    an upstream's answer holds it back; "" when unknown (the shared pacer unreachable)."""
    if not budget:
        return ""
    text = ", ".join(f"{w['used']}/{w['allowed_requests']} per {w['interval']} s" for w in budget["windows"])
    if budget.get("pause") and budget["pause"].get("ends_at"):
        text += f" (paused until {budget['pause']['ends_at']})"
    return text


def credential_row(credential: dict, budget: dict | None) -> dict:
    properties = credential["properties"] or {}
    return {
        "id": credential["id"],
        "provider": credential["provider"],
        "name": str(properties.get("name") or ""),
        "external_id": credential["external_id"] or "",
        "health": credential["health"]["status"] if credential["health"] else "healthy",
        "budget": budget_summary(budget),
    }


def consumer_row(consumer: dict) -> dict:
    backlog = consumer["backlog"] or {}
    return {
        "id": consumer["id"],
        "name": consumer["name"] or "",
        "kind": consumer["kind"],
        "stream_id": consumer["stream_id"],
        **{key: backlog.get(key, 0) for key in ("num_pending", "num_ack_pending", "num_parked")},
    }
