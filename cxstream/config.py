"""Settings: the environment and the YAML config file, checked once at start.

A bad value is refused before the worker touches Kafka or Redis, with a
one-line `ConfigError` that names the key and says what is wrong
(`csat.thresholds.7: expected an int from 1 to 7, got 9`), as SPEC section 6
asks. Every dataclass here checks itself in `__post_init__`, so settings built
in code are held to the same rules as settings read from a file; the loaders
add the key path (`alerts[1].window`) and the checks that need the file itself
(unknown keys, missing keys).

Secrets (the SASL password, a password inside the Redis URL) never appear in
`repr()`/`str()` or in an error message; log `Settings.redacted()`.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

import yaml
from yaml.constructor import ConstructorError

from cxstream.engine.metrics import METRIC_FIELDS
from cxstream.engine.partition import DEFAULT_CSAT_THRESHOLDS
from cxstream.engine.stats import TESTABLE_FIELDS
from cxstream.engine.windows import WINDOWS
from cxstream.errors import ConfigError
from cxstream.events import DIMENSIONS, normalize_dimension

__all__ = [
    "AlertRule",
    "FileConfig",
    "KafkaSecurity",
    "Limits",
    "Settings",
    "Topics",
    "load_settings",
    "load_yaml_config",
]

# Rolling windows, shortest first: the order decides which window may serve as
# the baseline of a `drop_vs`/`rise_vs` rule.
_WINDOWS: Final = tuple(w.name for w in sorted(WINDOWS, key=lambda w: w.width_ms))
_SEVERITIES: Final = ("info", "warning", "critical")
_CONDITIONS: Final = ("below", "above", "drop_vs", "rise_vs")
_SECURITY_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_DEFAULT_DATADIR: Final = Path("cxstream-data")
_DEFAULT_KAFKA_PORT: Final = 9092
_MASK: Final = "***"

# The environment variable behind each Settings field: they are the public
# names, so checks on these fields report them, whichever way a value arrived.
_ENV_NAMES: Final[Mapping[str, str]] = {
    "broker": "CXSTREAM_BROKER",
    "redis_url": "CXSTREAM_REDIS_URL",
    "metrics_port": "CXSTREAM_METRICS_PORT",
    "metrics_bind": "CXSTREAM_METRICS_BIND",
    "config_path": "CXSTREAM_CONFIG",
    "app_id": "CXSTREAM_APP_ID",
    "datadir": "CXSTREAM_DATADIR",
}
_KAFKA_ENV_NAMES: Final[Mapping[str, str]] = {
    "security_protocol": "CXSTREAM_KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "CXSTREAM_KAFKA_SASL_MECHANISM",
    "sasl_username": "CXSTREAM_KAFKA_SASL_USERNAME",
    "sasl_password": "CXSTREAM_KAFKA_SASL_PASSWORD",
    "ssl_cafile": "CXSTREAM_KAFKA_SSL_CAFILE",
}
_SECRET_ENV_NAMES: Final = frozenset({"CXSTREAM_KAFKA_SASL_PASSWORD"})

# Kafka's own rule for topic names (and so for anything Faust puts in one).
_KAFKA_NAME = re.compile(r"[A-Za-z0-9._-]+")
_RULE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_SCOPE_VALUE = re.compile(r"[a-z0-9_.-]{1,64}")
_HOST_NAME = re.compile(
    # RFC 1123 labels, plus '_': container names such as `kafka_1` resolve too.
    r"(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)
_DECIMAL = re.compile(r"[+-]?[0-9]+")

_T = TypeVar("_T")


# --- messages ---------------------------------------------------------------


class _Invalid(ConfigError):
    """A problem found by a dataclass check, keyed relative to that object.

    The loaders catch it and raise a plain `ConfigError` with the full key path
    (`alerts[1]` + `window`); built in code, it reads `window: ...`.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


def _join(path: str, key: str) -> str:
    """`alerts[1]` + `window` -> `alerts[1].window`; either part may be empty."""
    if not path:
        return key
    if not key:
        return path
    return f"{path}{key}" if key.startswith("[") else f"{path}.{key}"


