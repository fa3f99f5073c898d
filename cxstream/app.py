"""The streaming worker: the Faust app, its two stages and the publisher.

Faust's consumer reads the input and partials topics; `cxstream.intake` hands each
fetch whole to the Faust-free stages (`cxstream.stages`), and the worker sends what
they produce: dead letters, partials, then, on the publisher's tick, whole metric
values to the sinks. The meaning of every metric stays in `engine/`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from cxstream import intake
from cxstream.checkpoint import CheckpointStore
from cxstream.config import Settings
from cxstream.engine import DimensionCap, evaluate_scope, live_scopes
from cxstream.errors import CxStreamError
from cxstream.heap import LongLivedHeap
from cxstream.intake import Record
from cxstream.registry import DimensionRegistry, registry_topic_name
from cxstream.sinks import Published
from cxstream.sinks.prometheus import PipelineMetrics, PrometheusSink
from cxstream.sinks.redis import RedisSink
from cxstream.stages import Batch, ScopePartition, ScopeStage, UserPartition, UserStage

__all__ = ["Worker", "build_worker", "run_worker"]

log = logging.getLogger("cxstream.worker")

FULL_REPUBLISH_EVERY_MS = 60_000
REDIS_TIMEOUT_S = 2.0  # per Redis call; redis-py before 8.0 waits forever by default
CHECKPOINT_MIN_S = 2.0
INPUT_RETENTION_MS = 32 * 24 * 3_600_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def partials_topic_name(app_id: str) -> str:
    return f"{app_id}-partials"


class MetricsServer:
    """`/metrics` and `/healthz` on the metrics port, bound before joining the group.

    Binding first means a port clash stops the worker at start with a clear error,
    instead of crashing it after it has joined the consumer group.
    """

    def __init__(
        self, registry: CollectorRegistry, host: str, port: int, is_ready: Callable[[], bool]
    ) -> None:

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body, status, ctype = generate_latest(registry), 200, CONTENT_TYPE_LATEST
                elif self.path.startswith("/healthz"):
                    ok = is_ready()
                    body = b"ok\n" if ok else b"starting\n"
                    status, ctype = (200 if ok else 503), "text/plain"
                else:
                    body, status, ctype = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise CxStreamError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror}; "
                "set CXSTREAM_METRICS_PORT to a free port"
            ) from None
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


Key = tuple[str, int]  # (topic, partition)


def rewind_to(applied: int | None, committed: int | None, earliest: int) -> int | None:
    """Where a partition must be re-read from for its state to continue the log.

    `applied` is the last offset in the state here (-1 or None: no state), `committed`
    the group's committed offset (None: none), `earliest` the log's first offset. None
    means resuming at the committed offset is right: the state reaches it (offsets it
    already holds are skipped by its stamps), or nothing was ever committed.
    """
    if committed is None:
        return None
    resume_at = earliest if applied is None or applied < 0 else max(applied + 1, earliest)
    return resume_at if resume_at < committed else None


@dataclass
class Resume:
    """Where each owned topic-partition resumes, so that local state continues the log.

    On every assignment Faust seeks each partition to the group's committed offset.
    That is right for the worker whose state made the commit, but a worker taking a
    partition over holds either no state for it or an older checkpoint: resuming at
    the committed offset would skip the messages in between. So after the seek that
    ends each rebalance (`Worker.place`), a partition whose state ends before the
    committed offset is sent back to just after its state (to its earliest offset when
    there is none) and its results are held back until it has caught up with that
    offset: stage 1 sends no partials of it and stage 2 publishes nothing of it, so the
    values the previous owner published stay in place meanwhile. A partition is also
    held from its adoption until that check has run.

    Only ever seeking backwards keeps Faust's offset commits intact: messages below
    the committed offset are re-applied but never acknowledged again. While it is
    behind, a partition commits nothing, so the committed offset keeps marking how far
    it must get, also for whoever holds it after a crash or another rebalance.
    """

    unplaced: set[Key] = field(default_factory=set)
    targets: dict[Key, int] = field(default_factory=dict)  # held until applied >= target - 1

    def adopt(self, keys: set[Key]) -> None:
        self.unplaced.update(keys)
        for key in keys:
            self.targets.pop(key, None)

    def drop(self, key: Key) -> None:
        self.unplaced.discard(key)
        self.targets.pop(key, None)

    def behind(self, topic: str, partition: int) -> bool:
        return (topic, partition) in self.unplaced or (topic, partition) in self.targets

    def held(self, applied: Callable[[str, int], int | None], topics: set[str]) -> set[int]:
        """Partitions of `topics` not yet placed or still catching up."""
        for key, target in list(self.targets.items()):
            done = applied(*key)
            if done is None or done >= target - 1:
                del self.targets[key]
                if done is not None:
                    log.info("%s[%d]: caught up at offset %d", key[0], key[1], done)
        return {p for (t, p) in (*self.unplaced, *self.targets) if t in topics}


@dataclass
class Worker:
    """Everything one worker process holds; built by `build_worker`."""

    settings: Settings
    app: Any
    user_stage: UserStage
    scope_stage: ScopeStage
    checkpoints: CheckpointStore
    registry: CollectorRegistry
    metrics: PipelineMetrics
    prometheus: PrometheusSink
    redis: RedisSink | None
    topics: dict[str, Any] = field(default_factory=dict)
    published_scopes: set[str] = field(default_factory=set)
    last_full_ms: int = 0
    redis_needs_all: bool = True
    redis_failing: bool = False  # the last Redis write failed (logged once per outage)
    marker_key: str = ""
    consuming: bool = False
    dimensions: DimensionRegistry | None = None
    saved_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    last_checkpoint_at: float = float("-inf")
    last_checkpoint_s: float = 0.0
    rebalance_complete: bool = False  # set by Faust's signal, taken by `place`
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)  # held while a fetch is applied
    dimensions_started: bool = False
    resume: Resume = field(default_factory=lambda: Resume())
    heap: LongLivedHeap = field(default_factory=LongLivedHeap)
    on_publish: list[Callable[[list[Published], int], Awaitable[None]]] = field(
        default_factory=list
    )

    # -- partitions ----------------------------------------------------------------

    def user_partition(self, partition: int) -> None:
        """Make sure stage 1 holds `partition`, restoring its checkpoint if there is one."""
        if partition in self.user_stage.partitions:
            return
        saved = self.checkpoints.load(f"stage1-{partition}")
        if saved is not None:
            part = saved
            log.info("stage 1: partition %d restored at offsets %s", partition, part.applied)
        else:
            part = self.user_stage.new_partition(partition, 0)
        self._adopt_user(part)

    def _adopt_user(self, part: UserPartition) -> None:
        topics = self.settings.topics
        p = part.partition
        self.resume.adopt({(topics.interactions, p), (topics.feedback, p)})
        self.user_stage.adopt(part, epoch=now_ms())

    def scope_part(self, partition: int) -> ScopePartition:
        parts = self.scope_stage.partitions
        part = parts.get(partition)
        if part is None:
            saved = self.checkpoints.load(f"stage2-{partition}")
            part = saved if saved is not None else ScopePartition(partition)
            self.resume.adopt({(partials_topic_name(self.settings.app_id), partition)})
            parts[partition] = part
            self.scope_stage.dirty.update(s for s, _, _ in part.store.merged.buckets)
        return part

    async def checkpoint(self, *, force: bool = False) -> None:
        """Write every owned partition's state with its offset stamps.

        Snapshots cost time in proportion to the state, so unless forced they are
        spaced to take at most ~5% of the time (and at least CHECKPOINT_MIN_S apart);
        offset commits in between are clamped to the last checkpoint instead. Each
        partition's file is consistent on its own (state and stamps written together),
        so unless forced the loop is given back between partitions: a checkpoint of a
        large state is then many short pauses instead of one long one.
        """
        elapsed = time.monotonic() - self.last_checkpoint_at
        if not force and elapsed < max(CHECKPOINT_MIN_S, 20 * self.last_checkpoint_s):
            return
        self.last_checkpoint_at = time.monotonic()  # one checkpoint at a time when unforced
        spent = 0.0
        saved: dict[tuple[str, int], int] = {}
        partials = partials_topic_name(self.settings.app_id)
        owned: list[tuple[str, Mapping[int, UserPartition | ScopePartition]]] = [
            ("stage1", self.user_stage.partitions),
            ("stage2", self.scope_stage.partitions),
        ]
        for stage, parts in owned:
            for p, part in list(parts.items()):
                if parts.get(p) is not part:
                    continue  # revoked while the loop was given back
                started = time.perf_counter()
                self.checkpoints.save(f"{stage}-{p}", part)
                if isinstance(part, UserPartition):
                    saved.update(((topic, p), offset) for topic, offset in part.applied.items())
                else:
                    saved[(partials, p)] = part.applied
                spent += time.perf_counter() - started
                if not force:
                    await asyncio.sleep(0)
        self.saved_offsets = saved
        self.last_checkpoint_s = spent
        self.last_checkpoint_at = time.monotonic()
        log.debug("checkpoint in %.3f s", spent)

    def adopt(self, assigned: set[Any]) -> None:
        """Hold state for each assigned topic-partition (idempotent)."""
        inputs = {self.settings.topics.interactions, self.settings.topics.feedback}
        partials = partials_topic_name(self.settings.app_id)
        for tp in assigned:
            if tp.topic in inputs:
                self.user_partition(tp.partition)
            elif tp.topic == partials:
                self.scope_part(tp.partition)

    async def place(self, consumer: Any, committed: dict[Any, int | None]) -> None:
        """Send partitions whose state ends before `committed` back to it; see `Resume`.

        Runs right after Faust has sought every assigned partition to `committed`
        (None: nothing committed, so Faust left the position alone) and before any
        message of the new assignment is processed.
        """
        assigned = set(consumer.assignment())
        self.adopt(assigned)  # may run before the assignment signal reaches `on_assigned`
        ours = [tp for tp in assigned if self.applied(tp.topic, tp.partition) is not None]
        with_commit = {tp: c for tp in ours if (c := committed.get(tp)) is not None}
        earliest = await consumer.earliest_offsets(*with_commit) if with_commit else {}
        seeks: dict[Any, int] = {}
        for tp, target in with_commit.items():
            key = (tp.topic, tp.partition)
            resume_at = rewind_to(self.applied(*key), target, earliest.get(tp, 0))
            if resume_at is not None:
                seeks[tp] = resume_at
                self.resume.targets[key] = target
                log.info(
                    "%s[%d]: state here ends before the committed offset %d; "
                    "re-reading from %d and holding its results until caught up",
                    tp.topic,
                    tp.partition,
                    target,
                    resume_at,
                )
        if seeks:
            await consumer.seek_wait(seeks)
        for tp in ours:
            self.resume.unplaced.discard((tp.topic, tp.partition))
        self.update_held()

    def update_held(self) -> None:
        topics = self.settings.topics
        self.user_stage.held = self.resume.held(
            self.applied, {topics.interactions, topics.feedback}
        )

    async def on_assigned(self, assigned: set[Any]) -> None:
        self.adopt(assigned)
        if not self.consuming:
            self.consuming = True
            log.info("cxstream worker consuming: %d partitions assigned", len(assigned))

    async def on_revoked(self, revoked: set[Any]) -> None:
        async with self.busy:  # let the fetch being applied finish first
            await self._revoke(revoked)

    async def _revoke(self, revoked: set[Any]) -> None:
        self.rebalance_complete = False  # left over if the last assignment was empty
        await self.checkpoint(force=True)
        inputs = {self.settings.topics.interactions, self.settings.topics.feedback}
        partials = partials_topic_name(self.settings.app_id)
        lost_scopes: set[str] = set()
        for tp in revoked:
            key = (tp.topic, tp.partition)
            self.resume.drop(key)
            if tp.topic in inputs:
                self.user_stage.partitions.pop(tp.partition, None)
            elif tp.topic == partials:
                part = self.scope_stage.partitions.pop(tp.partition, None)
                if part is not None:
                    lost_scopes.update(s for s, _, _ in part.store.merged.buckets)
        if lost_scopes:
            await self.prometheus.forget(lost_scopes)
            self.published_scopes -= lost_scopes

    def applied(self, topic: str, partition: int) -> int | None:
        """Last offset whose effect is in this worker's state (-1: none; None: not ours)."""
        if topic == partials_topic_name(self.settings.app_id):
            spart = self.scope_stage.partitions.get(partition)
            return spart.applied if spart is not None else None
        upart = self.user_stage.partitions.get(partition)
        return upart.applied.get(topic, -1) if upart is not None else None

    # -- stage 1 -------------------------------------------------------------------

    async def ingest(self, messages: list[Record]) -> None:
        now = now_ms()
        for partition in {m[1] for m in messages}:
            self.user_partition(partition)
        batch = Batch()
        decoded = self.user_stage.decode(messages, now, batch)
        if self.dimensions is not None:
            if not self.dimensions_started:
                await self.dimensions.start()
                self.dimensions_started = True
            claims = self.user_stage.new_dimension_values(decoded)
            if claims:
                await self.dimensions.claim(claims)
        self.user_stage.apply(decoded, now, batch)
        self.update_held()
        await self.emit(batch, now)

    async def emit(self, batch: Batch, now: int) -> None:
        metrics = self.metrics
        deadletter = self.topics["deadletter"]
        for rejection, topic, partition, offset in batch.rejected:
            record = rejection.deadletter(
                source_topic=topic, partition=partition, offset=offset, at_ms=now
            )
            await deadletter.send(value=orjson.dumps(record))
            metrics.rejected.labels(rejection.reason).inc()
        if batch.duplicates:
            metrics.duplicates.inc(batch.duplicates)
        by_type: dict[str, int] = {}
        lags: list[float] = []
        for event in batch.accepted:
            by_type[event.type] = by_type.get(event.type, 0) + 1
            lags.append(max(0.0, (now - event.ts_ms) / 1000))
        metrics.lag.observe_many(lags)
        for type_, n in by_type.items():
            metrics.events.labels(type_).inc(n)
        await self.send_partials()

    async def send_partials(self) -> None:
        topic = self.topics["partials"]
        for message in self.user_stage.partials():
            await topic.send(value=message.value, partition=message.partition)

    # -- stage 2 -------------------------------------------------------------------

    async def merge(self, messages: list[Record]) -> None:
        for _, partition, offset, value in messages:
            self.scope_part(partition)
            self.scope_stage.apply(partition, offset, value)

    # -- publisher -------------------------------------------------------------------

    async def tick(self) -> None:
        """Advance stage-1 clocks, then publish the windows of changed scopes."""
        now = now_ms()
        self.user_stage.tick(now)
        self.update_held()
        await self.send_partials()
        scopes = self.scope_stage.take_dirty()
        full = now - self.last_full_ms >= FULL_REPUBLISH_EVERY_MS
        if full:
            self.last_full_ms = now
            for part in self.scope_stage.partitions.values():
                part.store.expire(now)
        live: dict[str, ScopePartition] = {}
        partials = partials_topic_name(self.settings.app_id)
        held = self.resume.held(self.applied, {partials})
        for part in self.scope_stage.partitions.values():
            if part.partition in held:
                continue  # re-reading partials another worker already merged: not yet whole
            for scope in live_scopes(part.store.merged, now):
                live[scope] = part
        gone = self.published_scopes - live.keys()
        if full or self.redis_needs_all:
            scopes = set(live)
        items = self.evaluate({s: live[s] for s in scopes if s in live}, now)
        await self.publish_redis(items, gone, now, live)  # first: it is what users watch live
        await self.prometheus.publish(items, now)
        if gone:
            await self.prometheus.forget(gone)
        self.published_scopes = set(live)
        for hook in self.on_publish:
            await hook(items, now)

    def evaluate(self, scopes: dict[str, ScopePartition], now: int) -> list[Published]:
        top_n = self.settings.limits.top_n
        items: list[Published] = []
        for scope, part in sorted(scopes.items()):
            for name, res in evaluate_scope(part.store.merged, scope, now, top_n).items():
                items.append(
                    Published(
                        window=name,
                        scope=scope,
                        fields=res.fields,
                        features=res.features,
                        pages=res.pages,
                        exit_pages=res.exit_pages,
                        top_features=res.top_features,
                        window_end_ms=now,
                        total=res.total,
                        active_subscribers=res.active_subscribers,
                    )
                )
        return items

    async def publish_redis(
        self, items: list[Published], gone: set[str], now: int, live: dict[str, ScopePartition]
    ) -> None:
        if self.redis is None:
            return
        try:
            if not self.redis_needs_all and not await self.redis.client.exists(self.marker_key):
                # Redis lost its data (a restart): write everything, not just changes.
                items = self.evaluate(live, now)
            await self.redis.publish(items, now)
            if gone:
                await self.redis.forget(gone)
            await self.redis.client.set(self.marker_key, str(now))
            self.redis_needs_all = False
            if self.redis_failing:
                log.info("redis sink: writing again")
                self.redis_failing = False
        except Exception as exc:  # any Redis failure: count it, retry everything next tick
            self.metrics.sink_errors.labels("redis").inc()
            if not self.redis_failing:
                log.warning("redis sink: %s; retrying on the next tick", exc)
                self.redis_failing = True
            self.redis_needs_all = True


