"""MutationService: write records back upstream, record them, stream them, and optionally wait
until named consumers have processed them (read-your-writes).

One call, in this order:
  1. validate the whole request (kind, sync, collection, every record, the consumers to await):
     a mistake answers 400 naming the field (`records[2].upstream_id`) and nothing goes upstream;
  2. claim the idempotency key, if any (headwater.store.idempotency): a row unique per
     (organisation, key) is inserted before anything is sent, so of two concurrent calls with one
     key only one runs; a key already used answers its stored first answer (or 409 while that call
     still runs, 400 for another mutation). The call holds the key under a lease it renews while it
     runs; a key whose lease ran out (its process died) is taken over by the retry, which resumes;
  3. for each record in order: one upstream write (`upstream.writes.write_record`, through the
     credential's paced gateway), then at once `apply_changes` in one transaction (record +
     stream event + consumer messages + the record kept against the key). A failure at record k
     stops the batch: records before k stay applied, recorded and streamed, and the error's
     details (MutationFailure) list them;
  4. with `await_consumer_ids`, wait (without holding a database connection) until those
     consumers have acked the events this mutation produced: `backend.acks.wait`;
  5. store the answer under the idempotency key, and answer {"records": [...]}.

Resuming a call that died: the records it applied are not written again; the one it may have been
writing when it died (the next) is sent again only where that cannot write it twice (the provider
dedupes by the catalogue's `idempotency_header`, which gets the same key; an update sends the same
data; a delete that finds the record gone, 404, is done). A create at a provider without
deduplication cannot be learnt: the answer is an error saying so (UNKNOWN, 500).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field

import grpc
from google.protobuf import json_format
from google.rpc import status_pb2

from headwater.errors import ApiError, invalid, not_found, raise_if_invalid
from headwater.inputs import string_problem
from headwater.engine.queue import record_json, record_to_proto
from headwater.rest import JsonAnswer, integral_numbers
from headwater.services._common import Backend
from headwater.store import Sync, new_id
from headwater.store.idempotency import (
    Claim,
    KeyTakenOver,
    claim_key,
    forget_expired_keys,
    give_up_key,
    record_applied,
    release_key,
    renew_key,
    store_answer,
)
from headwater.store.models import Consumer
from headwater.store.records import Change, apply_changes, record_document
from headwater.upstream.accounts import UpstreamAccount
from headwater.upstream.catalogue import Collection
from headwater.upstream.writes import KINDS, write_record
from headwater.v1 import common_pb2, mutation_pb2, mutation_pb2_grpc

MAX_BATCH = 100  # records (or upstream ids) per mutation
DEFAULT_AWAIT_MS = 30_000
MAX_AWAIT_MS = 600_000
DEFAULT_TIMEOUT = 30.0  # seconds for the upstream calls when a gRPC caller sets no deadline
ANSWER_MARGIN = 0.2  # seconds kept before the caller's deadline to record and answer
MAX_KEY_CHARS = 255
IDEMPOTENCY_HEADER = "idempotency-key"  # over REST; the bridge passes headers on as metadata

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """A validated mutation: what to write, where, and what to wait for."""

    kind: str
    sync: Sync
    collection: Collection
    field: str  # the request's list: "records", "data" or "upstream_ids"
    items: list[tuple[str, dict | None]]  # (upstream id, data) in order
    consumer_ids: list[str]
    await_seconds: float
    key: str  # the idempotency key, "" for none
    request_hash: str


@dataclass
class Progress:
    applied: list[dict] = field(default_factory=list)  # record documents, in order
    event_seqs: list[int] = field(default_factory=list)  # the events they produced
    uncertain: bool = False  # a write is in flight, or failed in a way that may have changed the upstream
    in_doubt: int | None = None  # the record a call that died may have been writing (taking over)
    answered: bool = False  # the key's answer was stored with the last record (`_apply_change`)

    @classmethod
    def left_by(cls, claim: Claim) -> Progress:
        """Where the call whose key was taken over stopped: what it applied; the next record may
        have been in flight."""
        applied = claim.applied or {"records": [], "event_seqs": []}
        return cls(list(applied["records"]), list(applied["event_seqs"]), in_doubt=len(applied["records"]))


class MutationServicer(mutation_pb2_grpc.MutationServiceServicer):
    def __init__(self, backend: Backend, lease_seconds: float):
        self.backend = backend
        self.lease_seconds = lease_seconds  # of an idempotency key, renewed every third of it

    async def RunMutation(self, request, context):
        """Runs the mutation (`_run`), timed in the metrics by provider, kind and result."""
        began, about, result = time.monotonic(), {"provider": ""}, "ok"
        try:
            return await self._run(request, context, about)
        except ApiError as error:
            result = error.code.name
            raise
        except BaseException:
            result = "interrupted"  # the caller went away, the server stops, or a fault
            raise
        finally:
            kind = request.kind if request.kind in KINDS else "other"
            self.backend.metrics.mutation_done(about["provider"], kind, result, time.monotonic() - began)

    async def _run(self, request, context, about: dict) -> JsonAnswer:
        """The call (see the module's docstring); `about["provider"]` is set once the sync is known."""
        org_id = await self.backend.auth.org_id(context)
        loop = asyncio.get_running_loop()
        remaining = context.time_remaining()
        call_deadline = None if remaining is None else loop.time() + max(0.0, remaining - ANSWER_MARGIN)
        key = _idempotency_key(request, context)
        plan = await self.backend.store.run(self._plan, org_id, request, key, transaction=False)  # reads only
        about["provider"] = plan.sync.provider
        account = await self.backend.accounts.for_sync(org_id, plan.sync.id)

        claim = await self._claim(org_id, plan) if plan.key else None
        if claim is not None and claim.answer is not None:
            return _replay(claim.answer)
        progress = Progress.left_by(claim) if claim is not None and claim.taken_over else Progress()
        try:
            async with self._lease_kept(claim):
                await self._apply(plan, account, call_deadline or loop.time() + DEFAULT_TIMEOUT, progress, claim)
                await self._await_consumers(org_id, plan, progress, call_deadline)
        except KeyTakenOver:
            raise ApiError(grpc.StatusCode.ABORTED, (
                "a retry took this mutation over while this call was stalled; "
                "retry with the idempotency key for its answer"
            )) from None
        except ApiError as error:
            await self._settle(claim, progress, error)
            raise
        except BaseException:
            # Interrupted (a gRPC caller cancelled, the server stops, a fault): a retry takes over now.
            if claim is not None:
                await asyncio.shield(self.backend.store.run(give_up_key, claim))
            raise
        answer = {"records": progress.applied}
        if claim is not None and not progress.answered:
            await self.backend.store.run(store_answer, claim, answer)
        return _replay(answer)

    # --- 1. validation ----------------------------------------------------------------------

    def _plan(self, org_id: str, request, key: str) -> Plan:
        """The validated mutation (call inside store.run). Every mistake is reported at once. Its
        reads (the sync, the consumers to await) stand alone: no transaction needed."""
        kind = request.kind
        violations = []
        if kind not in KINDS:
            violations.append(("kind", f"must be one of {', '.join(KINDS)}"))
        for name in ("sync_id", "collection_id"):
            if not getattr(request, name):
                violations.append((name, "is required"))
        if request.records and request.data:
            violations.append(("data", "is another name for records; give one of the two"))
        list_name = "data" if request.data and not request.records else "records"
        records = request.data or request.records
        items: list[tuple[str, dict | None]] = []
        if kind == "delete":
            list_name = "upstream_ids"
            if records:
                violations.append(("records", "a delete takes upstream_ids, not records"))
            violations += _batch_size("upstream_ids", request.upstream_ids, "upstream ids")
            for i, upstream_id in enumerate(request.upstream_ids):
                if not upstream_id.strip():
                    violations.append((f"upstream_ids[{i}]", "must not be empty"))
                items.append((upstream_id, None))
        elif kind in KINDS:
            if request.upstream_ids:
                violations.append(("upstream_ids", f"only a delete takes upstream_ids; a {kind} takes records"))
            violations += _batch_size(list_name, records, "records")
            for i, record in enumerate(records):
                where = f"{list_name}[{i}]"
                if kind == "update" and not record.upstream_id.strip():
                    violations.append((f"{where}.upstream_id", "is required for an update"))
                if kind == "create" and record.upstream_id:
                    violations.append((f"{where}.upstream_id", "is given by the upstream; leave it out of a create"))
                if not record.data.fields:
                    violations.append((f"{where}.data", "is required: the fields to write"))
                items.append((record.upstream_id, integral_numbers(json_format.MessageToDict(record.data))))
        for i, consumer_id in enumerate(request.await_consumer_ids):
            if not consumer_id:
                violations.append((f"await_consumer_ids[{i}]", "must not be empty"))
        await_ms = DEFAULT_AWAIT_MS
        if request.HasField("await_consumers_timeout"):
            await_ms = request.await_consumers_timeout
            if not 1 <= await_ms <= MAX_AWAIT_MS:
                violations.append(("await_consumers_timeout", f"must be 1 to {MAX_AWAIT_MS} milliseconds"))
        if problem := string_problem(key, MAX_KEY_CHARS):  # the header's value is no message field
            violations.append(("idempotency_key", problem))
        raise_if_invalid(violations)

        sync = Sync.get_or_none((Sync.id == request.sync_id) & (Sync.org == org_id))
        if sync is None:
            raise not_found("sync", request.sync_id)
        collection = self.backend.catalogue.collection(request.collection_id)
        if request.collection_id not in sync.collection_ids or collection is None:
            carried = ", ".join(sync.collection_ids) or "none"
            raise invalid("collection_id", f"sync {sync.id} does not carry {request.collection_id} (it carries {carried})")
        if collection.write is None or getattr(collection.write, kind) is None:
            raise invalid("kind", f"Headwater cannot {kind} {collection.id} records upstream")
        consumer_ids = list(dict.fromkeys(request.await_consumer_ids))
        consumers = {}
        if consumer_ids:  # most mutations await none: no query for them
            consumers = {c.id: c for c in Consumer.visible_to(org_id).where(Consumer.id.in_(consumer_ids))}
        for i, consumer_id in enumerate(consumer_ids):
            if consumer_id not in consumers:
                raise not_found("consumer", consumer_id)
            if consumers[consumer_id].stream_id != sync.stream_id:
                violations.append((f"await_consumer_ids[{i}]", (
                    f"consumer {consumer_id} reads stream {consumers[consumer_id].stream_id}, not the sync's "
                    f"stream {sync.stream_id}, so it never sees this mutation"
                )))
        raise_if_invalid(violations)
        what = json.dumps([kind, sync.id, collection.id, items], sort_keys=True, separators=(",", ":"))
        return Plan(
            kind=kind, sync=sync, collection=collection, field=list_name, items=items,
            consumer_ids=consumer_ids, await_seconds=await_ms / 1000, key=key,
            request_hash=hashlib.sha256(what.encode()).hexdigest(),
        )

    # --- 2. the idempotency key ----------------------------------------------------------------

    async def _claim(self, org_id: str, plan: Plan) -> Claim:
        """The key, held by this call (new or taken over), or with the stored answer of its first call."""
        def claim_and_tidy() -> Claim:  # one transaction: a new key clears some expired ones with it
            claim = claim_key(org_id, plan.key, plan.request_hash, new_id(), self.lease_seconds)
            if claim.answer is None and not claim.taken_over:
                forget_expired_keys(org_id)
            return claim

        return await self.backend.store.run(claim_and_tidy)

    @contextlib.asynccontextmanager
    async def _lease_kept(self, claim: Claim | None):
        """Renews the key's lease every third of its ttl while the block runs (the heartbeat)."""
        if claim is None:
            yield
            return
        heartbeat = asyncio.create_task(self._renew_lease(claim))
        try:
            yield
        finally:
            heartbeat.cancel()
            await asyncio.wait([heartbeat])  # a renewal in flight lands before the key is settled

    async def _renew_lease(self, claim: Claim) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                if not await self.backend.store.run(renew_key, claim, self.lease_seconds):
                    return  # taken over: the next record's write finds it out and stops the call
            except Exception:
                log.exception("could not renew idempotency key %s; the next renewal tries again", claim.key_id)

    async def _settle(self, claim: Claim | None, progress: Progress, error: ApiError) -> None:
        """After a failure: keep the error as the key's answer if the upstream may have changed;
        else free the key, so that a retry with it runs afresh."""
        if claim is None:
            return
        if progress.applied or progress.uncertain:
            stored = {"error": {
                "status": error.to_status().SerializeToString().hex(),
                "http_status": error.http_status,
                "headers": error.headers,
            }}
            await self.backend.store.run(store_answer, claim, stored)
        else:
            await self.backend.store.run(release_key, claim)

    # --- 3. the writes -------------------------------------------------------------------------

    async def _apply(self, plan: Plan, account: UpstreamAccount, deadline: float, progress: Progress,
                     claim: Claim | None) -> None:
        # One key per record where the upstream dedupes writes (Stripe): the caller's for a single
        # record, "<key>:<index>" in a batch; without a key of the caller's, a fresh one per call,
        # which lets the gateway retry a write that failed on the way safely.
        base_key = plan.key or f"hw-{uuid.uuid4()}"
        for index, (upstream_id, data) in enumerate(plan.items):
            if index < len(progress.applied):
                continue  # applied by the call whose key this one took over
            in_doubt = index == progress.in_doubt
            if in_doubt and not _safe_to_send_again(plan):
                progress.uncertain = True
                raise _unknown_outcome(plan, account, progress, index)
            upstream_key = base_key if len(plan.items) == 1 else f"{base_key}:{index}"
            progress.uncertain = True  # until the upstream has answered
            try:
                change = await write_record(
                    self.backend.upstream, account, plan.collection, plan.kind, upstream_id, data, upstream_key,
                    deadline, params=plan.sync.metadata,
                )
            except ApiError as error:
                if not (in_doubt and plan.kind == "delete" and error.code == grpc.StatusCode.NOT_FOUND):
                    progress.uncertain = error.code in (grpc.StatusCode.DEADLINE_EXCEEDED,
                                                        grpc.StatusCode.UNAVAILABLE)
                    raise _record_failed(plan, progress, index, error) from None
                change = Change.delete(upstream_id)  # the delete of the call that died went through
            progress.uncertain = False
            document, event_seq = await self.backend.store.run(self._apply_change, plan, change, progress, claim)
            progress.applied.append(document)
            if event_seq is not None:
                progress.event_seqs.append(event_seq)

    def _apply_change(self, plan: Plan, change: Change, progress: Progress, claim: Claim | None):
        """Applies the record's change, and keeps it against the key (call inside store.run):
        one transaction, so a retry that takes the key over knows exactly what was applied."""
        [written] = apply_changes(plan.sync, plan.collection.id, [change])
        document = record_document(written.record)
        event_seq = None if written.event is None else written.event.seq
        if claim is not None:
            applied = {"records": [*progress.applied, document],
                       "event_seqs": [*progress.event_seqs, *([] if event_seq is None else [event_seq])]}
            # The last record of a call that awaits no consumer: its answer is known now.
            last = len(applied["records"]) == len(plan.items) and not plan.consumer_ids
            record_applied(claim, applied, self.lease_seconds, {"records": applied["records"]} if last else None)
            progress.answered = last
        return document, event_seq

    # --- 4. read-your-writes ---------------------------------------------------------------------

    async def _await_consumers(self, org_id: str, plan: Plan, progress: Progress, call_deadline: float | None):
        if not plan.consumer_ids or not progress.event_seqs:
            return
        timeout = plan.await_seconds
        if call_deadline is not None:
            timeout = min(timeout, max(0.0, call_deadline - asyncio.get_running_loop().time()))
        pending = await self.backend.acks.wait(org_id, plan.consumer_ids, progress.event_seqs, timeout)
        if pending:
            raise ApiError(
                grpc.StatusCode.INTERNAL,
                f"Timed out waiting for consumers: {', '.join(pending)}",
                details=[mutation_pb2.MutationFailure(applied=[_record(d) for d in progress.applied])],
            )


# --- helpers ---------------------------------------------------------------------------------------


def _idempotency_key(request, context) -> str:
    """The request's `idempotency_key`, or the Idempotency-Key header (REST) / metadata (gRPC)."""
    sent = dict(context.invocation_metadata()).get(IDEMPOTENCY_HEADER, "").strip()
    key = request.idempotency_key.strip()
    if key and sent and key != sent:
        raise invalid("idempotency_key", "differs from the Idempotency-Key header; give one of the two")
    return key or sent


def _batch_size(name: str, values, what: str) -> list[tuple[str, str]]:
    if not values:
        return [(name, f"is required: 1 to {MAX_BATCH} {what}")]
    if len(values) > MAX_BATCH:
        return [(name, f"at most {MAX_BATCH} {what} per mutation; got {len(values)}")]
    return []


def _replay(answer: dict) -> JsonAnswer:
    """The answer of a call: its records (the REST answer made from their documents as they are),
    or its error raised again."""
    if "error" in answer:
        stored = answer["error"]
        raise ApiError.from_status(
            status_pb2.Status.FromString(bytes.fromhex(stored["status"])),
            headers=stored["headers"], http_status=stored["http_status"],
        )
    records = answer["records"]
    return JsonAnswer({"records": [record_json(d) for d in records]},
                      lambda: mutation_pb2.RunMutationResponse(records=[_record(d) for d in records]))


def _record(document: dict) -> common_pb2.Record:
    return record_to_proto(document)


def _safe_to_send_again(plan: Plan) -> bool:
    """Whether a write that may already have reached the upstream can be sent again without
    writing twice: the upstream dedupes it by our key, or it is an update or a delete."""
    return bool(plan.collection.write.idempotency_header) or plan.kind in ("update", "delete")


def _unknown_outcome(plan: Plan, account: UpstreamAccount, progress: Progress, index: int) -> ApiError:
    """The answer for a create that a call which died may or may not have made upstream."""
    name = account.provider.name
    message = (
        f"the call running this mutation stopped before {name} answered the create of {plan.field}[{index}], and "
        f"{name} cannot tell whether it was made; the next sync will record the {plan.collection.name} if it was"
    )
    return ApiError(grpc.StatusCode.UNKNOWN, message, details=[_failure_detail(plan, progress, index, message)])


def _record_failed(plan: Plan, progress: Progress, index: int, error: ApiError) -> ApiError:
    """The upstream's error for record `index`, naming it and listing what was applied."""
    return ApiError(
        error.code,
        error.message,  # the upstream's, e.g. "Salesforce validation error: `Invalid email`"
        field_violations=[(f"{plan.field}[{index}]", error.message)]
        if error.code == grpc.StatusCode.INVALID_ARGUMENT else (),
        details=[*error.details, _failure_detail(plan, progress, index, error.message)],
        headers=error.headers,
        http_status=error.http_status,
    )


def _failure_detail(plan: Plan, progress: Progress, index: int, error: str) -> mutation_pb2.MutationFailure:
    failed = [mutation_pb2.FailedMutationRecord(index=index, upstream_id=plan.items[index][0], error=error)] \
        if index < len(plan.items) else []
    failed += [
        mutation_pb2.FailedMutationRecord(index=i, upstream_id=upstream_id, error="not attempted")
        for i, (upstream_id, _) in enumerate(plan.items) if i > index
    ]
    return mutation_pb2.MutationFailure(applied=[_record(d) for d in progress.applied], failed=failed)