def _show(value: object) -> str:
    """Spell a value as the config file would, short enough to keep one line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        value = str(value)
    text = repr(value)  # repr escapes newlines, so the message stays one line
    return text if len(text) <= 80 else text[:77] + "..."


def _choices(options: Collection[object]) -> str:
    return ", ".join(str(option) for option in options)


def _did_you_mean(word: str, options: Collection[str]) -> str | None:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return close[0] if close else None


def _set(obj: object, name: str, value: object) -> None:
    # The dataclasses are frozen; __post_init__ stores the checked, converted value.
    object.__setattr__(obj, name, value)


def _redact_url(url: str) -> str:
    """Mask the password of `scheme://user:password@host/...` and `?password=`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        # Without a colon the lone userinfo may well be a password: mask it too.
        netloc = f"{user}:{_MASK}@{hostport}" if colon else f"{_MASK}@{hostport}"
    query_at = tail.find("?")
    if query_at >= 0:
        path, query = tail[:query_at], tail[query_at + 1 :]
        fragment = ""
        if "#" in query:
            query, hash_, fragment = query.partition("#")
            fragment = hash_ + fragment
        pairs = []
        for pair in query.split("&"):
            name, eq, _ = pair.partition("=")
            pairs.append(f"{name}={_MASK}" if eq and "password" in name.lower() else pair)
        tail = f"{path}?{'&'.join(pairs)}{fragment}"
    return f"{scheme}{sep}{netloc}{tail}"


# --- value checks -----------------------------------------------------------
# Each takes the key to report and the raw value, returns the converted value
# or raises _Invalid. Booleans are refused wherever a number is asked for: YAML
# reads `yes`/`on` as true, which is never what a threshold meant.


def _int(key: str, value: object, lo: int, hi: int | None = None, *, text: bool = False) -> int:
    """An int from `lo` to `hi` (no upper bound if None); `7.0` counts as 7.

    `text=True` also takes a decimal string, as the environment gives.
    """
    expected = f"an int from {lo} to {hi}" if hi is not None else f"an int >= {lo}"
    number: object = value
    if text and isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        number = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if (
        isinstance(number, bool)
        or not isinstance(number, int)
        or number < lo
        or (hi is not None and number > hi)
    ):
        raise _Invalid(key, f"expected {expected}, got {_show(value)}")
    return number


def _number(key: str, value: object, expected: str, ok: Callable[[float], bool]) -> float:
    """A finite int or float for which `ok` holds, as a float."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not ok(float(value))
    ):
        raise _Invalid(key, f"expected {expected}, got {_show(value)}")
    return float(value)


def _one_of(key: str, value: object, options: Collection[str]) -> str:
    if not isinstance(value, str) or value not in options:
        raise _Invalid(key, f"expected one of {_choices(options)}, got {_show(value)}")
    return value


def _one_of_upper(key: str, value: object, options: Collection[str]) -> str:
    """Like `_one_of`, but `sasl_ssl` is read as `SASL_SSL`; Kafka's own spelling is stored."""
    canonical = value.strip().upper() if isinstance(value, str) else value
    if not isinstance(canonical, str) or canonical not in options:
        raise _Invalid(key, f"expected one of {_choices(options)}, got {_show(value)}")
    return canonical


def _kafka_name(key: str, value: object, max_len: int = 249) -> str:
    if (
        not isinstance(value, str)
        or not _KAFKA_NAME.fullmatch(value)
        or len(value) > max_len
        or value in (".", "..")
    ):
        raise _Invalid(
            key,
            f"expected 1 to {max_len} characters of a-z, A-Z, 0-9, '.', '_', '-', "
            f"got {_show(value)}",
        )
    return value


def _path(key: str, value: object) -> Path:
    if isinstance(value, Path):
        return value
    if isinstance(value, str) and value.strip():
        return Path(value.strip())
    raise _Invalid(key, f"expected a file system path, got {_show(value)}")


