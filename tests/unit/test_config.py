"""Settings and the YAML config: defaults, the exact messages of bad values, secrets."""

from __future__ import annotations

import dataclasses
import json
import traceback
from pathlib import Path

import pytest

from cxstream.config import (
    AlertRule,
    FileConfig,
    KafkaSecurity,
    Limits,
    Settings,
    Topics,
    load_settings,
    load_yaml_config,
)
from cxstream.engine import DEFAULT_CSAT_THRESHOLDS, METRIC_FIELDS
from cxstream.errors import ConfigError

# The two rules of SPEC section 4, as an operator would write them.
SPEC_ALERTS = """
alerts:
  - name: nps_low          # unique
    metric: nps
    window: 1h
    scope: all
    below: 20
    min_n: 30
    severity: warning
  - name: csat_drop
    metric: csat
    window: 1h
    drop_vs: 7d
    alpha: 0.01
    min_n: 50
    severity: critical
"""


def rule_yaml(**fields: object) -> str:
    """One alert rule as YAML flow mapping text, on top of a valid `below` rule."""
    base: dict[str, object] = {"name": "r", "metric": "nps", "window": "1h", "below": 20}
    base.update(fields)
    body = ", ".join(f"{k}: {json.dumps(v)}" for k, v in base.items() if v is not _DROP)
    return "alerts:\n  - {" + body + "}\n"


_DROP = object()


# --- defaults ---------------------------------------------------------------


def test_defaults_from_empty_environment() -> None:
    s = load_settings({})
    assert s.broker == "kafka://localhost:9092"
    assert s.bootstrap_servers == ["localhost:9092"]
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.metrics_port == 9108
    assert s.metrics_bind == "0.0.0.0"
    assert s.config_path is None
    assert s.app_id == "cxstream"
    assert s.datadir == Path("./cxstream-data")
    assert s.kafka == KafkaSecurity()
    assert s.kafka.security_protocol == "PLAINTEXT"
    assert s.topics == Topics(
        interactions="cx.interactions",
        feedback="cx.feedback",
        alerts="cx.alerts",
        deadletter="cx.deadletter",
        partitions=8,
    )
    assert s.limits == Limits(max_dimension_values=50, top_n=20)
    assert s.dedupe_horizon_s == 86_400
    assert s.csat_thresholds == {5: 4, 7: 6, 10: 8}
    assert s.publish_interval_s == 1.0
    assert s.alerts == ()
    assert s == Settings()


@pytest.mark.parametrize("text", ["", "\n", "# nothing yet\n", "---\n", "topics:\nalerts:\n"])
def test_empty_file_or_sections_mean_defaults(text: str) -> None:
    assert load_yaml_config(text) == FileConfig()


def test_empty_file_on_disk_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "cxstream.yaml"
    path.write_text("")
    assert load_yaml_config(path) == FileConfig()
    s = load_settings({"CXSTREAM_CONFIG": str(path)})
    assert s.config_path == path
    assert s.topics == Topics()


def test_settings_objects_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.metrics_port = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        s.topics.partitions = 1  # type: ignore[misc]


def test_csat_thresholds_do_not_share_the_default_dict() -> None:
    a, b = FileConfig(), FileConfig()
    a.csat_thresholds[5] = 1
    assert b.csat_thresholds == {5: 4, 7: 6, 10: 8}
    assert dict(DEFAULT_CSAT_THRESHOLDS) == {5: 4, 7: 6, 10: 8}


# --- good configs -----------------------------------------------------------


def test_spec_example_rules() -> None:
    config = load_yaml_config(SPEC_ALERTS)
    assert config.alerts == (
        AlertRule(
            name="nps_low",
            metric="nps",
            window="1h",
            scope="all",
            below=20.0,
            min_n=30,
            severity="warning",
        ),
        AlertRule(
            name="csat_drop",
            metric="csat",
            window="1h",
            drop_vs="7d",
            alpha=0.01,
            min_n=50,
            severity="critical",
        ),
    )
    assert [rule.kind for rule in config.alerts] == ["below", "drop_vs"]