def build_worker(settings: Settings, *, registry: CollectorRegistry | None = None) -> Worker:
    """Wire the Faust app, stages and sinks for `settings` (nothing is started)."""
    import redis.asyncio as aioredis

    # Faust's own annotations do not fit its decorator and signal idioms; treat it as Any.
    faust: Any = importlib.import_module("faust")

    from cxstream.kafka import (
        apply_broker_compat_from_env,
        client_security,
        session_timeout_from_env,
        worker_security,
    )

    apply_broker_compat_from_env()
    registry = registry if registry is not None else CollectorRegistry()
    topics = settings.topics
    security = settings.kafka
    session_timeout = session_timeout_from_env()
    app = faust.App(
        settings.app_id,
        broker=settings.broker_urls,
        store="memory://",
        datadir=str(settings.datadir / settings.app_id / "faust"),
        web_enabled=False,
        topic_partitions=topics.partitions,
        topic_replication_factor=1,
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=max(0.5, session_timeout / 6),
        broker_commit_interval=2.0,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        producer_max_request_size=2 * 1024 * 1024,
        producer_max_batch_size=1024 * 1024,
        **worker_security(security),
    )
    cap = DimensionCap(settings.limits.max_dimension_values)
    checkpoints = CheckpointStore(settings.datadir, settings.app_id)
    worker = Worker(
        settings=settings,
        app=app,
        user_stage=UserStage(
            cap=cap,
            csat_thresholds=settings.csat_thresholds,
            dedupe_horizon_ms=settings.dedupe_horizon_s * 1000,
            partials_partitions=topics.partitions,
        ),
        scope_stage=ScopeStage(),
        checkpoints=checkpoints,
        registry=registry,
        metrics=PipelineMetrics(registry),
        prometheus=PrometheusSink(registry),
        redis=RedisSink(
            # Bounded waits: a Redis that hangs (not just refuses) must not hold up the
            # publisher, whose tick also feeds Prometheus and the alerts.
            aioredis.from_url(
                settings.redis_url,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
            )
        )
        if settings.redis_url
        else None,
        marker_key=f"cx:worker:{settings.app_id}:{os.getpid()}:{now_ms()}",
        dimensions=DimensionRegistry(
            ",".join(settings.bootstrap_servers),
            registry_topic_name(settings.app_id),
            cap,
            security=client_security(security),
        ),
    )
    inputs = app.topic(topics.interactions, topics.feedback, partitions=topics.partitions)
    partials = app.topic(partials_topic_name(settings.app_id), partitions=topics.partitions)
    worker.topics = {
        "partials": partials,
        "deadletter": app.topic(topics.deadletter, partitions=topics.partitions),
        "alerts": app.topic(topics.alerts, partitions=topics.partitions),
    }

    async def publisher() -> None:
        # Ticks on a fixed schedule: a timer that sleeps the interval after each tick
        # drifts by the tick's own duration, and every event waits for the next tick.
        interval = settings.publish_interval_s
        due = time.monotonic() + interval
        while not app.should_stop:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await worker.tick()
            worker.heap.settle()  # once a tick: the collector skips the state made before
            due = max(due + interval, time.monotonic())

    async def revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        await worker.on_revoked(revoked)

    async def assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        await worker.on_assigned(assigned)

    # Subscribed through Faust's conductor, read by `cxstream.intake` (no agents).
    app.topics.add(inputs)
    app.topics.add(partials)
    app.task(publisher)
    app.on_partitions_revoked.connect(revoked)
    app.on_partitions_assigned.connect(assigned)
    from cxstream.alerting import attach_alerts

    attach_alerts(worker)
    _hook_consumer(worker)
    intake.install(
        app.consumer,
        busy=worker.busy,
        inputs={topics.interactions, topics.feedback},
        partials=partials_topic_name(settings.app_id),
        ingest=worker.ingest,
        merge=worker.merge,
    )
    return worker


