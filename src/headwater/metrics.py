"""Prometheus metrics: every instrument of a server, and `GET /metrics` in Prometheus's text format.

    metrics = Metrics(per_credential=False)      # the server makes one and hands it to the mechanisms
    metrics.upstream_answered("stripe", "cred-1", "success", 200, 0.012)   # Upstream.send, per attempt
    body, content_type = await metrics.scrape(store, pacer, accept)      # what GET /metrics answers

Where each figure comes from (one place each, the shared mechanism, never a call site):

    the upstream pipeline (Upstream.send)    requests, their latency, budget waits, pauses, refusals
    the proxy (ProxyServicer.forward)        proxied calls by route and status
    the sync engine (SyncEngine)             records written, failed reads
    the claim of a batch (pull and webhook)  deliveries and redeliveries
    webhook delivery (WebhookDelivery)       POSTs and their failures, their latency
    mutations (MutationServicer)             a mutation's latency
    the server                               event-loop lag; the process (prometheus_client's collectors)
    at scrape time, from the store           syncs and credentials by health, backfill progress,
                                             seconds since the last pass, consumer queues
    at scrape time, from the pacer           each recently used budget window's use, pauses

What comes from the store is read when Prometheus scrapes (four aggregate queries,
headwater.store.stats), not kept up to date by hand: it is the same from every replica
(aggregate it with max(), not sum()). The rest counts what this process did.

Labels are bounded: providers, collections and outcomes come from the catalogue and the code,
statuses from HTTP. Ids of credentials, syncs and consumers are labels only with
`per_credential` (HEADWATER_METRICS_PER_CREDENTIAL=1): a series per id, which a big instance
may not want. Without it, the per-id figures are summed (budget windows) or counted.

Why not prometheus_client's Counter and Histogram: each update takes a lock, and a proxied
request makes four: 2.8 us with them, 1.2 us with the instruments below, of a request's ~170-260
us of CPU (bench/metrics_bench.py; the bar is 2%). Every update happens on the event loop's one
thread, so these are plain numbers in dicts, handed to prometheus_client as metric families when
it collects (its registry, exposition, parsers and process collectors are used as they are).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from headwater.store.models import utcnow
from headwater.store.stats import OperationalFigures, operational_figures

log = logging.getLogger("headwater.metrics")

# Seconds: from a fast loopback answer to a slow listing; a budget wait up to a minute.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WAIT_BUCKETS = (0.0, 0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
LOOP_LAG_INTERVAL = 0.5  # seconds between two measurements of the event loop's lag
# Budgets read from the pacer at a scrape: the most recently used ones, each for as long as its
# longest window after its last use (then it is all remaining again, nothing to show).
MAX_BUDGETS_READ = 1000
MIN_BUDGET_KEPT = 60.0  # seconds


class Counter:
    """A counter per label values: `inc(("stripe", "success"))`. Event-loop thread only."""

    __slots__ = ("name", "documentation", "labels", "values")

    def __init__(self, name: str, documentation: str, labels: Iterable[str]):
        self.name = name  # without _total: prometheus_client adds it
        self.documentation = documentation
        self.labels = tuple(labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...], amount: float = 1.0) -> None:
        self.values[key] = self.values.get(key, 0.0) + amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, value in self.values.items():
            family.add_metric(key, value)
        return family


class Histogram:
    """A histogram per label values: `observe(("stripe",), 0.012)`. Event-loop thread only."""

    __slots__ = ("name", "documentation", "labels", "bounds", "series")

    def __init__(self, name: str, documentation: str, labels: Iterable[str], bounds: tuple[float, ...]):
        self.name = name
        self.documentation = documentation
        self.labels = tuple(labels)
        self.bounds = bounds
        # label values -> [count in each bucket (not cumulative) ..., count above the last, sum]
        self.series: dict[tuple[str, ...], list] = {}

    def observe(self, key: tuple[str, ...], value: float) -> None:
        counts = self.series.get(key)
        if counts is None:
            counts = self.series[key] = [0] * (len(self.bounds) + 1) + [0.0]
        counts[bisect.bisect_left(self.bounds, value)] += 1  # the first bucket whose bound is >= value
        counts[-1] += value

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, counts in self.series.items():
            buckets, total = [], 0
            for bound, count in zip((*map(str, self.bounds), "+Inf"), counts):
                total += count
                buckets.append((bound, total))
            family.add_metric(key, buckets, counts[-1])
        return family


def window_name(interval: float) -> str:
    """A budget window's label: "10s", "86400s"."""
    return f"{interval:g}s"


