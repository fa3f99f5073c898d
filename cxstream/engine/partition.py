"""Stage 1: what one partition of users contributes to the per-scope buckets.

Everything keyed by user or session lives here: duplicate detection, sessions,
each user's latest activity per scope (for distinct users), signups waiting for a
first feature use. Because producers key by `user_id`, all of a user's events reach
the same partition, so this state is partition-local. The output is the partition's
`BucketStore` of partial aggregates; stage 2 sums the partitions.

The engine never reads the clock: `advance(now_ms)` moves stream time, releases
events whose `ts` has been reached and expires state.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cxstream.engine.aggregates import Bucket, C
from cxstream.engine.dimensions import DimensionCap, capped_values
from cxstream.engine.store import ALL_TIME, BucketStore, live_cut
from cxstream.engine.windows import DAY_MS, HOUR_MS, LEVELS, MINUTE_MS
from cxstream.events import Event

__all__ = ["DEFAULT_CSAT_THRESHOLDS", "Outcome", "PartitionState", "scopes_of"]

DEFAULT_CSAT_THRESHOLDS: Final = {5: 4, 7: 6, 10: 8}
SESSION_GAP_MS: Final = DAY_MS
ACTIVATION_MS: Final = 7 * DAY_MS
# Per-user state older than this can no longer reach a window (30 d + a margin).
STATE_HORIZON_MS: Final = 31 * DAY_MS
SWEEP_EVERY_MS: Final = HOUR_MS

Scopes = tuple[str, str, str, str]


def scopes_of(product: str, channel: str, touchpoint: str) -> Scopes:
    return ("all", "product=" + product, "channel=" + channel, "touchpoint=" + touchpoint)


@dataclass(slots=True)
class _Session:
    first_ts: int
    scopes: Scopes
    last_ts: int
    last_page: str
    count: int


@dataclass(slots=True)
class _Signup:
    ts: int
    scopes: Scopes
    first_use: int | None = None


@dataclass(slots=True)
class _User:
    latest: dict[str, int] = field(default_factory=dict)  # scope -> latest activity ts
    feature_latest: dict[tuple[str, str], int] = field(default_factory=dict)
    feature_times: list[int] = field(default_factory=list)  # sorted, distinct
    signups: list[_Signup] = field(default_factory=list)


class Outcome:
    """What happened to an event handed to `PartitionState.offer`."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


