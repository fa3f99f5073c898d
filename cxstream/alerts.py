"""Alert rules over published windows: conditions, significance, firing and resolved.

`AlertEngine` is pure: it takes the windows the worker published on a tick and
the tick's `now_ms`, and returns the state changes (SPEC section 4). One
`Alert` per change, keyed `rule|window|scope`:

- a rule watches its `window` in every scope (or only in `scope`);
- `below`/`above` compare the published value strictly; `drop_vs`/`rise_vs`
  test the window against the baseline (the longer window without the
  overlap) with a one-sided test of `cxstream.engine.stats` and hold when
  p < `alpha`;
- `min_n` observations must be behind the value (the metric's denominator,
  in both windows for `drop_vs`/`rise_vs`); with fewer the condition does not
  hold, so a firing alert resolves;
- the condition must hold for `for_s` seconds, measured on the `now_ms` of the
  ticks, before the alert fires; it resolves as soon as the condition fails;
- a metric that became absent resolves the alert.

A window that is not among a tick's items keeps its state: the worker
publishes only the scopes that changed (and every scope once a minute), so a
missing item means "no news", not "absent". `restore` rebuilds the firing set
from the alerts topic itself, so a restarted worker neither fires again nor
forgets to resolve.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import orjson

from cxstream.config import AlertRule
from cxstream.engine import METRIC_FIELDS, Bucket, C
from cxstream.engine.stats import METRIC_TESTS, compare, observations
from cxstream.engine.windows import MINUTE_MS, window

__all__ = ["Alert", "AlertEngine", "State", "WindowResult", "alert_key"]

State = Literal["firing", "resolved"]

_LABELS: Final = {
    "nps": "NPS",
    "nps_n": "NPS answers",
    "nps_ci95": "NPS CI95",
    "csat": "CSAT",
    "csat_n": "CSAT answers",
    "csat_ci95_low": "CSAT CI95 low",
    "csat_ci95_high": "CSAT CI95 high",
    "ces": "CES",
    "ces_n": "CES answers",
    "ces_easy": "CES easy share",
    "ctr": "CTR",
}


class WindowResult(Protocol):
    """What the engine reads of a published window (`cxstream.sinks.Published` is one)."""

    @property
    def window(self) -> str: ...

    @property
    def scope(self) -> str: ...

    @property
    def fields(self) -> Mapping[str, int | float]: ...

    @property
    def total(self) -> Bucket: ...

    @property
    def active_subscribers(self) -> int: ...

    @property
    def window_end_ms(self) -> int: ...


def alert_key(rule: str, window_name: str, scope: str) -> str:
    """`rule|window|scope`: the Kafka key of an alert and its field in `cx:alerts:active`."""
    return f"{rule}|{window_name}|{scope}"


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Alert:
    """One state change of one rule on one window and scope: a `cx.alerts` message.

    `comparison` is True for `drop_vs`/`rise_vs` rules: their message carries
    `baseline` and `p_value`; the others carry `threshold`. A resolved alert
    has the `alert_id` of the firing it ends.
    """

    alert_id: str
    rule: str
    state: State
    severity: str
    metric: str
    window: str
    scope: str
    value: float | None
    n: int
    at: int
    message: str
    comparison: bool = False
    threshold: float | None = None
    baseline: float | None = None
    p_value: float | None = None

    @property
    def key(self) -> str:
        return alert_key(self.rule, self.window, self.scope)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of SPEC section 4."""
        out: dict[str, Any] = {
            "alert_id": self.alert_id,
            "rule": self.rule,
            "state": self.state,
            "severity": self.severity,
            "metric": self.metric,
            "window": self.window,
            "scope": self.scope,
            "value": self.value,
        }
        if self.comparison:
            out["baseline"] = self.baseline
            out["p_value"] = self.p_value
        else:
            out["threshold"] = self.threshold
        out.update(n=self.n, at=self.at, message=self.message)
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any]) -> Alert:
        """Read a `cx.alerts` message back; ValueError if it is not one."""
        try:
            obj = orjson.loads(data) if isinstance(data, bytes | str) else data
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(obj, Mapping):
            raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        try:
            state = obj["state"]
            if state not in ("firing", "resolved"):
                raise ValueError(f"state: expected firing or resolved, got {state!r}")
            texts = [obj[k] for k in ("alert_id", "rule", "severity", "metric", "window", "scope")]
            if not all(isinstance(t, str) for t in texts):
                raise ValueError(
                    "alert_id, rule, severity, metric, window, scope: expected strings"
                )
            return cls(
                alert_id=obj["alert_id"],
                rule=obj["rule"],
                state=state,
                severity=obj["severity"],
                metric=obj["metric"],
                window=obj["window"],
                scope=obj["scope"],
                value=_number(obj.get("value")),
                n=int(obj.get("n") or 0),
                at=int(obj.get("at") or 0),
                message=str(obj.get("message", "")),
                comparison="p_value" in obj,
                threshold=_number(obj.get("threshold")),
                baseline=_number(obj.get("baseline")),
                p_value=_number(obj.get("p_value")),
            )
        except KeyError as exc:
            raise ValueError(f"missing field {exc.args[0]}") from None
        except (TypeError, OverflowError) as exc:
            raise ValueError(str(exc)) from None