def _scope(key: str, value: object) -> str | None:
    """`None` (every scope), `all`, or `product=`/`channel=`/`touchpoint=` and a value."""
    if value is None or value == "all":
        return value
    if isinstance(value, str):
        dimension, eq, raw = value.partition("=")
        if eq and dimension in DIMENSIONS and raw != "all" and _SCOPE_VALUE.fullmatch(raw):
            return value
    problem = (
        "expected all, or product=, channel= or touchpoint= and a normalized value "
        f"(a-z, 0-9, '_', '.', '-'), got {_show(value)}"
    )
    if isinstance(value, str) and "=" in value:
        dimension, _, raw = value.partition("=")
        dimension = dimension.strip().lower()
        if dimension in DIMENSIONS:
            problem += f"; did you mean '{dimension}={normalize_dimension(raw.strip())}'?"
    raise _Invalid(key, problem)


def _broker_servers(key: str, value: object) -> list[str]:
    """`kafka://h1:9092;h2:9092` or `h1:9092,h2` -> `["h1:9092", "h2:9092"]`."""
    expected = (
        "expected kafka://host:port, several joined by ';' or ',' "
        f"(the port defaults to {_DEFAULT_KAFKA_PORT}), got "
    )
    if not isinstance(value, str):
        raise _Invalid(key, expected + _show(value))
    if "@" in value:
        # Never echo it: whatever precedes the '@' may be a password.
        raise _Invalid(
            key,
            "credentials do not belong in the broker URL; set CXSTREAM_KAFKA_SASL_USERNAME "
            "and CXSTREAM_KAFKA_SASL_PASSWORD",
        )
    servers: list[str] = []
    for part in re.split(r"[;,]", value):
        server = part.strip()
        if not server:
            continue
        scheme, sep, rest = server.partition("://")
        if sep:
            if scheme.lower() not in ("kafka", "aiokafka"):
                raise _Invalid(key, expected + _show(value))
            server = rest
        server = server.rstrip("/")
        host, port = server, str(_DEFAULT_KAFKA_PORT)
        if server.startswith("["):  # [::1]:9092
            close = server.find("]")
            host, after = server[: close + 1], server[close + 1 :]
            if close < 0 or (after and not after.startswith(":")):
                raise _Invalid(key, expected + _show(value))
            port = after[1:] or port
        elif ":" in server:
            host, _, port = server.rpartition(":")
        bare = host[1:-1] if host.startswith("[") else host
        if not (_HOST_NAME.fullmatch(bare) or _is_ip(bare)) or not port.isdigit():
            raise _Invalid(key, expected + _show(value))
        if not 1 <= int(port) <= 65535:
            raise _Invalid(key, expected + _show(value))
        servers.append(f"{host}:{int(port)}")
    if not servers:
        raise _Invalid(key, expected + _show(value))
    return servers


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _redis_url(key: str, value: object) -> str:
    """A URL redis-py's `from_url` takes; errors show it with the password masked."""
    if isinstance(value, str):
        try:
            parts = urlsplit(value.strip())
            port = parts.port  # raises ValueError when out of range or not a number
        except ValueError:
            parts, port = None, None
        if parts is not None:
            if parts.scheme in ("redis", "rediss"):
                db = parts.path.lstrip("/")
                if parts.hostname and (port is None or port > 0) and (not db or db.isdigit()):
                    return value.strip()
            elif parts.scheme == "unix" and parts.path:
                return value.strip()
    shown = _show(_redact_url(value)) if isinstance(value, str) else _show(value)
    raise _Invalid(
        key, f"expected a URL like redis://host:6379/0 (or rediss://, unix://), got {shown}"
    )