@pytest.mark.parametrize(
    ("text", "check"),
    [
        pytest.param(
            "topics: {interactions: a.in, feedback: b-in, alerts: c_out, deadletter: D, "
            "partitions: 3}",
            lambda c: (
                c.topics
                == Topics(
                    interactions="a.in",
                    feedback="b-in",
                    alerts="c_out",
                    deadletter="D",
                    partitions=3,
                )
            ),
            id="topics",
        ),
        pytest.param(
            "topics: {feedback: fb}",
            lambda c: c.topics == Topics(feedback="fb"),
            id="topics-partial",
        ),
        pytest.param(
            "limits: {max_dimension_values: 10, top_n: 5}",
            lambda c: c.limits == Limits(max_dimension_values=10, top_n=5),
            id="limits",
        ),
        pytest.param(
            "dedupe: {horizon_s: 3600}", lambda c: c.dedupe_horizon_s == 3600, id="dedupe"
        ),
        pytest.param(
            "csat: {thresholds: {7: 5}}",
            lambda c: c.csat_thresholds == {5: 4, 7: 5, 10: 8},
            id="csat-override-one-scale",
        ),
        pytest.param(
            "csat: {thresholds: {5: 5, 7: 7, 10: 10}}",
            lambda c: c.csat_thresholds == {5: 5, 7: 7, 10: 10},
            id="csat-top-of-scale",
        ),
        pytest.param(
            "csat: {thresholds: {'10': 1}}",
            lambda c: c.csat_thresholds == {5: 4, 7: 6, 10: 1},
            id="csat-quoted-scale",
        ),
        pytest.param(
            "publish: {interval_s: 0.25}", lambda c: c.publish_interval_s == 0.25, id="publish"
        ),
        pytest.param(
            "publish: {interval_s: 2}",
            lambda c: c.publish_interval_s == 2.0 and isinstance(c.publish_interval_s, float),
            id="publish-int",
        ),
        pytest.param(
            "limits: {top_n: 5.0}", lambda c: c.limits.top_n == 5, id="integral-float-is-int"
        ),
        pytest.param("limits: {top_n: null}", lambda c: c.limits.top_n == 20, id="null-is-default"),
        pytest.param("alerts: []", lambda c: c.alerts == (), id="no-rules"),
        pytest.param(
            rule_yaml(scope="product=web_app", for_s=300, severity="info"),
            lambda c: (
                (c.alerts[0].scope, c.alerts[0].for_s, c.alerts[0].severity)
                == ("product=web_app", 300.0, "info")
            ),
            id="rule-scope-for-severity",
        ),
        pytest.param(
            rule_yaml(scope=None),
            lambda c: c.alerts[0].scope is None,
            id="rule-null-scope-is-every-scope",
        ),
        pytest.param(
            rule_yaml(below=_DROP, above=-0.5, metric="bounce_rate", scope="channel=web"),
            lambda c: c.alerts[0].above == -0.5 and c.alerts[0].kind == "above",
            id="rule-above",
        ),
        pytest.param(
            rule_yaml(below=_DROP, metric="ces", window="24h", rise_vs="30d", alpha=0.05),
            lambda c: (
                (c.alerts[0].rise_vs, c.alerts[0].alpha, c.alerts[0].kind)
                == ("30d", 0.05, "rise_vs")
            ),
            id="rule-rise-vs",
        ),
        pytest.param(
            rule_yaml(below=_DROP, window="5m", drop_vs="1h"),
            lambda c: c.alerts[0].alpha == 0.01,
            id="rule-default-alpha",
        ),
        pytest.param(
            rule_yaml(scope="touchpoint=_all"),
            lambda c: c.alerts[0].scope == "touchpoint=_all",
            id="rule-scope-escaped-all",
        ),
        pytest.param(
            "alerts:\n  - &r {name: one, metric: nps, window: 1h, below: 10}\n"
            "  - {<<: *r, name: two}\n",
            lambda c: [r.name for r in c.alerts] == ["one", "two"],
            id="yaml-merge-key-overrides-are-not-duplicates",
        ),
    ],
)
def test_good_configs(text: str, check: object) -> None:
    config = load_yaml_config(text)
    assert callable(check)
    assert check(config), config


# --- bad configs: the exact message -----------------------------------------

