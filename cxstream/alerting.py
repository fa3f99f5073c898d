"""The worker's alert path: restore from `cx.alerts`, evaluate every tick, send, mirror.

`attach_alerts(worker)` adds an `on_publish` hook when the config has alert
rules. Before the hook evaluates a scope for the first time (at start, or
when a rebalance moved the scope here) it reads the alerts topic from the
start to its real end and restores that scope's firing alerts
(`AlertEngine.restore`), so a restarted worker does not fire again what is
already firing, and resolves it with its `alert_id`; until that read succeeds
the scope is not evaluated. Scopes this worker stopped publishing are
forgotten after `FORGET_AFTER_MS`. Then, on every tick:

- the engine's state changes go to the alerts topic, keyed `rule|window|scope`,
  in order; each send waits for the broker's acknowledgement, and what could
  not be sent is kept and sent first on the next tick;
- each firing counts in `cxstream_alerts_total{rule,severity}`;
- `cx:alerts:active` gets the changes key by key, and every
  `REDIS_REFRESH_MS` this worker's part of it is rewritten (a restarted Redis
  gets it back); a Redis error counts in
  `cxstream_sink_errors_total{sink="redis"}` and is retried.

Nothing here raises into the worker: a broker or Redis outage delays alerts,
it does not stop the metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from cxstream.alerts import Alert, AlertEngine
from cxstream.config import Settings
from cxstream.sinks import Published
from cxstream.sinks.redis import ALERTS_KEY

if TYPE_CHECKING:
    from cxstream.app import Worker

__all__ = [
    "FORGET_AFTER_MS",
    "REDIS_REFRESH_MS",
    "AlertPublisher",
    "attach_alerts",
    "read_alert_messages",
]

log = logging.getLogger("cxstream.alerts")

REDIS_REFRESH_MS: Final = 10_000
# A scope this worker has not published for this long is no longer its own (the
# worker republishes every scope it owns once a minute).
FORGET_AFTER_MS: Final = 150_000
SEND_TIMEOUT_S: Final = 10.0
RESTORE_TIMEOUT_S: Final = 30.0


def _security(settings: Settings) -> dict[str, object]:
    from cxstream.kafka import client_security

    sec = settings.kafka
    return client_security(sec)


async def read_alert_messages(
    settings: Settings, *, timeout_s: float = RESTORE_TIMEOUT_S
) -> list[bytes]:
    """Every message value now in the alerts topic, partition by partition, oldest first.

    Reads to the high watermark that fetch responses report, not to the
    ListOffsets end, which some brokers under-report (see
    `cxstream.kafka.apply_broker_compat`).
    A topic that does not exist reads as empty. Raises TimeoutError when the
    end is not reached within `timeout_s`, and aiokafka's errors when the
    broker cannot be reached.
    """
    from cxstream.kafka import read_topic

    records = await read_topic(
        ",".join(settings.bootstrap_servers),
        settings.topics.alerts,
        timeout_s=timeout_s,
        security=_security(settings),
    )
    return [r.value for r in records if r.value is not None]


class AlertPublisher:
    """The `on_publish` hook: evaluates the rules and delivers their state changes."""

    def __init__(self, worker: Worker, engine: AlertEngine) -> None:
        self.worker = worker
        self.engine = engine
        self.outbox: list[Alert] = []
        self.redis_set: dict[str, bytes] = {}  # firing since the last write
        self.redis_del: set[str] = set()  # resolved since the last write
        self.redis_full = True  # rewrite every owned alert (start, refresh, after an error)
        self.redis_failing = False
        self.redis_written_ms = 0

    async def restore(self, scopes: set[str]) -> bool:
        """Restore the alerts of `scopes` from the alerts topic; False on failure."""
        topic = self.worker.settings.topics.alerts
        try:
            messages = await read_alert_messages(self.worker.settings)
        except Exception as exc:  # broker not reachable: those scopes wait for the next tick
            log.warning("alerts: cannot read %s to restore alert state (%s); retrying", topic, exc)
            return False
        firing = self.engine.restore(messages, scopes)
        log.info(
            "alerts: %d scope(s) taken on, %d firing alert(s) restored from %d message(s) on %s",
            len(scopes),
            firing,
            len(messages),
            topic,
        )
        return True

    async def on_publish(self, items: Sequence[Published], now_ms: int) -> None:
        self.engine.forget_idle(now_ms, FORGET_AFTER_MS)
        unseen = self.engine.unseen_scopes(items)
        if unseen:
            if await self.restore(unseen):
                self.redis_full = True  # the restored alerts are this worker's to mirror now
            else:
                # Never evaluate a scope before its state is restored: it would fire again.
                items = [item for item in items if item.scope not in unseen]
        changes = self.engine.evaluate(items, now_ms)
        for alert in changes:
            if alert.state == "firing":
                self.worker.metrics.alerts.labels(alert.rule, alert.severity).inc()
                self.redis_set[alert.key] = alert.to_json()
                self.redis_del.discard(alert.key)
            else:
                self.redis_del.add(alert.key)
                self.redis_set.pop(alert.key, None)
            log.info("alert %s [%s]: %s", alert.key, alert.severity, alert.message)
        self.outbox.extend(changes)
        await self.send()
        await self.mirror(now_ms)

    async def send(self) -> None:
        """Send the queued state changes in order; keep the rest after a failure."""
        topic: Any = self.worker.topics["alerts"]
        while self.outbox:
            alert = self.outbox[0]
            try:
                delivered = await topic.send(key=alert.key.encode(), value=alert.to_json())
                await asyncio.wait_for(delivered, SEND_TIMEOUT_S)
            except Exception as exc:
                self.worker.metrics.sink_errors.labels("alerts").inc()
                log.warning(
                    "alerts: cannot send to %s (%s); %d change(s) kept for the next tick",
                    self.worker.settings.topics.alerts,
                    exc or type(exc).__name__,
                    len(self.outbox),
                )
                return
            self.outbox.pop(0)

    async def mirror(self, now_ms: int) -> None:
        """Bring `cx:alerts:active` up to date for the scopes this worker owns.

        Per key (HSET a firing, HDEL a resolved alert), so that workers owning
        other scopes are not overwritten. Every `REDIS_REFRESH_MS`, and after
        an error, the owned part is rewritten whole: every firing alert set,
        every other entry of an owned scope deleted (a Redis that restarted
        empty, or a delete that was lost, is repaired).
        """
        redis = self.worker.redis
        if redis is None:
            return
        full = self.redis_full or now_ms - self.redis_written_ms >= REDIS_REFRESH_MS
        if not (full or self.redis_set or self.redis_del):
            return
        client = redis.client
        try:
            if full:
                firing = {key: alert.to_json() for key, alert in self.engine.active().items()}
                owned = self.engine.owned_scopes()
                stale = {
                    key
                    for raw in await client.hkeys(ALERTS_KEY)
                    if (key := raw.decode() if isinstance(raw, bytes) else str(raw)) not in firing
                    and key.split("|", 2)[-1] in owned
                }
            else:
                firing, stale = self.redis_set, self.redis_del
            if stale or firing:
                pipe = client.pipeline(transaction=True)
                if stale:
                    pipe.hdel(ALERTS_KEY, *sorted(stale))
                if firing:
                    pipe.hset(ALERTS_KEY, mapping=firing)
                await pipe.execute()
        except Exception as exc:  # any Redis failure: count it, rewrite all on the next tick
            self.worker.metrics.sink_errors.labels("redis").inc()
            if not self.redis_failing:
                log.warning("alerts: cannot write %s (%s); retrying", ALERTS_KEY, exc)
            self.redis_failing = True
            self.redis_full = True
            return
        self.redis_failing = False
        self.redis_set, self.redis_del = {}, set()
        if full:
            self.redis_full = False
            self.redis_written_ms = now_ms


def attach_alerts(worker: Worker) -> AlertPublisher | None:
    """Evaluate `worker.settings.alerts` on every publish; None when there are no rules."""
    rules = worker.settings.alerts
    if not rules:
        return None
    publisher = AlertPublisher(worker, AlertEngine(rules))
    worker.on_publish.append(publisher.on_publish)
    return publisher