def _hook_consumer(worker: Worker) -> None:
    """Put the worker's state between Faust's consumer and the group's offsets.

    Before Faust commits offsets, state is checkpointed and the commit clamped to the
    checkpoint, so state is never behind a commit. After Faust seeks partitions to
    their committed offsets, `Worker.place` sends back any whose state is behind.
    """
    consumer = worker.app.consumer
    original = consumer._commit
    seek_to_committed = consumer.seek_to_committed
    perform_seek = consumer.perform_seek
    sought: dict[Any, int | None] = {}

    async def seek_to_committed_noting() -> Any:
        offsets = await seek_to_committed()
        sought.clear()
        sought.update({tp: o if o is not None and o >= 0 else None for tp, o in offsets.items()})
        return offsets

    async def perform_seek_then_place() -> None:
        await perform_seek()
        # Faust also seeks when a rebalance interrupts a fetch; only the seek that ends
        # a rebalance (after `on_rebalance_complete`) sees the final assignment.
        if worker.rebalance_complete:
            worker.rebalance_complete = False
            await worker.place(consumer, dict(sought))

    async def rebalance_complete(sender: Any, **kwargs: Any) -> None:
        worker.rebalance_complete = True

    worker.app.on_rebalance_complete.connect(rebalance_complete)

    consumer.seek_to_committed = seek_to_committed_noting
    consumer.perform_seek = perform_seek_then_place

    async def commit(offsets: Any) -> Any:
        await worker.checkpoint(force=bool(worker.app.should_stop))
        # Never commit past what the last checkpoint holds: a message acked but not in
        # it (applied since, or skipped while a partition rewinds) must be read again
        # after a crash.
        clamped = {}
        for tp, offset in offsets.items():
            if worker.applied(tp.topic, tp.partition) is None:
                clamped[tp] = offset  # not ours any more: Faust discards it
                continue
            if worker.resume.behind(tp.topic, tp.partition):
                continue  # re-reading: keep the committed offset it is catching up with
            saved = worker.saved_offsets.get((tp.topic, tp.partition))
            if saved is not None:
                clamped[tp] = min(offset, saved + 1)
        if not clamped:
            return False  # nothing checkpointed yet (aiokafka refuses an empty commit)
        return await original(clamped)

    consumer._commit = commit