BAD_CONFIGS = [
    # top level and sections
    (
        "[1, 2]",
        "<string>: expected a mapping with keys topics, limits, dedupe, csat, publish, "
        "alerts, got [1, 2]",
    ),
    ("topic: {}", "topic: unknown key; did you mean 'topics'?"),
    (
        "kafka: {}",
        "kafka: unknown key; expected one of topics, limits, dedupe, csat, publish, alerts",
    ),
    ("topics: cx", "topics: expected a mapping, got 'cx'"),
    # topics
    ("topics: {interaction: x}", "topics.interaction: unknown key; did you mean 'interactions'?"),
    (
        "topics: {alerts: 'cx alerts'}",
        "topics.alerts: expected 1 to 249 characters of a-z, A-Z, 0-9, '.', '_', '-', "
        "got 'cx alerts'",
    ),
    (
        "topics: {feedback: 7}",
        "topics.feedback: expected 1 to 249 characters of a-z, A-Z, 0-9, '.', '_', '-', got 7",
    ),
    (
        "topics: {deadletter: cx.interactions}",
        "topics.deadletter: expected a name not already used by interactions, "
        "got 'cx.interactions'",
    ),
    ("topics: {partitions: 0}", "topics.partitions: expected an int >= 1, got 0"),
    ("topics: {partitions: '8'}", "topics.partitions: expected an int >= 1, got '8'"),
    ("topics: {partitions: true}", "topics.partitions: expected an int >= 1, got true"),
    ("topics: {partitions: 2.5}", "topics.partitions: expected an int >= 1, got 2.5"),
    # limits, dedupe, publish
    ("limits: {top_n: 0}", "limits.top_n: expected an int >= 1, got 0"),
    (
        "limits: {max_dimension_values: -3}",
        "limits.max_dimension_values: expected an int >= 1, got -3",
    ),
    ("limits: {topn: 3}", "limits.topn: unknown key; did you mean 'top_n'?"),
    ("dedupe: {horizon_s: 0}", "dedupe.horizon_s: expected an int >= 1, got 0"),
    ("dedupe: {horizon: 60}", "dedupe.horizon: unknown key; did you mean 'horizon_s'?"),
    ("publish: {interval_s: 0}", "publish.interval_s: expected a number > 0, got 0"),
    ("publish: {interval_s: -1.5}", "publish.interval_s: expected a number > 0, got -1.5"),
    ("publish: {interval_s: .inf}", "publish.interval_s: expected a number > 0, got inf"),
    ("publish: {interval_s: fast}", "publish.interval_s: expected a number > 0, got 'fast'"),
    ("publish: {interval: 1}", "publish.interval: unknown key; did you mean 'interval_s'?"),
    # csat
    ("csat: {thresholds: {7: 9}}", "csat.thresholds.7: expected an int from 1 to 7, got 9"),
    ("csat: {thresholds: {5: 0}}", "csat.thresholds.5: expected an int from 1 to 5, got 0"),
    ("csat: {thresholds: {10: 8.5}}", "csat.thresholds.10: expected an int from 1 to 10, got 8.5"),
    ("csat: {thresholds: {6: 4}}", "csat.thresholds.6: unknown scale, expected one of 5, 7, 10"),
    (
        "csat: {thresholds: [4, 6, 8]}",
        "csat.thresholds: expected a mapping of scale (5, 7, 10) to threshold, got [4, 6, 8]",
    ),
    ("csat: {threshold: {5: 4}}", "csat.threshold: unknown key; did you mean 'thresholds'?"),
    # alerts: structure
    ("alerts: {name: x}", "alerts: expected a list of rules, got {'name': 'x'}"),
    ("alerts: [nps_low]", "alerts[0]: expected a mapping (one rule), got 'nps_low'"),
    ("alerts:\n  - {metric: nps, window: 1h, below: 1}", "alerts[0].name: required key is missing"),
    ("alerts:\n  - {name: a, window: 1h, below: 1}", "alerts[0].metric: required key is missing"),
    ("alerts:\n  - {name: a, metric: nps, below: 1}", "alerts[0].window: required key is missing"),
    (rule_yaml(belw=3), "alerts[0].belw: unknown key; did you mean 'below'?"),
    (
        rule_yaml(colour="red"),
        "alerts[0].colour: unknown key; expected one of name, metric, window, scope, below, "
        "above, drop_vs, rise_vs, alpha, min_n, for_s, severity",
    ),
    # alerts: values
    (
        rule_yaml(name=""),
        "alerts[0].name: expected 1 to 128 characters of a-z, A-Z, 0-9, '_', '.', '-', got ''",
    ),
    (
        rule_yaml(name="nps|low"),
        "alerts[0].name: expected 1 to 128 characters of a-z, A-Z, 0-9, '_', '.', '-', "
        "got 'nps|low'",
    ),
    (
        rule_yaml(metric="npss"),
        "alerts[0].metric: expected a metric field such as nps, csat or ces, got 'npss'; "
        "did you mean 'nps'?",
    ),
    (
        rule_yaml(metric="happiness"),
        "alerts[0].metric: expected a metric field such as nps, csat or ces, got 'happiness'",
    ),
    (rule_yaml(metric=7), "alerts[0].metric: expected a metric field name, got 7"),
    (rule_yaml(window="2h"), "alerts[0].window: expected one of 5m, 1h, 24h, 7d, 30d, got '2h'"),
    (
        rule_yaml(scope="device=ios"),
        "alerts[0].scope: expected all, or product=, channel= or touchpoint= and a normalized "
        "value (a-z, 0-9, '_', '.', '-'), got 'device=ios'",
    ),
    (
        rule_yaml(scope="product=Web App"),
        "alerts[0].scope: expected all, or product=, channel= or touchpoint= and a normalized "
        "value (a-z, 0-9, '_', '.', '-'), got 'product=Web App'; did you mean 'product=web_app'?",
    ),
    (
        rule_yaml(scope="channel=all"),
        "alerts[0].scope: expected all, or product=, channel= or touchpoint= and a normalized "
        "value (a-z, 0-9, '_', '.', '-'), got 'channel=all'; did you mean 'channel=_all'?",
    ),
    (
        rule_yaml(scope="product="),
        "alerts[0].scope: expected all, or product=, channel= or touchpoint= and a normalized "
        "value (a-z, 0-9, '_', '.', '-'), got 'product='; did you mean 'product=unknown'?",
    ),
    (rule_yaml(below=_DROP), "alerts[0]: give exactly one of below, above, drop_vs, rise_vs"),
    (rule_yaml(above=80), "alerts[0]: give exactly one of below, above, drop_vs, rise_vs"),
    (rule_yaml(drop_vs="7d"), "alerts[0]: give exactly one of below, above, drop_vs, rise_vs"),
    (rule_yaml(below="low"), "alerts[0].below: expected a number, got 'low'"),
    (rule_yaml(below=_DROP, above=True), "alerts[0].above: expected a number, got true"),
    (
        rule_yaml(below=_DROP, drop_vs="1h"),
        "alerts[0].drop_vs: expected a window longer than 1h (24h, 7d, 30d), got '1h'",
    ),
    (
        rule_yaml(below=_DROP, window="7d", rise_vs="24h"),
        "alerts[0].rise_vs: expected a window longer than 7d (30d), got '24h'",
    ),
    (
        rule_yaml(below=_DROP, window="30d", drop_vs="30d"),
        "alerts[0].drop_vs: no window is longer than 30d, got '30d'",
    ),
    (
        rule_yaml(below=_DROP, drop_vs="7d", alpha=0),
        "alerts[0].alpha: expected a number between 0 and 1 (exclusive), got 0",
    ),
    (
        rule_yaml(below=_DROP, drop_vs="7d", alpha=1.0),
        "alerts[0].alpha: expected a number between 0 and 1 (exclusive), got 1.0",
    ),
    (rule_yaml(alpha=0.05), "alerts[0].alpha: only used with drop_vs or rise_vs, not below"),
    (rule_yaml(min_n=-1), "alerts[0].min_n: expected an int >= 0, got -1"),
    (rule_yaml(min_n=2.5), "alerts[0].min_n: expected an int >= 0, got 2.5"),
    (rule_yaml(for_s=-5), "alerts[0].for_s: expected a number >= 0, got -5"),
    (
        rule_yaml(severity="page"),
        "alerts[0].severity: expected one of info, warning, critical, got 'page'",
    ),
    (
        rule_yaml(severity="Critical"),
        "alerts[0].severity: expected one of info, warning, critical, got 'Critical'",
    ),
    # the second rule is named in the path
    (
        SPEC_ALERTS + "  - {name: x, metric: ces, window: 2h, above: 5}\n",
        "alerts[2].window: expected one of 5m, 1h, 24h, 7d, 30d, got '2h'",
    ),
    # duplicate rule names
    (
        SPEC_ALERTS + "  - {name: nps_low, metric: ces, window: 1h, above: 5}\n",
        "alerts[2].name: duplicate rule name 'nps_low', already used by alerts[0]",
    ),
    # YAML syntax: file (here the string) and line:column
    ("alerts:\n  - name: a\n    name: b\n", "<string>:3:5: invalid YAML: duplicate key 'name'"),
    (
        "topics:\n  feedback: a\n feedback: b\n",
        "<string>:3:2: invalid YAML: expected <block end>, but found '<block mapping start>'",
    ),
    ("alerts: [a, b\n", "<string>:2:1: invalid YAML: expected ',' or ']', but got '<stream end>'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_bad_configs(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml_config(text)
    assert str(info.value) == message
    assert "\n" not in str(info.value)
    assert type(info.value) is ConfigError


def test_custom_metric_fields_replace_the_default() -> None:
    text = rule_yaml(metric="wow_score")
    config = load_yaml_config(text, metric_fields={"wow_score"})
    assert config.alerts[0].metric == "wow_score"
    with pytest.raises(ConfigError, match=r"^alerts\[0\]\.metric: "):
        load_yaml_config(rule_yaml(metric="nps"), metric_fields={"wow_score"})


def test_every_spec_metric_field_is_accepted() -> None:
    assert len(set(METRIC_FIELDS)) == len(METRIC_FIELDS) == 44
    for metric in METRIC_FIELDS:
        assert load_yaml_config(rule_yaml(metric=metric)).alerts[0].metric == metric


# --- files ------------------------------------------------------------------


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "cx.yaml"
    path.write_text("topics:\n  interactions: a\nlimits: {top_n: 3\n")
    with pytest.raises(ConfigError) as info:
        load_yaml_config(path)
    assert str(info.value).startswith(f"{path}:4:1: invalid YAML: ")


def test_settings_error_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cx.yaml"
    path.write_text(SPEC_ALERTS.replace("window: 1h", "window: 2h", 1))
    with pytest.raises(ConfigError) as info:
        load_settings({"CXSTREAM_CONFIG": str(path)})
    assert str(info.value) == "alerts[0].window: expected one of 5m, 1h, 24h, 7d, 30d, got '2h'"


def test_settings_read_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cx.yaml"
    path.write_text("topics: {partitions: 3}\npublish: {interval_s: 0.5}\n" + SPEC_ALERTS)
    s = load_settings({"CXSTREAM_CONFIG": str(path), "CXSTREAM_METRICS_PORT": "9200"})
    assert s.topics.partitions == 3
    assert s.publish_interval_s == 0.5
    assert [r.name for r in s.alerts] == ["nps_low", "csat_drop"]
    assert s.metrics_port == 9200


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_settings({"CXSTREAM_CONFIG": str(missing)})
    assert str(info.value) == f"CXSTREAM_CONFIG: expected an existing YAML file, got '{missing}'"


def test_unreadable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "cx.yaml"
    path.write_bytes(b"topics:\n  feedback: \xff\n")
    with pytest.raises(ConfigError) as info:
        load_yaml_config(path)
    assert str(info.value) == f"{path}: expected UTF-8 text, got byte 0xff at offset 20"


def test_a_file_name_passed_as_text_gets_a_hint() -> None:
    with pytest.raises(ConfigError, match=r"to read a file, pass a pathlib\.Path$"):
        load_yaml_config("cxstream.yaml")


# --- the environment --------------------------------------------------------


def test_environment_values() -> None:
    s = load_settings(
        {
            "CXSTREAM_BROKER": "kafka://k1:9093;k2",
            "CXSTREAM_REDIS_URL": "rediss://cache.internal:6380/2",
            "CXSTREAM_METRICS_PORT": " 0 ",
            "CXSTREAM_METRICS_BIND": "127.0.0.1",
            "CXSTREAM_APP_ID": "cx-eu.1",
            "CXSTREAM_DATADIR": "/var/lib/cx",
            "CXSTREAM_KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
            "CXSTREAM_KAFKA_SASL_MECHANISM": "scram-sha-512",
            "CXSTREAM_KAFKA_SASL_USERNAME": "svc",
            "CXSTREAM_KAFKA_SASL_PASSWORD": " pa ss ",
            "UNRELATED": "ignored",
        }
    )
    assert s.bootstrap_servers == ["k1:9093", "k2:9092"]
    assert s.broker_urls == ["kafka://k1:9093", "kafka://k2:9092"]
    assert s.redis_url == "rediss://cache.internal:6380/2"
    assert s.metrics_port == 0
    assert s.metrics_bind == "127.0.0.1"
    assert s.app_id == "cx-eu.1"
    assert s.datadir == Path("/var/lib/cx")
    assert s.kafka == KafkaSecurity(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password=" pa ss ",  # passwords are taken verbatim
    )


def test_empty_variables_count_as_unset() -> None:
    env = {name: "" for name in ENV_NAMES}
    assert load_settings(env) == Settings()


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXSTREAM_APP_ID", "from-environ")
    monkeypatch.delenv("CXSTREAM_CONFIG", raising=False)
    assert load_settings().app_id == "from-environ"


def test_sasl_mechanism_defaults_to_plain() -> None:
    s = load_settings(
        {
            "CXSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CXSTREAM_KAFKA_SASL_USERNAME": "u",
            "CXSTREAM_KAFKA_SASL_PASSWORD": "p",
        }
    )
    assert s.kafka.sasl_mechanism == "PLAIN"


def test_ssl_cafile(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {"CXSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL", "CXSTREAM_KAFKA_SSL_CAFILE": str(ca)}
    assert load_settings(env).kafka.ssl_cafile == ca


@pytest.mark.parametrize(
    ("broker", "servers"),
    [
        ("kafka://localhost:9092", ["localhost:9092"]),
        ("kafka://h1:9092;h2:9092", ["h1:9092", "h2:9092"]),
        ("kafka://h1:9092;kafka://h2:9093", ["h1:9092", "h2:9093"]),
        ("h1:9092,h2:9092", ["h1:9092", "h2:9092"]),
        ("h1, h2:1234 ,", ["h1:9092", "h2:1234"]),
        ("aiokafka://b.example.com", ["b.example.com:9092"]),
        ("kafka_1:29092", ["kafka_1:29092"]),
        ("kafka://10.0.0.5:19092/", ["10.0.0.5:19092"]),
        ("[::1]:9092", ["[::1]:9092"]),
        ("kafka://[2001:db8::1]", ["[2001:db8::1]:9092"]),
    ],
)
def test_bootstrap_servers(broker: str, servers: list[str]) -> None:
    assert load_settings({"CXSTREAM_BROKER": broker}).bootstrap_servers == servers


BROKER_EXPECTED = (
    "CXSTREAM_BROKER: expected kafka://host:port, several joined by ';' or ',' "
    "(the port defaults to 9092), got "
)
REDIS_EXPECTED = (
    "CXSTREAM_REDIS_URL: expected a URL like redis://host:6379/0 (or rediss://, unix://), got "
)
BAD_ENVIRONMENTS = [
    (
        {"CXSTREAM_METRICS_PORT": "abc"},
        "CXSTREAM_METRICS_PORT: expected an int from 0 to 65535, got 'abc'",
    ),
    (
        {"CXSTREAM_METRICS_PORT": "65536"},
        "CXSTREAM_METRICS_PORT: expected an int from 0 to 65535, got '65536'",
    ),
    (
        {"CXSTREAM_METRICS_PORT": "-1"},
        "CXSTREAM_METRICS_PORT: expected an int from 0 to 65535, got '-1'",
    ),
    (
        {"CXSTREAM_METRICS_PORT": "9108.0"},
        "CXSTREAM_METRICS_PORT: expected an int from 0 to 65535, got '9108.0'",
    ),
    (
        {"CXSTREAM_METRICS_BIND": "not a host"},
        "CXSTREAM_METRICS_BIND: expected an IP address or host name, got 'not a host'",
    ),
    ({"CXSTREAM_BROKER": "http://h:9092"}, BROKER_EXPECTED + "'http://h:9092'"),
    ({"CXSTREAM_BROKER": "h1:port"}, BROKER_EXPECTED + "'h1:port'"),
    ({"CXSTREAM_BROKER": "h1:70000"}, BROKER_EXPECTED + "'h1:70000'"),
    ({"CXSTREAM_BROKER": ";,"}, BROKER_EXPECTED + "';,'"),
    ({"CXSTREAM_REDIS_URL": "localhost:6379"}, REDIS_EXPECTED + "'localhost:6379'"),
    ({"CXSTREAM_REDIS_URL": "redis://h/db0"}, REDIS_EXPECTED + "'redis://h/db0'"),
    (
        {"CXSTREAM_APP_ID": "my app"},
        "CXSTREAM_APP_ID: expected 1 to 100 characters of a-z, A-Z, 0-9, '.', '_', '-', "
        "got 'my app'",
    ),
    (
        {"CXSTREAM_KAFKA_SECURITY_PROTOCOL": "TLS"},
        "CXSTREAM_KAFKA_SECURITY_PROTOCOL: expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, "
        "SASL_SSL, got 'TLS'",
    ),
    (
        {
            "CXSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CXSTREAM_KAFKA_SASL_MECHANISM": "GSSAPI",
            "CXSTREAM_KAFKA_SASL_USERNAME": "u",
            "CXSTREAM_KAFKA_SASL_PASSWORD": "p",
        },
        "CXSTREAM_KAFKA_SASL_MECHANISM: expected one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, "
        "got 'GSSAPI'",
    ),
    (
        {"CXSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CXSTREAM_KAFKA_SASL_PASSWORD": "p"},
        "CXSTREAM_KAFKA_SASL_USERNAME: required when CXSTREAM_KAFKA_SECURITY_PROTOCOL is SASL_SSL",
    ),
    (
        {"CXSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CXSTREAM_KAFKA_SASL_USERNAME": "u"},
        "CXSTREAM_KAFKA_SASL_PASSWORD: required when CXSTREAM_KAFKA_SECURITY_PROTOCOL is "
        "SASL_PLAINTEXT",
    ),
    (
        {"CXSTREAM_KAFKA_SASL_USERNAME": "u"},
        "CXSTREAM_KAFKA_SASL_USERNAME: set, but CXSTREAM_KAFKA_SECURITY_PROTOCOL is PLAINTEXT; "
        "use SASL_PLAINTEXT or SASL_SSL",
    ),
    (
        {"CXSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL", "CXSTREAM_KAFKA_SSL_CAFILE": "/no/such/ca.pem"},
        "CXSTREAM_KAFKA_SSL_CAFILE: expected an existing file, got '/no/such/ca.pem'",
    ),
]


@pytest.mark.parametrize(("env", "message"), BAD_ENVIRONMENTS)
def test_bad_environment(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert str(info.value) == message


def test_cafile_needs_a_tls_protocol(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ConfigError) as info:
        load_settings({"CXSTREAM_KAFKA_SSL_CAFILE": str(ca)})
    assert str(info.value) == (
        "CXSTREAM_KAFKA_SSL_CAFILE: set, but CXSTREAM_KAFKA_SECURITY_PROTOCOL is PLAINTEXT; "
        "use SSL or SASL_SSL"
    )


def test_environment_is_checked_before_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cx.yaml"
    path.write_text("limits: {top_n: 0}\n")
    with pytest.raises(ConfigError, match=r"^CXSTREAM_METRICS_PORT: "):
        load_settings({"CXSTREAM_CONFIG": str(path), "CXSTREAM_METRICS_PORT": "x"})


# --- secrets ----------------------------------------------------------------

SECRET = "Hunter2-s3cret"
ENV_NAMES = [
    "CXSTREAM_BROKER",
    "CXSTREAM_REDIS_URL",
    "CXSTREAM_METRICS_PORT",
    "CXSTREAM_CONFIG",
    "CXSTREAM_APP_ID",
    "CXSTREAM_DATADIR",
    "CXSTREAM_METRICS_BIND",
    "CXSTREAM_KAFKA_SECURITY_PROTOCOL",
    "CXSTREAM_KAFKA_SASL_MECHANISM",
    "CXSTREAM_KAFKA_SASL_USERNAME",
    "CXSTREAM_KAFKA_SASL_PASSWORD",
    "CXSTREAM_KAFKA_SSL_CAFILE",
]


def test_secrets_not_in_repr_str_or_redacted() -> None:
    s = load_settings(
        {
            "CXSTREAM_REDIS_URL": f"redis://default:{SECRET}@cache:6379/0",
            "CXSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CXSTREAM_KAFKA_SASL_USERNAME": "svc",
            "CXSTREAM_KAFKA_SASL_PASSWORD": SECRET,
        }
    )
    # The clients still get the real values.
    assert s.kafka.sasl_password == SECRET
    assert SECRET in s.redis_url
    shown = [repr(s), str(s), repr(s.kafka), str(s.kafka), f"{s}", json.dumps(s.redacted())]
    for text in shown:
        assert SECRET not in text
    assert "redis://default:***@cache:6379/0" in repr(s)
    assert "sasl_password='***'" in repr(s)
    assert s.redacted()["kafka"]["sasl_password"] == "***"
    assert s.redacted()["redis_url"] == "redis://default:***@cache:6379/0"


@pytest.mark.parametrize(
    "redis_url",
    [
        f"redis://:{SECRET}@cache:6379/0",
        f"redis://{SECRET}@cache:6379/0",
        f"redis://cache:6379/0?password={SECRET}",
        f"unix:///run/redis.sock?db=0&password={SECRET}",
    ],
)
def test_redis_password_masked_in_repr(redis_url: str) -> None:
    s = load_settings({"CXSTREAM_REDIS_URL": redis_url})
    assert s.redis_url == redis_url
    assert SECRET not in repr(s)
    assert SECRET not in json.dumps(s.redacted())


SECRET_ERRORS = [
    (
        {"CXSTREAM_REDIS_URL": f"redis://:{SECRET}@cache:99999/0"},
        REDIS_EXPECTED + "'redis://:***@cache:99999/0'",
    ),
    (
        {"CXSTREAM_REDIS_URL": f"http://user:{SECRET}@cache/0"},
        REDIS_EXPECTED + "'http://user:***@cache/0'",
    ),
    (
        {"CXSTREAM_REDIS_URL": f"redis://:{SECRET}@cache:6379/x?password={SECRET}"},
        REDIS_EXPECTED + "'redis://:***@cache:6379/x?password=***'",
    ),
    ({"CXSTREAM_REDIS_URL": f"redis://:{SECRET}@[::1"}, REDIS_EXPECTED + "'redis://:***@[::1'"),
    (
        {"CXSTREAM_BROKER": f"kafka://svc:{SECRET}@broker:9092"},
        "CXSTREAM_BROKER: credentials do not belong in the broker URL; set "
        "CXSTREAM_KAFKA_SASL_USERNAME and CXSTREAM_KAFKA_SASL_PASSWORD",
    ),
    (
        {"CXSTREAM_KAFKA_SASL_PASSWORD": SECRET},
        "CXSTREAM_KAFKA_SASL_PASSWORD: set, but CXSTREAM_KAFKA_SECURITY_PROTOCOL is PLAINTEXT; "
        "use SASL_PLAINTEXT or SASL_SSL",
    ),
    (
        {"CXSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CXSTREAM_KAFKA_SASL_PASSWORD": SECRET},
        "CXSTREAM_KAFKA_SASL_USERNAME: required when CXSTREAM_KAFKA_SECURITY_PROTOCOL is SASL_SSL",
    ),
    (
        {
            "CXSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CXSTREAM_KAFKA_SASL_PASSWORD": SECRET,
            "CXSTREAM_KAFKA_SASL_USERNAME": "u",
            "CXSTREAM_METRICS_PORT": "x",
        },
        "CXSTREAM_METRICS_PORT: expected an int from 0 to 65535, got 'x'",
    ),
]


@pytest.mark.parametrize(("env", "message"), SECRET_ERRORS)
def test_secrets_never_in_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert str(info.value) == message
    # Nor anywhere in what a crash would print, chained exceptions included.
    printed = "".join(traceback.format_exception(info.value))
    assert SECRET not in printed
    cause: BaseException | None = info.value
    while cause is not None:
        assert SECRET not in str(cause)
        assert SECRET not in repr(cause)
        cause = cause.__cause__ or cause.__context__


# --- building in code -------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Topics(partitions=0), "partitions: expected an int >= 1, got 0"),
        (lambda: Limits(top_n=-1), "top_n: expected an int >= 1, got -1"),
        (
            lambda: AlertRule(name="a", metric="nps", window="2h", below=1),
            "window: expected one of 5m, 1h, 24h, 7d, 30d, got '2h'",
        ),
        (
            lambda: AlertRule(name="a", metric="nps", window="1h", below=1, above=2),
            "give exactly one of below, above, drop_vs, rise_vs",
        ),
        (
            lambda: FileConfig(csat_thresholds={7: 9}),
            "csat.thresholds.7: expected an int from 1 to 7, got 9",
        ),
        (
            lambda: FileConfig(
                alerts=(
                    AlertRule(name="a", metric="nps", window="1h", below=1),
                    AlertRule(name="a", metric="csat", window="1h", below=1),
                )
            ),
            "alerts[1].name: duplicate rule name 'a', already used by alerts[0]",
        ),
        (
            lambda: Settings(metrics_port=70000),
            "CXSTREAM_METRICS_PORT: expected an int from 0 to 65535, got 70000",
        ),
        (
            lambda: Settings(publish_interval_s=0),
            "publish.interval_s: expected a number > 0, got 0",
        ),
    ],
)
def test_checks_also_apply_when_built_in_code(build: object, message: str) -> None:
    assert callable(build)
    with pytest.raises(ConfigError) as info:
        build()
    assert str(info.value) == message


def test_partial_thresholds_in_code_keep_the_other_scales() -> None:
    assert FileConfig(csat_thresholds={10: 9}).csat_thresholds == {5: 4, 7: 6, 10: 9}


def test_alerts_list_becomes_tuple_and_settings_hash() -> None:
    rule = AlertRule(name="a", metric="nps", window="1h", below=1)
    config = FileConfig(alerts=[rule])  # type: ignore[arg-type]
    assert config.alerts == (rule,)
    assert hash(Settings()) == hash(Settings())


# --- the documentation ------------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_docs_example_is_valid_and_shows_the_defaults() -> None:
    text = DOCS.read_text(encoding="utf-8")
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = load_yaml_config(example)
    assert config.alerts == load_yaml_config(SPEC_ALERTS).alerts
    assert dataclasses.replace(config, alerts=()) == FileConfig()


def test_docs_name_every_variable_and_key() -> None:
    text = DOCS.read_text(encoding="utf-8")
    keys = [f"`topics.{f.name}`" for f in dataclasses.fields(Topics)]
    keys += [f"`limits.{f.name}`" for f in dataclasses.fields(Limits)]
    keys += ["`dedupe.horizon_s`", "`csat.thresholds`", "`publish.interval_s`", "`alerts`"]
    keys += [f"| `{f.name}` |" for f in dataclasses.fields(AlertRule)]
    keys += [f"`{name}`" for name in ENV_NAMES + list(METRIC_FIELDS)]
    assert [key for key in keys if key not in text] == []