def status_class(status: int) -> str:
    """"2xx" ... "5xx"; "none" when no answer came (a timeout, a refused connection)."""
    return f"{status // 100}xx" if 100 <= status < 600 else "none"


class Metrics:
    """A server's instruments, its registry and its `/metrics` answer (see the module's docstring).

    The instruments are public attributes, each with its labels; the methods below are what the
    mechanisms call, so that each knows nothing of label order or the per-id setting."""

    def __init__(self, per_credential: bool = False):
        self.per_credential = per_credential
        cred = ("credential_id",) if per_credential else ()
        sync = ("sync_id",) if per_credential else ()
        consumer = ("consumer_id",) if per_credential else ()

        # --- the upstream pipeline
        self.upstream_requests = Counter(
            "headwater_upstream_requests",
            "Requests sent upstream (each attempt), by the outcome of the answer (headwater.upstream.outcomes: "
            "success, pause, retry, timeout, unreachable, refresh, permanent) and its status class (none: no answer).",
            ("provider", "outcome", "status_class", *cred))
        self.upstream_duration = Histogram(
            "headwater_upstream_request_duration_seconds",
            "Seconds from sending a request upstream to its answer (or to giving up on it), each attempt.",
            ("provider",), LATENCY_BUCKETS)
        self.budget_wait = Histogram(
            "headwater_budget_wait_seconds",
            "Seconds a request waited for its turn in the credential's budget, each attempt "
            "(priority: interactive for proxy calls and mutations, background for sync reads).",
            ("provider", "priority"), WAIT_BUCKETS)
        self.budget_pauses = Counter(
            "headwater_budget_pauses",
            "Pauses of a credential's budget because an answer said it was spent (a 429, Retry-After, "
            "remaining-budget headers).", ("provider", *cred))
        self.budget_exhausted = Counter(
            "headwater_budget_exhausted",
            "Requests refused (429) because the budget had no turn for them before their deadline; nothing was sent.",
            ("provider", *cred))
        # --- the proxy
        self.proxy_requests = Counter(
            "headwater_proxy_requests",
            "Proxied calls (REST and gRPC) by route (sync, credential, connected_user) and the HTTP status answered "
            "(the upstream's, or Headwater's own error's; 499: the caller went away).",
            ("route", "status"))
        # --- the sync engine
        self.sync_records_written = Counter(
            "headwater_sync_records_written",
            "Changes (inserts, updates, deletes) the sync engine of this process wrote to streams.",
            ("provider", "collection", *sync))
        self.sync_failures = Counter(
            "headwater_sync_failures",
            "Failed reads of a collection, by the health they left it in (degraded: retried; error: needs someone).",
            ("provider", "collection", "health", *sync))
        # --- consumers and webhooks
        self.consumer_deliveries = Counter(
            "headwater_consumer_deliveries",
            "Messages handed to consumers (pull: GET /next and Receive; webhook and events: POSTed).",
            ("kind", *consumer))
        self.consumer_redeliveries = Counter(
            "headwater_consumer_redeliveries",
            "Messages handed out again: not acked in time, nacked, or their webhook POST failed.",
            ("kind", *consumer))
        self.webhook_deliveries = Counter(
            "headwater_webhook_deliveries",
            "Webhook POSTs (kind: webhook consumers, events: event endpoints), by result (success: a 2xx).",
            ("kind", "result", *consumer))
        self.webhook_duration = Histogram(
            "headwater_webhook_duration_seconds", "Seconds a webhook POST took.", ("kind",), LATENCY_BUCKETS)
        # --- mutations
        self.mutation_duration = Histogram(
            "headwater_mutation_duration_seconds",
            "Seconds a mutation call took (validation, upstream writes, recording, waiting for consumers), "
            "by its result (ok, or the gRPC code of its error).",
            ("provider", "kind", "result"), LATENCY_BUCKETS)
        # --- the process
        self.loop_lag = Histogram(
            "headwater_event_loop_lag_seconds",
            f"How late the event loop woke a task that slept {LOOP_LAG_INTERVAL:g} s (measured continually).",
            (), LAG_BUCKETS)
        self.instruments = [
            self.upstream_requests, self.upstream_duration, self.budget_wait, self.budget_pauses,
            self.budget_exhausted, self.proxy_requests, self.sync_records_written, self.sync_failures,
            self.consumer_deliveries, self.consumer_redeliveries, self.webhook_deliveries, self.webhook_duration,
            self.mutation_duration, self.loop_lag,
        ]
        # credential id -> (provider, budget, when it was last used: time.monotonic())
        self._budgets: dict[str, tuple] = {}
        self._scraped: list[Metric] = []  # the store's and pacer's families, during one collect
        self.registry = CollectorRegistry(auto_describe=False)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self.registry.register(self)

    # --- what the mechanisms call (cheap: they run on every request) --------------------------

    def upstream_answered(self, provider: str, credential_id: str, outcome: str, status: int, seconds: float) -> None:
        """One request sent upstream came back (`status` 0: with no answer) after `seconds`."""
        key = (provider, outcome, status_class(status))
        self.upstream_requests.inc((*key, credential_id) if self.per_credential else key)
        self.upstream_duration.observe((provider,), seconds)

    def budget_waited(self, provider: str, credential_id: str, budget, priority: str, seconds: float) -> None:
        """A request got its turn in the credential's `budget` after `seconds`."""
        self.budget_wait.observe((provider, priority), seconds)
        self._budgets[credential_id] = (provider, budget, time.monotonic())

    def budget_paused(self, provider: str, credential_id: str) -> None:
        self.budget_pauses.inc((provider, credential_id) if self.per_credential else (provider,))

    def budget_refused(self, provider: str, credential_id: str) -> None:
        self.budget_exhausted.inc((provider, credential_id) if self.per_credential else (provider,))

    def proxied(self, route: str, status: int) -> None:
        self.proxy_requests.inc((route, str(status)))

    def sync_written(self, provider: str, collection: str, sync_id: str, changes: int) -> None:
        if changes:
            key = (provider, collection)
            self.sync_records_written.inc((*key, sync_id) if self.per_credential else key, changes)

    def sync_failed(self, provider: str, collection: str, sync_id: str, health: str) -> None:
        key = (provider, collection, health)
        self.sync_failures.inc((*key, sync_id) if self.per_credential else key)

    def delivered(self, kind: str, consumer_id: str, deliver_counts: Iterable[int]) -> None:
        """A batch was claimed for a consumer; `deliver_counts`: each message's, this delivery included."""
        key = (kind, consumer_id) if self.per_credential else (kind,)
        counts = list(deliver_counts)
        if counts:
            self.consumer_deliveries.inc(key, len(counts))
            again = sum(1 for count in counts if count > 1)
            if again:
                self.consumer_redeliveries.inc(key, again)

    def webhook_posted(self, kind: str, consumer_id: str, ok: bool, seconds: float) -> None:
        key = (kind, "success" if ok else "failure")
        self.webhook_deliveries.inc((*key, consumer_id) if self.per_credential else key)
        self.webhook_duration.observe((kind,), seconds)

    def mutation_done(self, provider: str, kind: str, result: str, seconds: float) -> None:
        self.mutation_duration.observe((provider, kind, result), seconds)

    async def watch_event_loop(self, interval: float = LOOP_LAG_INTERVAL) -> None:
        """Measures the event loop's lag until cancelled: how late a sleep of `interval` ends."""
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            await asyncio.sleep(interval)
            self.loop_lag.observe((), max(0.0, loop.time() - began - interval))

    # --- GET /metrics ---------------------------------------------------------------------------

    async def scrape(self, store, pacer, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition (Prometheus text, or OpenMetrics if `accept` asks for it) and its
        content type: the instruments, the store's figures and the pacer's, read now."""
        figures = await store.run(operational_figures, utcnow(), self.per_credential, transaction=False)
        families = [*self._store_families(figures), *await self._budget_families(pacer)]
        encoder, content_type = choose_encoder(accept or "")
        self._scraped = families  # collect() yields them; no await until the exposition is made
        try:
            return encoder(self.registry), content_type
        finally:
            self._scraped = []

    def collect(self) -> Iterator[Metric]:
        """prometheus_client's collector protocol: the instruments, and during `scrape` the rest."""
        for instrument in self.instruments:
            yield instrument.family()
        yield from self._scraped

    def _store_families(self, figures: OperationalFigures) -> list[Metric]:
        ids = self.per_credential
        syncs = GaugeMetricFamily(
            "headwater_syncs", "Active syncs by health (healthy, degraded, error).",
            labels=("provider", "health", *(("sync_id",) if ids else ())))
        for labels, count in figures.syncs:
            syncs.add_metric(labels, count)
        credentials = GaugeMetricFamily(
            "headwater_credentials", "Credentials by health (healthy, error: their refresh was refused).",
            labels=("provider", "health", *(("credential_id",) if ids else ())))
        for labels, count in figures.credentials:
            credentials.add_metric(labels, count)
        collection_labels = ("provider", "collection", *(("sync_id",) if ids else ()))
        collections = GaugeMetricFamily(
            "headwater_sync_collections",
            "Collections of active syncs by backfill state (pending, running, completed).",
            labels=("provider", "collection", "backfill_state", *(("sync_id",) if ids else ())))
        synced = GaugeMetricFamily(
            "headwater_sync_records_synced",
            "Changes written so far by the collections of active syncs, by backfill state: while a backfill "
            "runs, its progress.",
            labels=("provider", "collection", "backfill_state", *(("sync_id",) if ids else ())))
        since = GaugeMetricFamily(
            "headwater_sync_seconds_since_last_pass",
            "Seconds since the last finished incremental pass (the longest among the collections counted; "
            "absent until a pass has finished).", labels=collection_labels)
        longest: dict[tuple[str, ...], float] = {}
        for (provider, collection, state, *sync_id), (count, records, seconds) in figures.collections:
            collections.add_metric((provider, collection, state, *sync_id), count)
            synced.add_metric((provider, collection, state, *sync_id), records)
            if seconds is not None:
                key = (provider, collection, *sync_id)
                longest[key] = max(seconds, longest.get(key, 0.0))
        for key, seconds in longest.items():
            since.add_metric(key, seconds)
        consumer_labels = ("kind", *(("consumer_id",) if ids else ()))
        pending = GaugeMetricFamily(
            "headwater_consumer_pending_messages",
            "Messages owed to consumers and not in flight (deliverable now or after a nack's delay).",
            labels=consumer_labels)
        ack_pending = GaugeMetricFamily(
            "headwater_consumer_ack_pending_messages", "Messages delivered and waiting for their ack.",
            labels=consumer_labels)
        parked = GaugeMetricFamily(
            "headwater_consumer_parked_messages", "Messages set aside after max_deliver attempts.",
            labels=consumer_labels)
        for labels, (waiting, in_flight, set_aside) in figures.consumers:
            pending.add_metric(labels, waiting)
            ack_pending.add_metric(labels, in_flight)
            parked.add_metric(labels, set_aside)
        return [syncs, credentials, collections, synced, since, pending, ack_pending, parked]

    async def _budget_families(self, pacer) -> list[Metric]:
        """Each recently used budget's windows as the pacer sees them now (summed per provider and
        window without per-credential labels)."""
        now = time.monotonic()
        for credential_id, (_, budget, used_at) in list(self._budgets.items()):
            if now - used_at > max(MIN_BUDGET_KEPT, *(w.interval for w in budget.windows)):
                del self._budgets[credential_id]
        recent = sorted(self._budgets.items(), key=lambda item: item[1][2], reverse=True)[:MAX_BUDGETS_READ]
        try:
            states = await asyncio.gather(*(pacer.state(cid, budget) for cid, (_, budget, _) in recent))
        except Exception as exc:  # the shared pacer unreachable: the rest of the scrape still answers
            log.warning("metrics: cannot read the budgets from the pacer: %s", exc)
            return []
        ids = self.per_credential
        window_labels = ("provider", "window", *(("credential_id",) if ids else ()))
        credential_labels = ("provider", *(("credential_id",) if ids else ()))
        names = {
            "used": "Requests started in the window's last interval.",
            "remaining": "Requests the window still allows now.",
            "limit": "Requests the window allows per interval.",
        }
        windows = {
            name: GaugeMetricFamily(f"headwater_budget_requests_{name}", text + " Budgets used in the last "
                                    "interval of their longest window.", labels=window_labels)
            for name, text in names.items()
        }
        sums: dict[str, dict[tuple, float]] = {name: {} for name in names}
        waiting, paused = {}, {}
        for (credential_id, (provider, _, _)), state in zip(recent, states):
            key = (provider, credential_id) if ids else (provider,)
            for use in state.windows:
                window = (provider, window_name(use.interval), *((credential_id,) if ids else ()))
                for name, value in (("used", use.used), ("remaining", use.remaining), ("limit", use.limit)):
                    sums[name][window] = sums[name].get(window, 0) + value
            waiting[key] = waiting.get(key, 0) + state.waiting
            paused[key] = paused.get(key, 0) + (1 if state.paused_for > 0 else 0)
        for name, family in windows.items():
            for labels, value in sums[name].items():
                family.add_metric(labels, value)
        waiting_family = GaugeMetricFamily(
            "headwater_budget_waiting_requests", "Requests waiting for their turn in a budget now.",
            labels=credential_labels)
        paused_family = GaugeMetricFamily(
            "headwater_budget_paused_credentials", "Credentials whose budget an upstream answer has paused now.",
            labels=credential_labels)
        for labels, value in waiting.items():
            waiting_family.add_metric(labels, value)
        for labels, value in paused.items():
            paused_family.add_metric(labels, value)
        return [*windows.values(), waiting_family, paused_family]