# --- the YAML parts ---------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Topics:
    """Kafka topic names, and how many partitions the topics cxstream creates get.

    The defaults are SPEC section 1's names; renaming lets several deployments
    share a cluster. The four names must differ: an output topic read back as
    input would feed alerts or dead letters into the metrics, and one topic
    used as both inputs would be read twice.
    """

    interactions: str = "cx.interactions"
    feedback: str = "cx.feedback"
    alerts: str = "cx.alerts"
    deadletter: str = "cx.deadletter"
    partitions: int = 8

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for name in ("interactions", "feedback", "alerts", "deadletter"):
            topic = _kafka_name(name, getattr(self, name))
            if topic in seen:
                raise _Invalid(
                    name, f"expected a name not already used by {seen[topic]}, got {_show(topic)}"
                )
            seen[topic] = name
        _set(self, "partitions", _int("partitions", self.partitions, 1))


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Caps that bound Redis keys and Prometheus series whatever producers send.

    `max_dimension_values` distinct values per dimension (and per page, element
    and feature list) are tracked, later ones count as `other`; top lists hold
    the `top_n` largest entries.
    """

    max_dimension_values: int = 50
    top_n: int = 20

    def __post_init__(self) -> None:
        _set(
            self,
            "max_dimension_values",
            _int("max_dimension_values", self.max_dimension_values, 1),
        )
        _set(self, "top_n", _int("top_n", self.top_n, 1))


@dataclass(frozen=True, kw_only=True)
class AlertRule:
    """One rule of the `alerts` list (SPEC section 4).

    Exactly one condition is set: `below`/`above` compare the value strictly
    with a number; `drop_vs`/`rise_vs` name a longer window whose value (without
    the overlap) is the baseline, and the rule fires when a one-sided test gives
    p < `alpha`. `scope` None means every scope. `min_n` observations must be
    behind the value (in both windows for a comparison) before the rule may
    fire, and the condition must hold for `for_s` seconds.

    Whether `metric` names a real field is checked by the loaders against their
    `metric_fields`, so this class does not fix the list of metrics.
    """

    name: str
    metric: str
    window: str
    scope: str | None = None
    below: float | None = None
    above: float | None = None
    drop_vs: str | None = None
    rise_vs: str | None = None
    alpha: float = 0.01
    min_n: int = 0
    for_s: float = 0.0
    severity: str = "warning"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _RULE_NAME.fullmatch(self.name):
            raise _Invalid(
                "name",
                "expected 1 to 128 characters of a-z, A-Z, 0-9, '_', '.', '-', "
                f"got {_show(self.name)}",
            )
        if not isinstance(self.metric, str) or not self.metric:
            raise _Invalid("metric", f"expected a metric field name, got {_show(self.metric)}")
        window = _one_of("window", self.window, _WINDOWS)
        _set(self, "scope", _scope("scope", self.scope))
        given = [name for name in _CONDITIONS if getattr(self, name) is not None]
        if len(given) != 1:
            raise _Invalid("", f"give exactly one of {_choices(_CONDITIONS)}")
        for name in ("below", "above"):
            if getattr(self, name) is not None:
                _set(self, name, _number(name, getattr(self, name), "a number", math.isfinite))
        longer = _WINDOWS[_WINDOWS.index(window) + 1 :]
        for name in ("drop_vs", "rise_vs"):
            baseline = getattr(self, name)
            if baseline is not None and baseline not in longer:
                if not longer:
                    raise _Invalid(
                        name, f"no window is longer than {window}, got {_show(baseline)}"
                    )
                raise _Invalid(
                    name,
                    f"expected a window longer than {window} ({_choices(longer)}), "
                    f"got {_show(baseline)}",
                )
        _set(
            self,
            "alpha",
            _number("alpha", self.alpha, "a number between 0 and 1 (exclusive)", _is_level),
        )
        _set(self, "min_n", _int("min_n", self.min_n, 0))
        _set(self, "for_s", _number("for_s", self.for_s, "a number >= 0", _non_negative))
        _one_of("severity", self.severity, _SEVERITIES)

    @property
    def kind(self) -> Literal["below", "above", "drop_vs", "rise_vs"]:
        """Which condition the rule uses."""
        if self.below is not None:
            return "below"
        if self.above is not None:
            return "above"
        return "drop_vs" if self.drop_vs is not None else "rise_vs"


def _is_level(x: float) -> bool:
    return 0.0 < x < 1.0


def _non_negative(x: float) -> bool:
    return x >= 0.0


def _positive(x: float) -> bool:
    return x > 0.0


def _default_csat_thresholds() -> dict[int, int]:
    return dict(DEFAULT_CSAT_THRESHOLDS)


@dataclass(frozen=True, kw_only=True)
class FileConfig:
    """What the YAML config file holds; a missing key keeps its default.

    `csat_thresholds` may give only some scales (`{7: 5}`): the others keep
    their defaults, so the stored dict always has 5, 7 and 10. Errors name the
    YAML key (`dedupe.horizon_s`), also when the object is built in code.
    """

    topics: Topics = field(default_factory=Topics)
    limits: Limits = field(default_factory=Limits)
    dedupe_horizon_s: int = 86_400
    # A dict cannot be hashed; equality still compares it.
    csat_thresholds: dict[int, int] = field(default_factory=_default_csat_thresholds, hash=False)
    publish_interval_s: float = 1.0
    alerts: tuple[AlertRule, ...] = ()

    def __post_init__(self) -> None:
        _set(self, "dedupe_horizon_s", _int("dedupe.horizon_s", self.dedupe_horizon_s, 1))
        _set(self, "csat_thresholds", _csat_thresholds(self.csat_thresholds))
        _set(
            self,
            "publish_interval_s",
            _number("publish.interval_s", self.publish_interval_s, "a number > 0", _positive),
        )
        rules = tuple(self.alerts)
        first_use: dict[str, int] = {}
        for index, rule in enumerate(rules):
            if not isinstance(rule, AlertRule):
                raise _Invalid(f"alerts[{index}]", f"expected an AlertRule, got {_show(rule)}")
            if rule.name in first_use:
                raise _Invalid(
                    f"alerts[{index}].name",
                    f"duplicate rule name {_show(rule.name)}, "
                    f"already used by alerts[{first_use[rule.name]}]",
                )
            first_use[rule.name] = index
        _set(self, "alerts", rules)


def _csat_thresholds(raw: object) -> dict[int, int]:
    if not isinstance(raw, Mapping):
        raise _Invalid(
            "csat.thresholds",
            f"expected a mapping of scale (5, 7, 10) to threshold, got {_show(raw)}",
        )
    merged = dict(DEFAULT_CSAT_THRESHOLDS)
    for key, value in raw.items():
        scale: int | None = None
        if isinstance(key, int) and not isinstance(key, bool) and key in merged:
            scale = key
        elif isinstance(key, str) and key.strip() in ("5", "7", "10"):
            scale = int(key)
        if scale is None:
            raise _Invalid(
                f"csat.thresholds.{key}",
                f"unknown scale, expected one of {_choices(DEFAULT_CSAT_THRESHOLDS)}",
            )
        merged[scale] = _int(f"csat.thresholds.{scale}", value, 1, scale)
    return merged


# --- the environment --------------------------------------------------------


@dataclass(frozen=True, kw_only=True, repr=False)
class KafkaSecurity:
    """How the Kafka clients authenticate; the fields mirror `CXSTREAM_KAFKA_*`.

    SASL settings are refused with a non-SASL protocol, and a CA file with a
    non-SSL one: they would be ignored, and the client would connect without
    the protection the operator asked for. With a SASL protocol the username
    and password are required and the mechanism defaults to PLAIN.
    """

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: Path | None = None

    def __post_init__(self) -> None:
        env = _KAFKA_ENV_NAMES
        protocol = _one_of_upper(
            env["security_protocol"], self.security_protocol, _SECURITY_PROTOCOLS
        )
        _set(self, "security_protocol", protocol)
        if self.sasl_mechanism is not None:
            mechanism = _one_of_upper(env["sasl_mechanism"], self.sasl_mechanism, _SASL_MECHANISMS)
            _set(self, "sasl_mechanism", mechanism)
        for name in ("sasl_username", "sasl_password"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                # Not echoed: this may be the password.
                raise _Invalid(env[name], "expected a non-empty string")
        if protocol.startswith("SASL_"):
            if self.sasl_mechanism is None:
                _set(self, "sasl_mechanism", "PLAIN")
            for name in ("sasl_username", "sasl_password"):
                if getattr(self, name) is None:
                    raise _Invalid(
                        env[name], f"required when {env['security_protocol']} is {protocol}"
                    )
        else:
            for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
                if getattr(self, name) is not None:
                    raise _Invalid(
                        env[name],
                        f"set, but {env['security_protocol']} is {protocol}; "
                        "use SASL_PLAINTEXT or SASL_SSL",
                    )
        if self.ssl_cafile is not None:
            cafile = _path(env["ssl_cafile"], self.ssl_cafile)
            if not cafile.is_file():
                raise _Invalid(env["ssl_cafile"], f"expected an existing file, got {_show(cafile)}")
            if protocol not in ("SSL", "SASL_SSL"):
                raise _Invalid(
                    env["ssl_cafile"],
                    f"set, but {env['security_protocol']} is {protocol}; use SSL or SASL_SSL",
                )
            _set(self, "ssl_cafile", cafile)

    def __repr__(self) -> str:
        password = None if self.sasl_password is None else _MASK
        return (
            f"KafkaSecurity(security_protocol={self.security_protocol!r}, "
            f"sasl_mechanism={self.sasl_mechanism!r}, sasl_username={self.sasl_username!r}, "
            f"sasl_password={password!r}, ssl_cafile={_path_text(self.ssl_cafile)!r})"
        )


def _path_text(path: Path | None) -> str | None:
    return None if path is None else str(path)


@dataclass(frozen=True, kw_only=True, repr=False)
class Settings(FileConfig):
    """Everything the worker is configured with: the environment plus the file.

    The fields of `FileConfig` come from the YAML file named by
    `CXSTREAM_CONFIG`; the others mirror one environment variable each (see
    `docs/configuration.md`), and errors name that variable. `repr()` and
    `redacted()` mask secrets; `redis_url` and `kafka.sasl_password` still
    hold the real values for the clients.
    """

    broker: str = "kafka://localhost:9092"
    redis_url: str = "redis://localhost:6379/0"
    metrics_port: int = 9108
    metrics_bind: str = "0.0.0.0"
    config_path: Path | None = None
    app_id: str = "cxstream"
    datadir: Path = _DEFAULT_DATADIR
    kafka: KafkaSecurity = field(default_factory=KafkaSecurity)

    def __post_init__(self) -> None:
        env = _ENV_NAMES
        _broker_servers(env["broker"], self.broker)
        _set(self, "redis_url", _redis_url(env["redis_url"], self.redis_url))
        _set(
            self,
            "metrics_port",
            _int(env["metrics_port"], self.metrics_port, 0, 65535, text=True),
        )
        bind = self.metrics_bind.strip() if isinstance(self.metrics_bind, str) else None
        if not bind or not (_is_ip(bind) or _HOST_NAME.fullmatch(bind)):
            raise _Invalid(
                env["metrics_bind"],
                f"expected an IP address or host name, got {_show(self.metrics_bind)}",
            )
        _set(self, "metrics_bind", bind)
        if self.config_path is not None:
            _set(self, "config_path", _path(env["config_path"], self.config_path))
        _kafka_name(env["app_id"], self.app_id, max_len=100)
        _set(self, "datadir", _path(env["datadir"], self.datadir))
        if not isinstance(self.kafka, KafkaSecurity):
            raise _Invalid("kafka", f"expected a KafkaSecurity, got {type(self.kafka).__name__}")
        super().__post_init__()

    @property
    def bootstrap_servers(self) -> list[str]:
        """The brokers as aiokafka wants them: `["h1:9092", "h2:9092"]`."""
        return _broker_servers(_ENV_NAMES["broker"], self.broker)

    @property
    def broker_urls(self) -> list[str]:
        """The brokers as Faust's `broker=` takes them: `["kafka://h1:9092", ...]`."""
        return [f"kafka://{server}" for server in self.bootstrap_servers]

    def redacted(self) -> dict[str, Any]:
        """Every setting as plain JSON-able data with the secrets masked, for logs."""
        kafka = self.kafka
        return {
            "broker": self.broker,
            "redis_url": _redact_url(self.redis_url),
            "metrics_port": self.metrics_port,
            "metrics_bind": self.metrics_bind,
            "config_path": _path_text(self.config_path),
            "app_id": self.app_id,
            "datadir": str(self.datadir),
            "kafka": {
                "security_protocol": kafka.security_protocol,
                "sasl_mechanism": kafka.sasl_mechanism,
                "sasl_username": kafka.sasl_username,
                "sasl_password": None if kafka.sasl_password is None else _MASK,
                "ssl_cafile": _path_text(kafka.ssl_cafile),
            },
            "topics": dataclasses.asdict(self.topics),
            "limits": dataclasses.asdict(self.limits),
            "dedupe": {"horizon_s": self.dedupe_horizon_s},
            "csat": {"thresholds": {str(k): v for k, v in self.csat_thresholds.items()}},
            "publish": {"interval_s": self.publish_interval_s},
            "alerts": [
                {k: v for k, v in dataclasses.asdict(rule).items() if v is not None}
                for rule in self.alerts
            ],
        }

    def __repr__(self) -> str:
        shown: dict[str, object] = {
            "broker": self.broker,
            "redis_url": _redact_url(self.redis_url),
            "metrics_port": self.metrics_port,
            "metrics_bind": self.metrics_bind,
            "config_path": _path_text(self.config_path),
            "app_id": self.app_id,
            "datadir": str(self.datadir),
            "kafka": self.kafka,  # its own repr masks the password
        }
        shown.update((f.name, getattr(self, f.name)) for f in fields(FileConfig))
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