def run_worker(settings: Settings, *, loglevel: str = "info") -> int:
    """Run `cxstream worker` until stopped (SIGINT/SIGTERM)."""
    faust: Any = importlib.import_module("faust")

    from cxstream.kafka import client_security, ensure_topics

    registry = CollectorRegistry()
    holder: list[Worker] = []
    server = MetricsServer(
        registry,
        settings.metrics_bind,
        settings.metrics_port,
        lambda: bool(holder) and holder[0].consuming,
    )
    try:
        worker = build_worker(settings, registry=registry)
        holder.append(worker)
        sec = settings.kafka
        security = client_security(sec)
        topics = settings.topics
        n = topics.partitions
        # Exact rebuilds re-read a partition from its earliest offset, so the inputs and
        # the partials must keep the 30-day state horizon (plus a margin); the registry
        # of admitted dimension values is kept forever; alert state is the last message
        # of each alert key, which compaction keeps.
        keep_inputs = {"retention.ms": str(INPUT_RETENTION_MS)}
        asyncio.run(
            ensure_topics(
                ",".join(settings.bootstrap_servers),
                {
                    topics.interactions: n,
                    topics.feedback: n,
                    topics.alerts: n,
                    topics.deadletter: n,
                    partials_topic_name(settings.app_id): n,
                    registry_topic_name(settings.app_id): 1,
                },
                security=security,
                configs={
                    topics.interactions: keep_inputs,
                    topics.feedback: keep_inputs,
                    partials_topic_name(settings.app_id): keep_inputs,
                    registry_topic_name(settings.app_id): {"retention.ms": "-1"},
                    topics.alerts: {"cleanup.policy": "compact"},
                },
            )
        )

        log.info(
            "cxstream worker starting: metrics on http://%s:%d/metrics, health on /healthz",
            settings.metrics_bind,
            server.port,
        )
        faust_worker = faust.Worker(worker.app, loglevel=loglevel, quiet=True)
        faust_worker.execute_from_commandline()
    finally:
        server.close()
    return 0
