"""The worker's alert path: restore from `cx.alerts`, evaluate every tick, send, mirror.

`attach_alerts(worker)` adds an `on_publish` hook when the config has alert
rules. On its first tick the hook reads the alerts topic from the start to its
real end and restores the firing alerts (`AlertEngine.restore`), so a restarted
worker does not fire again what is already firing; until that read succeeds it
evaluates nothing (and retries on the next tick). Then, on every tick:

- the engine's state changes go to the alerts topic, keyed `rule|window|scope`,
  in order; each send waits for the broker's acknowledgement, and what could
  not be sent is kept and sent first on the next tick;
- each firing counts in `cxstream_alerts_total{rule,severity}`;
- `cx:alerts:active` is rewritten when the firing set changed, and every
  `REDIS_REFRESH_MS` anyway (a restarted Redis gets it back); a Redis error
  counts in `cxstream_sink_errors_total{sink="redis"}` and is retried.

Nothing here raises into the worker: a broker or Redis outage delays alerts,
it does not stop the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from cxstream.alerts import Alert, AlertEngine
from cxstream.config import Settings
from cxstream.sinks import Published

if TYPE_CHECKING:
    from cxstream.app import Worker

__all__ = ["REDIS_REFRESH_MS", "AlertPublisher", "attach_alerts", "read_alert_messages"]

log = logging.getLogger("cxstream.alerts")

REDIS_REFRESH_MS: Final = 10_000
SEND_TIMEOUT_S: Final = 10.0
RESTORE_TIMEOUT_S: Final = 30.0


def _security(settings: Settings) -> dict[str, object]:
    from cxstream.kafka import kafka_security_settings

    sec = settings.kafka
    return kafka_security_settings(
        sec.security_protocol,
        sec.sasl_mechanism,
        sec.sasl_username,
        sec.sasl_password,
        str(sec.ssl_cafile) if sec.ssl_cafile else None,
    )


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
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = settings.topics.alerts
    consumer = AIOKafkaConsumer(
        bootstrap_servers=",".join(settings.bootstrap_servers),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        **_security(settings),
    )
    await consumer.start()
    try:
        # Listing every topic refreshes metadata without auto-creating this one.
        if topic not in await consumer.topics():
            return []
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        values: dict[int, list[bytes]] = {tp.partition: [] for tp in tps}
        deadline = time.monotonic() + timeout_s

        async def at_end() -> bool:
            for tp in tps:
                highwater = consumer.highwater(tp)  # known after the first fetch of tp
                if highwater is None or await consumer.position(tp) < highwater:
                    return False
            return True

        while not await at_end():
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout_s:g} s")
            batches = await consumer.getmany(*tps, timeout_ms=200)
            for tp, records in batches.items():
                values[tp.partition].extend(r.value for r in records if r.value is not None)
        return [v for p in sorted(values) for v in values[p]]
    finally:
        await consumer.stop()


class AlertPublisher:
    """The `on_publish` hook: evaluates the rules and delivers their state changes."""

    def __init__(self, worker: Worker, engine: AlertEngine) -> None:
        self.worker = worker
        self.engine = engine
        self.restored = False
        self.outbox: list[Alert] = []
        self.redis_dirty = True
        self.redis_failing = False
        self.redis_written_ms = 0

    async def restore(self) -> bool:
        """Read the alerts topic and restore the firing alerts; False on failure."""
        topic = self.worker.settings.topics.alerts
        try:
            messages = await read_alert_messages(self.worker.settings)
        except Exception as exc:  # broker not reachable yet: try again on the next tick
            log.warning("alerts: cannot read %s to restore alert state (%s); retrying", topic, exc)
            return False
        firing = self.engine.restore(messages)
        log.info(
            "alerts: %d rule(s); %d firing alert(s) restored from %d message(s) on %s",
            len(self.engine.rules),
            firing,
            len(messages),
            topic,
        )
        self.restored = True
        return True

    async def on_publish(self, items: Sequence[Published], now_ms: int) -> None:
        if not self.restored and not await self.restore():
            return
        changes = self.engine.evaluate(items, now_ms)
        for alert in changes:
            if alert.state == "firing":
                self.worker.metrics.alerts.labels(alert.rule, alert.severity).inc()
            log.info("alert %s [%s]: %s", alert.key, alert.severity, alert.message)
        if changes:
            self.outbox.extend(changes)
            self.redis_dirty = True
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
        """Rewrite `cx:alerts:active` when the firing set changed, or every so often."""
        redis = self.worker.redis
        if redis is None:
            return
        if not self.redis_dirty and now_ms - self.redis_written_ms < REDIS_REFRESH_MS:
            return
        active = {key: alert.to_json() for key, alert in self.engine.active().items()}
        try:
            await redis.set_alerts(active)
        except Exception as exc:  # any Redis failure: count it, retry on the next tick
            self.worker.metrics.sink_errors.labels("redis").inc()
            if not self.redis_failing:
                log.warning("alerts: cannot write cx:alerts:active (%s); retrying", exc)
            self.redis_failing = True
            self.redis_dirty = True
            return
        self.redis_failing = False
        self.redis_dirty = False
        self.redis_written_ms = now_ms


def attach_alerts(worker: Worker) -> AlertPublisher | None:
    """Evaluate `worker.settings.alerts` on every publish; None when there are no rules."""
    rules = worker.settings.alerts
    if not rules:
        return None
    publisher = AlertPublisher(worker, AlertEngine(rules))
    worker.on_publish.append(publisher.on_publish)
    return publisher