# --- loading ----------------------------------------------------------------


def _build(path: str, cls: Callable[..., _T], values: Mapping[str, object]) -> _T:
    """Construct a config object, re-keying its complaint with the full path."""
    try:
        return cls(**values)
    except _Invalid as exc:
        raise ConfigError(f"{_join(path, exc.key)}: {exc.problem}") from None


def _check_keys(path: str, mapping: Mapping[Any, Any], allowed: Collection[str]) -> None:
    for key in mapping:
        if key not in allowed:
            where = _join(path, str(key))
            hint = _did_you_mean(str(key), allowed)
            if hint is not None:
                raise ConfigError(f"{where}: unknown key; did you mean '{hint}'?")
            raise ConfigError(f"{where}: unknown key; expected one of {_choices(allowed)}")


def _section(path: str, value: object, allowed: Collection[str]) -> dict[str, object]:
    """A mapping's present keys (`null` counts as absent), unknown keys refused."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {_show(value)}")
    _check_keys(path, value, allowed)
    return {str(k): v for k, v in value.items() if v is not None}


_TOP_KEYS: Final = ("topics", "limits", "dedupe", "csat", "publish", "alerts")
_RULE_KEYS: Final = tuple(f.name for f in fields(AlertRule))
_REQUIRED_RULE_KEYS: Final = ("name", "metric", "window")


def _file_config(source: str, data: object, metric_fields: Collection[str]) -> FileConfig:
    if data is None:  # an empty file, or only comments
        return FileConfig()
    if not isinstance(data, Mapping):
        hint = ""
        if isinstance(data, str) and data.endswith((".yaml", ".yml")):
            hint = "; to read a file, pass a pathlib.Path"
        raise ConfigError(
            f"{source}: expected a mapping with keys {_choices(_TOP_KEYS)}, got {_show(data)}{hint}"
        )
    top = _section("", data, _TOP_KEYS)
    values: dict[str, object] = {}
    if "topics" in top:
        topic_keys = [f.name for f in fields(Topics)]
        values["topics"] = _build("topics", Topics, _section("topics", top["topics"], topic_keys))
    if "limits" in top:
        limit_keys = [f.name for f in fields(Limits)]
        values["limits"] = _build("limits", Limits, _section("limits", top["limits"], limit_keys))
    for section, key, name in (
        ("dedupe", "horizon_s", "dedupe_horizon_s"),
        ("csat", "thresholds", "csat_thresholds"),
        ("publish", "interval_s", "publish_interval_s"),
    ):
        part = _section(section, top.get(section), (key,))
        if key in part:
            values[name] = part[key]
    if "alerts" in top:
        values["alerts"] = _alert_rules(top["alerts"], metric_fields)
    return _build("", FileConfig, values)


def _alert_rules(raw: object, metric_fields: Collection[str]) -> tuple[AlertRule, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"alerts: expected a list of rules, got {_show(raw)}")
    rules: list[AlertRule] = []
    for index, item in enumerate(raw):
        path = f"alerts[{index}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{path}: expected a mapping (one rule), got {_show(item)}")
        values = _section(path, item, _RULE_KEYS)
        for key in _REQUIRED_RULE_KEYS:
            if key not in values:
                raise ConfigError(f"{_join(path, key)}: required key is missing")
        rule = _build(path, AlertRule, values)
        if rule.metric not in metric_fields:
            problem = f"expected a metric field such as nps, csat or ces, got {_show(rule.metric)}"
            hint = _did_you_mean(rule.metric, metric_fields)
            if hint is not None:
                problem += f"; did you mean '{hint}'?"
            raise ConfigError(f"{path}.metric: {problem}")
        if rule.kind in ("drop_vs", "rise_vs") and rule.metric not in TESTABLE_FIELDS:
            raise ConfigError(
                f"{path}.metric: {rule.metric} has no significance test for {rule.kind}; "
                "use below/above, or a ratio, mean or count such as "
                "csat, nps, ces, bounce_rate, pageviews"
            )
        if "alpha" in values and rule.kind in ("below", "above"):
            raise ConfigError(f"{path}.alpha: only used with drop_vs or rise_vs, not {rule.kind}")
        rules.append(rule)
    return tuple(rules)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping.

    PyYAML keeps the last value silently; a rule with two `below:` lines is
    far more likely a paste error than an intent.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` overrides are intended
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key; the base class reports it
                continue
            if duplicate:
                raise ConstructorError(
                    None, None, f"duplicate key {_show(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_error(source: str, exc: yaml.YAMLError) -> ConfigError:
    """`file:line:column: invalid YAML: problem` (lines and columns from 1)."""
    where = source
    problem = str(exc)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            where = f"{source}:{mark.line + 1}:{mark.column + 1}"
        problem = exc.problem or exc.context or problem
    problem = " ".join(problem.split())
    return ConfigError(f"{where}: invalid YAML: {problem}")


def load_yaml_config(
    text_or_path: str | os.PathLike[str],
    *,
    metric_fields: Collection[str] = METRIC_FIELDS,
) -> FileConfig:
    """Read and check the YAML config: a `str` is the YAML text, a path is a file.

    An empty document gives the defaults. Alert rules may watch only the
    fields in `metric_fields` (default: the engine's `METRIC_FIELDS`, the
    fields of SPEC section 2). Raises `ConfigError` naming the key path, or the
    file, line and column of a YAML syntax error.
    """
    if isinstance(text_or_path, str):
        source, text = "<string>", text_or_path
    else:
        path = Path(text_or_path)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{source}: expected UTF-8 text, got byte 0x{exc.object[exc.start]:02x} "
                f"at offset {exc.start}"
            ) from None
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise _yaml_error(source, exc) from None
    return _file_config(source, data, metric_fields)


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    metric_fields: Collection[str] = METRIC_FIELDS,
) -> Settings:
    """Build the settings from `env` (default `os.environ`) and the file it names.

    A variable set to the empty string counts as unset. The environment is
    checked first, then the YAML file named by `CXSTREAM_CONFIG` (none: the
    file defaults). Raises `ConfigError` on the first problem found.
    """
    source = os.environ if env is None else env

    def get(name: str) -> str | None:
        value = source.get(name)
        if value is None or not value.strip():
            return None
        # Passwords are taken verbatim; anything else loses stray whitespace.
        return value if name in _SECRET_ENV_NAMES else value.strip()

    kafka_values = {f: v for f, name in _KAFKA_ENV_NAMES.items() if (v := get(name)) is not None}
    env_values: dict[str, object] = {
        f: v for f, name in _ENV_NAMES.items() if (v := get(name)) is not None
    }
    env_values["kafka"] = _build("", KafkaSecurity, kafka_values)
    settings = _build("", Settings, env_values)
    if settings.config_path is None:
        return settings
    if not settings.config_path.is_file():
        raise ConfigError(
            f"{_ENV_NAMES['config_path']}: expected an existing YAML file, "
            f"got {_show(settings.config_path)}"
        )
    file_config = load_yaml_config(settings.config_path, metric_fields=metric_fields)
    from_file = {f.name: getattr(file_config, f.name) for f in fields(FileConfig)}
    return _build("", Settings, {**env_values, **from_file})