class PartitionState:
    """Stage-1 state of one partition; see the module docstring.

    `dedupe_horizon_ms` None remembers identities forever (replay: the whole file).
    """

    def __init__(
        self,
        *,
        cap: DimensionCap,
        csat_thresholds: Mapping[int, int] = DEFAULT_CSAT_THRESHOLDS,
        dedupe_horizon_ms: int | None = None,
        store: BucketStore | None = None,
    ) -> None:
        self.cap = cap
        self.csat_thresholds = dict(csat_thresholds)
        self.dedupe_horizon_ms = dedupe_horizon_ms
        self.store = store if store is not None else BucketStore()
        self.now_ms: int | None = None
        self.seen: dict[tuple[str, str], int] = {}  # identity -> processing time seen
        self.users: dict[str, _User] = {}
        self.sessions: dict[tuple[str, str], list[_Session]] = {}
        self.pending: list[tuple[int, int, Event]] = []  # future events, a heap by ts
        self._seq = 0
        self._cuts: tuple[int, int] = (0, 0)
        self._last_sweep = 0
        self._dispatch = self._build_dispatch()

    def _build_dispatch(self) -> dict[str, Callable[[Event, Scopes, _User], None]]:
        return {
            "page_view": self._page_view,
            "page_leave": self._page_leave,
            "impression": self._counter(C.IMPRESSIONS),
            "click": self._counter(C.CLICKS),
            "feature_used": self._feature_used,
            "signup": self._signup,
            "subscription_started": self._subscription(C.SUBS_STARTED),
            "subscription_cancelled": self._subscription(C.SUBS_CANCELLED),
            "support_ticket_opened": self._counter(C.TICKETS_OPENED),
            "support_ticket_resolved": self._ticket_resolved,
            "task_completed": self._task_completed,
            "task_failed": self._counter(C.TASKS_FAILED),
            "nps": self._nps,
            "csat": self._csat,
            "ces": self._ces,
        }

    def __getstate__(self) -> dict[str, Any]:
        # The dispatch table holds closures, which do not pickle; it is rebuilt.
        state = dict(self.__dict__)
        del state["_dispatch"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._dispatch = self._build_dispatch()

    # -- time ---------------------------------------------------------------------

    def advance(self, now_ms: int) -> None:
        """Move stream time forward (never back), applying events now due."""
        if self.now_ms is not None and now_ms <= self.now_ms:
            return
        self.now_ms = now_ms
        self._cuts = (
            live_cut(LEVELS[0][0], LEVELS[0][1], now_ms),
            live_cut(LEVELS[1][0], LEVELS[1][1], now_ms),
        )
        while self.pending and self.pending[0][0] <= now_ms:
            self._apply(heapq.heappop(self.pending)[2])
        if now_ms - self._last_sweep >= SWEEP_EVERY_MS:
            self._last_sweep = now_ms
            self.sweep(now_ms)

    def sweep(self, now_ms: int) -> None:
        """Forget state that no window can see any more, so memory follows the horizon."""
        self.store.expire(now_ms)
        if self.dedupe_horizon_ms is not None:
            oldest = now_ms - self.dedupe_horizon_ms
            for key, seen_at in list(self.seen.items()):
                if seen_at >= oldest:
                    break  # insertion order is processing-time order
                del self.seen[key]
        horizon = now_ms - STATE_HORIZON_MS
        for skey in [k for k, ss in self.sessions.items() if ss[-1].last_ts < horizon]:
            del self.sessions[skey]
        hour_cut = self._cuts[1]
        for uid in list(self.users):
            user = self.users[uid]
            user.latest = {s: t for s, t in user.latest.items() if t >= hour_cut}
            user.feature_latest = {k: t for k, t in user.feature_latest.items() if t >= hour_cut}
            del user.feature_times[: bisect.bisect_left(user.feature_times, horizon)]
            user.signups = [s for s in user.signups if s.ts >= horizon]
            if not (user.latest or user.feature_latest or user.feature_times or user.signups):
                del self.users[uid]

    # -- events -------------------------------------------------------------------

    def offer(self, event: Event, processed_at_ms: int | None = None) -> str:
        """Deduplicate and apply (or hold, while its `ts` is in the future) one event.

        Returns an Outcome. `processed_at_ms` is the processing time used for the
        dedupe horizon (defaults to stream time).
        """
        key = (event.user_id, event.event_id)
        if key in self.seen:
            return Outcome.DUPLICATE
        self.seen[key] = processed_at_ms if processed_at_ms is not None else (self.now_ms or 0)
        # Values take their cap slot when the event is accepted (first come, first
        # served), also when its `ts` is still ahead and it applies later.
        for dimension, value in capped_values(event):
            self.cap.admit(dimension, value)
        if self.now_ms is None or event.ts_ms > self.now_ms:
            self._seq += 1
            heapq.heappush(self.pending, (event.ts_ms, self._seq, event))
        else:
            self._apply(event)
        return Outcome.ACCEPTED

    def _apply(self, event: Event) -> None:
        cap = self.cap
        scopes = scopes_of(
            cap.admit("product", event.product),
            cap.admit("channel", event.channel),
            cap.admit("touchpoint", event.touchpoint),
        )
        user = self.users.get(event.user_id)
        if user is None:
            user = self.users[event.user_id] = _User()
        ts = event.ts_ms
        targets = self._targets(scopes, ts)
        for bucket in targets:
            bucket.values[C.EVENTS] += 1
        self._touch_active(user, scopes, ts)
        self._dispatch[event.type](event, scopes, user)

    def _targets(self, scopes: Iterable[str], ts: int) -> list[Bucket]:
        """The live buckets (every scope, both levels) that an event at `ts` counts in."""
        out: list[Bucket] = []
        get = self.store.get
        minute_cut, hour_cut = self._cuts
        minute = ts - ts % MINUTE_MS
        hour = ts - ts % HOUR_MS
        if minute >= minute_cut:
            out.extend(get((s, MINUTE_MS, minute)) for s in scopes)
        if hour >= hour_cut:
            out.extend(get((s, HOUR_MS, hour)) for s in scopes)
        return out

    def _add(self, scopes: Iterable[str], ts: int, index: int, delta: int | float) -> None:
        for bucket in self._targets(scopes, ts):
            bucket.values[index] += delta

    def _touch_active(self, user: _User, scopes: Scopes, ts: int) -> None:
        latest = user.latest
        for scope in scopes:
            old = latest.get(scope)
            if old is not None and old >= ts:
                continue
            latest[scope] = ts
            if old is not None:
                self._add((scope,), old, C.ACTIVE, -1)
            self._add((scope,), ts, C.ACTIVE, 1)

    # -- per type -----------------------------------------------------------------

    def _counter(self, index: int) -> Callable[[Event, Scopes, _User], None]:
        def handle(event: Event, scopes: Scopes, user: _User) -> None:
            self._add(scopes, event.ts_ms, index, 1)

        return handle

    def _subscription(self, index: int) -> Callable[[Event, Scopes, _User], None]:
        def handle(event: Event, scopes: Scopes, user: _User) -> None:
            self._add(scopes, event.ts_ms, index, 1)
            # All-time state: active subscribers count events of any age.
            for scope in scopes:
                self.store.get((scope, ALL_TIME, 0)).values[index] += 1

        return handle

    def _moments(self, scopes: Scopes, ts: int, pairs: Iterable[tuple[int, int, int, Any]]) -> None:
        """Add count, sum and sum of squares of each present value (n, sum, sumsq, value)."""
        targets = self._targets(scopes, ts)
        for n_i, sum_i, sq_i, value in pairs:
            if value is None:
                continue
            square = value * value
            for bucket in targets:
                v = bucket.values
                v[n_i] += 1
                v[sum_i] += value
                v[sq_i] += square

    def _page_leave(self, event: Event, scopes: Scopes, user: _User) -> None:
        props = event.props
        self._moments(
            scopes,
            event.ts_ms,
            (
                (C.LEAVE_N, C.LEAVE_SUM_MS, C.LEAVE_SUMSQ_MS, props["duration_ms"]),
                (C.SCROLL_N, C.SCROLL_SUM, C.SCROLL_SUMSQ, props.get("scroll_pct")),
            ),
        )

    def _ticket_resolved(self, event: Event, scopes: Scopes, user: _User) -> None:
        props = event.props
        ts = event.ts_ms
        self._add(scopes, ts, C.TICKETS_RESOLVED, 1)
        contacts = props.get("contacts")
        self._moments(
            scopes,
            ts,
            (
                (C.FRT_N, C.FRT_SUM_MS, C.FRT_SUMSQ_MS, props.get("first_response_ms")),
                (C.RES_N, C.RES_SUM_MS, C.RES_SUMSQ_MS, props.get("resolution_ms")),
                (C.CONTACTS_N, C.CONTACTS_SUM, C.CONTACTS_SUMSQ, contacts),
            ),
        )
        if contacts == 1:
            self._add(scopes, ts, C.CONTACTS_ONE, 1)

    def _task_completed(self, event: Event, scopes: Scopes, user: _User) -> None:
        self._add(scopes, event.ts_ms, C.TASKS_COMPLETED, 1)
        steps = event.props.get("steps")
        self._moments(scopes, event.ts_ms, ((C.STEPS_N, C.STEPS_SUM, C.STEPS_SUMSQ, steps),))

    def _nps(self, event: Event, scopes: Scopes, user: _User) -> None:
        score = event.props["score"]
        kind = C.NPS_PROMOTERS if score >= 9 else C.NPS_PASSIVES if score >= 7 else C.NPS_DETRACTORS
        for bucket in self._targets(scopes, event.ts_ms):
            bucket.values[C.NPS_N] += 1
            bucket.values[kind] += 1

    def _csat(self, event: Event, scopes: Scopes, user: _User) -> None:
        props = event.props
        satisfied = props["score"] >= self.csat_thresholds[props["scale"]]
        for bucket in self._targets(scopes, event.ts_ms):
            bucket.values[C.CSAT_N] += 1
            if satisfied:
                bucket.values[C.CSAT_SATISFIED] += 1

    def _ces(self, event: Event, scopes: Scopes, user: _User) -> None:
        props = event.props
        # Mapped onto 1..7 and doubled: 2 + 12 (score - 1) / (scale - 1) is an exact int
        # for scales 5 and 7, so sums stay exact.
        doubled = 2 + 12 * (props["score"] - 1) // (props["scale"] - 1)
        for bucket in self._targets(scopes, event.ts_ms):
            v = bucket.values
            v[C.CES_N] += 1
            v[C.CES_SUM2] += doubled
            v[C.CES_SUMSQ4] += doubled * doubled
            if doubled <= 6:
                v[C.CES_EASY] += 1

    # -- features and activation --------------------------------------------------

    def _feature_used(self, event: Event, scopes: Scopes, user: _User) -> None:
        ts = event.ts_ms
        feature = self.cap.admit("feature", event.props["feature"])
        for scope in scopes:
            key = (feature, scope)
            old = user.feature_latest.get(key)
            if old is not None and old >= ts:
                continue
            user.feature_latest[key] = ts
            if old is not None:
                self._feature_count(scope, old, feature, -1)
            self._feature_count(scope, ts, feature, 1)
        times = user.feature_times
        at = bisect.bisect_left(times, ts)
        if at == len(times) or times[at] != ts:
            times.insert(at, ts)
        for signup in user.signups:
            if signup.ts <= ts <= signup.ts + ACTIVATION_MS and (
                signup.first_use is None or ts < signup.first_use
            ):
                self._activation(signup, -1)
                signup.first_use = ts
                self._activation(signup, 1)

    def _feature_count(self, scope: str, ts: int, feature: str, delta: int) -> None:
        for bucket in self._targets((scope,), ts):
            counts = bucket.features
            total = counts.get(feature, 0) + delta
            if total:
                counts[feature] = total
            else:
                del counts[feature]

    def _signup(self, event: Event, scopes: Scopes, user: _User) -> None:
        ts = event.ts_ms
        self._add(scopes, ts, C.SIGNUPS, 1)
        signup = _Signup(ts, scopes)
        times = user.feature_times
        at = bisect.bisect_left(times, ts)
        if at < len(times) and times[at] <= ts + ACTIVATION_MS:
            signup.first_use = times[at]
            self._activation(signup, 1)
        user.signups.append(signup)

    def _activation(self, signup: _Signup, sign: int) -> None:
        if signup.first_use is None:
            return
        for bucket in self._targets(signup.scopes, signup.ts):
            bucket.values[C.ACTIVATED] += sign
            bucket.values[C.TTV_SUM_MS] += sign * (signup.first_use - signup.ts)

    # -- sessions -----------------------------------------------------------------

    def _page_view(self, event: Event, scopes: Scopes, user: _User) -> None:
        ts = event.ts_ms
        page = self.cap.admit("page", event.props["page"])
        for bucket in self._targets(scopes, ts):
            bucket.values[C.PAGEVIEWS] += 1
            pages = bucket.pages
            pages[page] = pages.get(page, 0) + 1
        assert event.session_id is not None
        key = (event.user_id, event.session_id)
        sessions = self.sessions.get(key)
        if sessions is None:
            sessions = self.sessions[key] = []
        self._join_session(sessions, ts, page, scopes)

    def _join_session(self, sessions: list[_Session], ts: int, page: str, scopes: Scopes) -> None:
        """Add a page view to the (user, session id)'s sessions, merging where it bridges.

        Sessions are kept sorted and more than 24 h apart; a view can extend one,
        join two into one, or start a new one. Changed sessions are retracted from
        the buckets and added back with their new shape.
        """
        # Index of the first session starting after ts.
        after = 0
        while after < len(sessions) and sessions[after].first_ts <= ts:
            after += 1
        prev = sessions[after - 1] if after > 0 else None
        nxt = sessions[after] if after < len(sessions) else None
        if prev is not None and ts <= prev.last_ts:
            self._session_delta(prev, -1)
            prev.count += 1
            if ts == prev.last_ts:
                prev.last_page = page
            self._session_delta(prev, 1)
            return
        join_prev = prev is not None and ts - prev.last_ts <= SESSION_GAP_MS
        join_next = nxt is not None and nxt.first_ts - ts <= SESSION_GAP_MS
        if prev is not None and join_prev:
            self._session_delta(prev, -1)
            prev.count += 1
            prev.last_ts, prev.last_page = ts, page
            if nxt is not None and join_next:
                self._session_delta(nxt, -1)
                prev.count += nxt.count
                prev.last_ts, prev.last_page = nxt.last_ts, nxt.last_page
                del sessions[after]
            self._session_delta(prev, 1)
        elif nxt is not None and join_next:
            self._session_delta(nxt, -1)
            nxt.count += 1
            nxt.first_ts, nxt.scopes = ts, scopes
            self._session_delta(nxt, 1)
        else:
            session = _Session(ts, scopes, ts, page, 1)
            sessions.insert(after, session)
            self._session_delta(session, 1)

    def _session_delta(self, session: _Session, sign: int) -> None:
        exit_page = session.last_page
        bounce = sign if session.count == 1 else 0
        for bucket in self._targets(session.scopes, session.first_ts):
            v = bucket.values
            v[C.SESSIONS] += sign
            v[C.SESSION_PAGEVIEWS] += sign * session.count
            v[C.BOUNCES] += bounce
            exits = bucket.exits
            total = exits.get(exit_page, 0) + sign
            if total:
                exits[exit_page] = total
            else:
                del exits[exit_page]
