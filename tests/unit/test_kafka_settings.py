"""CXSTREAM_KAFKA_* → aiokafka / Faust settings, and the broker-compat switch."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import faust
import pytest
from aiokafka import AIOKafkaProducer

from cxstream.errors import ConfigError
from cxstream.kafka import (
    Secret,
    apply_broker_compat_from_env,
    faust_security_settings,
    kafka_security_settings,
    session_timeout_from_env,
)

PASSWORD = "s3cr3t-pa55"


def test_plaintext_is_the_default() -> None:
    assert kafka_security_settings(None, None, None, None, None) == {
        "security_protocol": "PLAINTEXT"
    }
    assert faust_security_settings(None, None, None, None, None) == {}


@pytest.mark.parametrize(
    ("protocol", "mechanism", "expected_mechanism"),
    [
        ("SASL_PLAINTEXT", None, "PLAIN"),
        ("sasl_plaintext", "scram-sha-256", "SCRAM-SHA-256"),
        ("SASL_PLAINTEXT", "SCRAM-SHA-512", "SCRAM-SHA-512"),
    ],
)
async def test_sasl_maps_to_aiokafka_arguments(
    protocol: str, mechanism: str | None, expected_mechanism: str
) -> None:
    settings = kafka_security_settings(protocol, mechanism, "svc", PASSWORD, None)

    assert settings == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": expected_mechanism,
        "sasl_plain_username": "svc",
        "sasl_plain_password": PASSWORD,
    }
    # aiokafka takes them as they are (it only connects on start()).
    AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", **settings)


def test_sasl_ssl_and_ssl_build_a_context(tmp_path: Path) -> None:
    sasl_ssl = kafka_security_settings("SASL_SSL", "PLAIN", "svc", PASSWORD, None)
    tls = kafka_security_settings("SSL", None, None, None, None)

    assert sasl_ssl["security_protocol"] == "SASL_SSL"
    assert isinstance(sasl_ssl["ssl_context"], ssl.SSLContext)
    assert tls.keys() == {"security_protocol", "ssl_context"}
    assert isinstance(tls["ssl_context"], ssl.SSLContext)
    assert tls["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_faust_credentials() -> None:
    sasl = faust_security_settings("SASL_SSL", "SCRAM-SHA-512", "svc", PASSWORD, None)
    tls = faust_security_settings("SSL", None, None, None, None)

    creds = sasl["broker_credentials"]
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == (
        "svc",
        PASSWORD,
        "SCRAM-SHA-512",
    )
    assert creds.protocol.value == "SASL_SSL"
    assert isinstance(creds.ssl_context, ssl.SSLContext)
    assert isinstance(tls["broker_credentials"], faust.SSLCredentials)
    # Faust accepts them as app settings.
    app = faust.App("cred-check", broker="kafka://127.0.0.1:1", **sasl)
    assert app.conf.broker_credentials is creds


def test_the_password_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    settings = kafka_security_settings("SASL_PLAINTEXT", None, "svc", PASSWORD, None)
    faust_settings = faust_security_settings("SASL_PLAINTEXT", None, "svc", PASSWORD, None)
    secret = settings["sasl_plain_password"]

    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings %s %r", settings, faust_settings)
    shown = [repr(settings), str(settings), f"{secret}", f"{secret!s:>20}", caplog.text]
    shown += [repr(faust_settings), str(faust_settings["broker_credentials"])]

    assert not [text for text in shown if PASSWORD in text]
    assert isinstance(secret, Secret)
    # ... while the Kafka client still sends the real characters.
    assert secret == PASSWORD
    assert secret.reveal() == PASSWORD
    assert "\0".join(["svc", "svc", secret]).encode() == f"svc\0svc\0{PASSWORD}".encode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("TLS", None, None, None, None), "CXSTREAM_KAFKA_SECURITY_PROTOCOL: expected one of"),
        (("SASL_SSL", "GSSAPI", "u", "p", None), "CXSTREAM_KAFKA_SASL_MECHANISM: expected one of"),
        (("SASL_PLAINTEXT", None, None, "p", None), "CXSTREAM_KAFKA_SASL_USERNAME: required"),
        (("SASL_PLAINTEXT", None, "u", "", None), "CXSTREAM_KAFKA_SASL_PASSWORD: required"),
        (("PLAINTEXT", None, "u", None, None), "CXSTREAM_KAFKA_SASL_USERNAME: only used with"),
        (("SSL", "PLAIN", None, None, None), "CXSTREAM_KAFKA_SASL_MECHANISM: only used with"),
        (("PLAINTEXT", None, None, None, "/ca.pem"), "CXSTREAM_KAFKA_SSL_CAFILE: only used with"),
        (("SSL", None, None, None, "/nonexistent/ca.pem"), "CXSTREAM_KAFKA_SSL_CAFILE: no such"),
    ],
)
def test_bad_settings_name_the_key(
    args: tuple[str | None, str | None, str | None, str | None, str | None], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        kafka_security_settings(*args)
    with pytest.raises(ConfigError, match=message):
        faust_security_settings(*args)


def test_a_cafile_that_is_no_pem_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")

    with pytest.raises(ConfigError, match="CXSTREAM_KAFKA_SSL_CAFILE: expected a PEM file"):
        kafka_security_settings("SSL", None, None, None, str(bad))


def test_broker_compat_switch() -> None:
    with pytest.raises(ConfigError, match="CXSTREAM_BROKER_COMPAT: expected 'tansu'"):
        apply_broker_compat_from_env({"CXSTREAM_BROKER_COMPAT": "kafka"})

    assert apply_broker_compat_from_env({"CXSTREAM_BROKER_COMPAT": "tansu"}) is True
    assert apply_broker_compat_from_env({"CXSTREAM_BROKER_COMPAT": "Tansu"}) is True

    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    assert AIOKafkaConsumerThread._highwaters.__qualname__.startswith("apply_broker_compat")


async def test_broker_compat_caps_the_fetch_wait_of_faust_consumers() -> None:
    import asyncio

    from cxstream.kafka import TANSU_FETCH_WAIT_MS

    apply_broker_compat_from_env({"CXSTREAM_BROKER_COMPAT": "tansu"})
    app = faust.App("compat-probe", broker="kafka://127.0.0.1:9")  # never connects
    consumer = app.consumer._thread._create_consumer(loop=asyncio.get_running_loop())
    assert consumer._fetch_max_wait_ms == TANSU_FETCH_WAIT_MS < 1500


def test_session_timeout_switch() -> None:
    assert session_timeout_from_env({}) == 10.0
    assert session_timeout_from_env({"CXSTREAM_KAFKA_SESSION_TIMEOUT_S": " 6 "}) == 6.0
    for bad in ("soon", "0", "-3", "nan", "inf", "7200"):
        with pytest.raises(ConfigError, match="CXSTREAM_KAFKA_SESSION_TIMEOUT_S: expected"):
            session_timeout_from_env({"CXSTREAM_KAFKA_SESSION_TIMEOUT_S": bad})