def _number(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    return value


def _show(x: float | None) -> str:
    """A number for a human: 12.5, -83.33, 0.7234, 20, 12346."""
    if x is None:
        return "absent"
    if isinstance(x, int) or (math.isfinite(x) and x.is_integer() and abs(x) < 1e15):
        return str(int(x))
    return f"{x:.0f}" if abs(x) >= 1e4 else f"{x:.4g}"


@dataclass(frozen=True, slots=True)
class _Check:
    """A rule evaluated on one window: whether its condition holds, and the numbers."""

    holds: bool
    value: float | None
    n: int
    baseline: float | None = None
    p_value: float | None = None
    enough: bool = True  # min_n met (in both windows for a comparison)


@dataclass(slots=True)
class _KeyState:
    scope: str
    pending_since_ms: int | None = None  # the condition holds since then, not yet fired
    firing: Alert | None = None


class AlertEngine:
    """Evaluates alert rules tick by tick and remembers which alerts are firing.

    >>> engine = AlertEngine(settings.alerts)          # doctest: +SKIP
    >>> for alert in engine.evaluate(items, now_ms):   # doctest: +SKIP
    ...     send(alert.key, alert.to_json())

    Rules built in code are checked as the config loader checks them: an
    unknown metric, or `drop_vs`/`rise_vs` on a field without a test, is a
    ValueError. `new_id` makes alert ids (tests pass a counter).

    With several workers each evaluates the scopes it owns. The engine
    remembers when it last saw each scope (`owned_scopes`); a scope it has
    not seen before (`unseen_scopes`: at start, or moved here by a rebalance)
    should be restored from the topic before it is evaluated, and the state of
    a scope not seen for a while (moved away) is dropped by `forget_idle`.
    """

    __slots__ = ("_seen", "_states", "new_id", "rules")

    def __init__(self, rules: Iterable[AlertRule], *, new_id: Callable[[], str] = _new_id) -> None:
        self.rules = tuple(rules)
        self.new_id = new_id
        self._states: dict[str, _KeyState] = {}
        self._seen: dict[str, int] = {}  # scope -> now_ms of the last tick it was in
        for rule in self.rules:
            if rule.metric not in METRIC_FIELDS:
                raise ValueError(f"alert rule {rule.name}: unknown metric {rule.metric!r}")
            if rule.kind in ("drop_vs", "rise_vs") and rule.metric not in METRIC_TESTS:
                raise ValueError(
                    f"alert rule {rule.name}: {rule.metric} has no significance test for "
                    f"{rule.kind}"
                )

    # -- state -----------------------------------------------------------------

    def active(self) -> dict[str, Alert]:
        """The firing alerts by key, each as the message that fired it."""
        return {k: s.firing for k, s in sorted(self._states.items()) if s.firing is not None}

    def owned_scopes(self) -> set[str]:
        """The scopes evaluated here recently (not dropped by `forget_idle`)."""
        return set(self._seen)

    def unseen_scopes(self, items: Iterable[WindowResult]) -> set[str]:
        """The scopes of `items` this engine has not evaluated yet (or has forgotten)."""
        return {item.scope for item in items} - self._seen.keys()

    def forget_idle(self, now_ms: int, idle_ms: int) -> set[str]:
        """Drop the state of scopes not seen for more than `idle_ms`; return them.

        No message is sent: the scope is someone else's now (or has no events
        any more), and whoever evaluates it next restores it from the topic.
        """
        idle = {scope for scope, seen in self._seen.items() if now_ms - seen > idle_ms}
        for scope in idle:
            del self._seen[scope]
        for key in [k for k, state in self._states.items() if state.scope in idle]:
            del self._states[key]
        return idle

    def restore(
        self,
        messages: Iterable[bytes | str | Mapping[str, Any]],
        scopes: Collection[str] | None = None,
    ) -> int:
        """Rebuild the firing set from `cx.alerts` messages; returns how many are firing.

        The last message of each key wins (by `at`, then by order): a firing
        one is firing again, without a new message, and resolves later with
        its own `alert_id`. Only keys of `scopes` are taken (None: all).
        Messages that are not alerts are skipped. Firing alerts whose rule is
        gone from the configuration (or now watches another window or scope)
        are resolved by the next `evaluate`.
        """
        last: dict[str, Alert] = {}
        for message in messages:
            try:
                alert = Alert.from_json(message)
            except ValueError:
                continue
            previous = last.get(alert.key)
            if previous is None or alert.at >= previous.at:
                last[alert.key] = alert
        for key, alert in last.items():
            if scopes is not None and alert.scope not in scopes:
                continue
            if alert.state == "firing":
                self._states[key] = _KeyState(alert.scope, firing=alert)
            else:
                self._states.pop(key, None)
        return sum(1 for s in self._states.values() if s.firing is not None)

    # -- evaluation --------------------------------------------------------------

    def evaluate(self, items: Iterable[WindowResult], now_ms: int) -> list[Alert]:
        """Apply every rule to the windows of one tick; return the state changes."""
        index = {(item.window, item.scope): item for item in items}
        for _, scope in index:
            self._seen[scope] = now_ms
        changes = self._resolve_orphans(now_ms)
        for rule in self.rules:
            against = rule.drop_vs or rule.rise_vs
            for (window_name, scope), item in sorted(index.items()):
                if window_name != rule.window:
                    continue
                if rule.scope is not None and scope != rule.scope:
                    continue
                if against is None:
                    check = self._threshold(rule, item)
                else:
                    longer = index.get((against, scope))
                    if longer is None:
                        continue  # no baseline this tick: no news
                    check = self._significance(rule, item, longer, against)
                change = self._step(rule, scope, check, now_ms)
                if change is not None:
                    changes.append(change)
        return changes

    def _threshold(self, rule: AlertRule, item: WindowResult) -> _Check:
        value = item.fields.get(rule.metric)
        n = observations(rule.metric, item.total, item.active_subscribers)
        enough = n >= rule.min_n
        if value is None or not enough:
            return _Check(False, value, n, enough=enough)
        if rule.below is not None:
            return _Check(value < rule.below, value, n)
        assert rule.above is not None
        return _Check(value > rule.above, value, n)

    def _significance(
        self, rule: AlertRule, item: WindowResult, longer: WindowResult, against: str
    ) -> _Check:
        test = METRIC_TESTS[rule.metric]
        now = item.window_end_ms
        start = window(rule.window).start_ms(now)
        baseline_start = window(against).start_ms(now)
        current = test.sample(item.total, item.active_subscribers, (now - start) / MINUTE_MS)
        # The baseline: the longer window without the rule's window (which lies inside it).
        rest = longer.total.copy()
        rest.merge(item.total, -1)
        v = item.total.values
        subscribers_then = item.active_subscribers - v[C.SUBS_STARTED] + v[C.SUBS_CANCELLED]
        baseline = test.sample(rest, subscribers_then, (start - baseline_start) / MINUTE_MS)
        value = item.fields.get(rule.metric)
        minimum = max(rule.min_n, 1)
        enough = current.n >= minimum and baseline.n >= minimum
        result = compare(
            rule.metric, current, baseline, "drop" if rule.drop_vs is not None else "rise"
        )
        if result is None:
            return _Check(False, value, current.n, None, None, enough)
        holds = value is not None and enough and result.p_value < rule.alpha
        return _Check(holds, value, current.n, result.baseline, result.p_value, enough)

    def _step(self, rule: AlertRule, scope: str, check: _Check, now_ms: int) -> Alert | None:
        key = alert_key(rule.name, rule.window, scope)
        state = self._states.get(key)
        if check.holds:
            if state is None:
                state = self._states[key] = _KeyState(scope)
            if state.firing is not None:
                return None
            if state.pending_since_ms is None:
                state.pending_since_ms = now_ms
            if now_ms - state.pending_since_ms < rule.for_s * 1000:
                return None
            state.firing = self._alert(rule, scope, "firing", check, now_ms, self.new_id())
            state.pending_since_ms = None
            return state.firing
        if state is None:
            return None
        del self._states[key]
        if state.firing is None:
            return None  # was pending: the for_s clock starts over
        return self._alert(rule, scope, "resolved", check, now_ms, state.firing.alert_id)

    def _resolve_orphans(self, now_ms: int) -> list[Alert]:
        """Resolve restored alerts that no configured rule produces any more."""
        watched = {rule.name: rule for rule in self.rules}
        out: list[Alert] = []
        for key, state in list(self._states.items()):
            old = state.firing
            if old is None:
                continue
            rule = watched.get(old.rule)
            if (
                rule is not None
                and rule.window == old.window
                and rule.scope in (None, old.scope)
                and rule.metric == old.metric
                and (rule.kind in ("drop_vs", "rise_vs")) == old.comparison
            ):
                continue
            del self._states[key]
            out.append(
                Alert(
                    alert_id=old.alert_id,
                    rule=old.rule,
                    state="resolved",
                    severity=old.severity,
                    metric=old.metric,
                    window=old.window,
                    scope=old.scope,
                    value=None,
                    n=0,
                    at=now_ms,
                    message=f"resolved: rule {old.rule} no longer watches {old.metric} over "
                    f"{old.window} for {old.scope}",
                    comparison=old.comparison,
                    threshold=old.threshold,
                )
            )
        return out

    def _alert(
        self, rule: AlertRule, scope: str, state: State, check: _Check, now_ms: int, alert_id: str
    ) -> Alert:
        comparison = rule.kind in ("drop_vs", "rise_vs")
        threshold = rule.below if rule.below is not None else rule.above
        return Alert(
            alert_id=alert_id,
            rule=rule.name,
            state=state,
            severity=rule.severity,
            metric=rule.metric,
            window=rule.window,
            scope=scope,
            value=check.value,
            n=check.n,
            at=now_ms,
            message=_message(rule, scope, state, check),
            comparison=comparison,
            threshold=None if comparison else threshold,
            baseline=check.baseline if comparison else None,
            p_value=check.p_value if comparison else None,
        )


def _message(rule: AlertRule, scope: str, state: State, check: _Check) -> str:
    """`NPS 12.5 (n=57) below 20 over 1h for product=web`, and its resolved twin."""
    label = _LABELS.get(rule.metric, rule.metric.replace("_", " "))
    where = f"over {rule.window} for {scope}"
    seen = f"{label} {_show(check.value)} (n={check.n})"
    if rule.kind in ("below", "above"):
        threshold = rule.below if rule.below is not None else rule.above
        condition = f"{rule.kind} {_show(threshold)}"
    else:
        direction = "below" if rule.kind == "drop_vs" else "above"
        against = rule.drop_vs or rule.rise_vs
        condition = f"significantly {direction} the {against} baseline {_show(check.baseline)}"
        if check.p_value is not None:
            condition += f" (p={check.p_value:.2g})"
    if state == "firing":
        return f"{seen} {condition} {where}"
    if check.value is None:
        return f"resolved: {seen} {where}"
    if not check.enough:
        return f"resolved: {seen}, fewer than min_n {rule.min_n} observations, {where}"
    if rule.kind in ("drop_vs", "rise_vs") and check.p_value is None:
        return f"resolved: {seen}, too few observations for a test, {where}"
    return f"resolved: {seen} no longer {condition} {where}"
