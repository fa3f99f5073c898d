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
import marshal
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cxstream.engine.aggregates import Bucket, C
from cxstream.engine.dimensions import DimensionCap
from cxstream.engine.store import (
    ALL_TIME,
    BucketKey,
    BucketStore,
    live_cut,
    next_pack_at,
    pack_cutoffs,
)
from cxstream.engine.windows import DAY_MS, HOUR_MS, LEVELS, MINUTE_MS
from cxstream.events import Event

__all__ = ["DEFAULT_CSAT_THRESHOLDS", "Outcome", "PartitionState", "scopes_of", "user_key"]

DEFAULT_CSAT_THRESHOLDS: Final = {5: 4, 7: 6, 10: 8}
SESSION_GAP_MS: Final = DAY_MS
ACTIVATION_MS: Final = 7 * DAY_MS
# Per-user state older than this can no longer reach a window (30 d + a margin).
STATE_HORIZON_MS: Final = 31 * DAY_MS
SWEEP_EVERY_MS: Final = HOUR_MS
# Users and sessions are swept less often: state a little past the horizon is
# invisible (its buckets have expired), and a sweep visits every user.
SWEEP_STATE_EVERY_MS: Final = DAY_MS
_NEVER: Final = -(2**63)

Scopes = tuple[str, str, str, str]
# A handler of one event type, called with the state (a plain function, not a bound
# method: a table of bound methods would make every state a reference cycle, which
# only the cyclic collector frees - see cxstream/heap.py).
Handler = Callable[["PartitionState", Event, Scopes, "_User", list[Bucket]], None]
_COMBO_CACHE_MAX: Final = 4096
_TARGETS_CACHE_MAX: Final = 4096
_NOT_PICKLED: Final = (
    "_combo_cap", "_combos", "_targets_cache", "_cache_version", "_strings",
    "_pack_at", "_cuts_until",
)  # fmt: skip


def user_key(user_id: str, name: str) -> str:
    """(user_id, event or session id) as one string: less memory than a tuple of two.

    The length of `user_id` leads, so different pairs never give the same string.
    """
    return f"{len(user_id)}:{user_id}{name}"


def scopes_of(product: str, channel: str, touchpoint: str) -> Scopes:
    return ("all", "product=" + product, "channel=" + channel, "touchpoint=" + touchpoint)


@dataclass(slots=True)
class _Targets:
    """A cached answer of `PartitionState._targets`."""

    buckets: list[Bucket]
    keys: tuple[BucketKey, ...]
    marked: int  # the store's `cleared` when the keys were last marked changed


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
    """Per-user state; the containers a user may never need stay None until needed."""

    # The user's latest activity per scope: while all of it came with one combination
    # of scopes (the rule), `combo` and `at` say it without a dict; `latest` (scope ->
    # ts) takes over from the first event with other scopes.
    latest: dict[str, int] | None = None
    feature_latest: dict[tuple[str, str], int] | None = None
    feature_times: list[int] | None = None  # sorted, distinct
    signups: list[_Signup] | None = None
    last: int = _NEVER  # the latest `ts` of any of the user's events
    uid: str = ""  # the user id, one string shared by the user's state
    combo: Scopes | None = None
    at: int = _NEVER


class Outcome:
    """What happened to an event handed to `PartitionState.offer`."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


class PartitionState:
    """Stage-1 state of one partition; see the module docstring.

    `dedupe_horizon_ms` None remembers identities forever (replay: the whole file).
    `pack_buckets` packs old buckets (see `BucketStore.pack_old`): it pays where a
    process holds many partitions' buckets, and costs time where users come back.
    """

    def __init__(
        self,
        *,
        cap: DimensionCap,
        csat_thresholds: Mapping[int, int] = DEFAULT_CSAT_THRESHOLDS,
        dedupe_horizon_ms: int | None = None,
        store: BucketStore | None = None,
        pack_buckets: bool = True,
    ) -> None:
        self.cap = cap
        self.csat_thresholds = dict(csat_thresholds)
        self.dedupe_horizon_ms = dedupe_horizon_ms
        self.pack_buckets = pack_buckets
        self.store = store if store is not None else BucketStore()
        self.now_ms: int | None = None
        self.seen: dict[str, int] = {}  # user_key(user_id, event_id) -> processing time seen
        self.users: dict[str, _User] = {}
        # One session per user_key(user_id, session_id) is the rule: it is stored
        # alone, a list only holds the rare several (more than 24 h apart).
        self.sessions: dict[str, _Session | list[_Session]] = {}
        self.pending: list[tuple[int, int, Event]] = []  # future events, a heap by ts
        self._seq = 0
        self._cuts: tuple[int, int] = (0, 0)
        self._last_sweep = 0
        self._last_state_sweep = 0
        self._init_caches()

    def _init_caches(self) -> None:
        self._combo_cap: DimensionCap | None = None
        self._combos: dict[tuple[str, str, str], Scopes] = {}
        self._strings: dict[str, str] = {}
        self._targets_cache: dict[tuple[Scopes, int], _Targets] = {}
        self._cache_version = -1
        self._pack_at = next_pack_at(0) if self.pack_buckets else sys.maxsize
        self._cuts_until = _NEVER  # stream time from which `_cuts` may have moved

    def __getstate__(self) -> dict[str, Any]:
        # The caches are rebuilt. The per-user tables (millions of small objects) are written
        # as one marshal blob each: a checkpoint is taken before every offset commit,
        # and pickling them object by object takes several times longer.
        state = dict(self.__dict__)
        for name in _NOT_PICKLED:
            state.pop(name, None)
        state["users"] = _Packed(
            marshal.dumps(
                [
                    (
                        uid,
                        u.latest,
                        u.feature_latest,
                        u.feature_times,
                        None
                        if u.signups is None
                        else [(g.ts, g.scopes, g.first_use) for g in u.signups],
                        u.last,
                        u.combo,
                        u.at,
                    )
                    for uid, u in self.users.items()
                ]
            )
        )
        state["sessions"] = _Packed(
            marshal.dumps(
                [
                    (key, [(x.first_ts, x.scopes, x.last_ts, x.last_page, x.count) for x in ss])
                    if isinstance(ss, list)
                    else (key, (ss.first_ts, ss.scopes, ss.last_ts, ss.last_page, ss.count))
                    for key, ss in self.sessions.items()
                ]
            )
        )
        state["seen"] = _Packed(marshal.dumps(self.seen))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        users, sessions, seen = state["users"], state["sessions"], state["seen"]
        if isinstance(users, _Packed):
            state["users"] = {
                uid: _User(
                    latest,
                    feature_latest,
                    times,
                    None if signups is None else [_Signup(*g) for g in signups],
                    last,
                    uid,
                    combo,
                    at,
                )
                for uid, latest, feature_latest, times, signups, last, combo, at in marshal.loads(
                    users.data
                )
            }
        if isinstance(sessions, _Packed):
            state["sessions"] = {
                key: [_Session(*x) for x in ss] if isinstance(ss, list) else _Session(*ss)
                for key, ss in marshal.loads(sessions.data)
            }
        if isinstance(seen, _Packed):
            state["seen"] = marshal.loads(seen.data)
        self.__dict__.update(state)
        # Checkpoints written before these fields existed.
        self.__dict__.setdefault("_last_state_sweep", 0)
        self.__dict__.setdefault("pack_buckets", True)
        if self.seen and isinstance(next(iter(self.seen)), tuple):
            self.seen = {user_key(*key): at for key, at in self.seen.items()}
        if self.sessions and isinstance(next(iter(self.sessions)), tuple):
            self.sessions = {user_key(*key): ss for key, ss in self.sessions.items()}
        for uid, user in self.users.items():
            if not hasattr(user, "combo"):
                user.combo, user.at = None, _NEVER
                if not user.latest:
                    user.latest = None
            if not hasattr(user, "last"):
                user.last = max((user.latest or {}).values(), default=_NEVER)
            if not getattr(user, "uid", ""):
                user.uid = uid
            for name in ("feature_latest", "feature_times", "signups"):
                if not getattr(user, name):  # empty containers of older checkpoints
                    setattr(user, name, None)
        self._init_caches()

    # -- time ---------------------------------------------------------------------

    def advance(self, now_ms: int) -> None:
        """Move stream time forward (never back), applying events now due."""
        if self.now_ms is not None and now_ms <= self.now_ms:
            return
        self.now_ms = now_ms
        if now_ms >= self._cuts_until:
            # Retentions are whole hours, so the cuts only move as a minute begins.
            self._cuts_until = now_ms - now_ms % MINUTE_MS + MINUTE_MS
            cuts = (
                live_cut(LEVELS[0][0], LEVELS[0][1], now_ms),
                live_cut(LEVELS[1][0], LEVELS[1][1], now_ms),
            )
            if cuts != self._cuts:
                self._cuts = cuts
                self._targets_cache.clear()
        while self.pending and self.pending[0][0] <= now_ms:
            self._apply_due(heapq.heappop(self.pending)[2])
        if now_ms - self._last_sweep >= SWEEP_EVERY_MS:
            self._last_sweep = now_ms
            self.sweep(now_ms)

    def sweep(self, now_ms: int) -> None:
        """Forget state that no window can see any more, so memory follows the horizon."""
        self.store.expire(now_ms)
        if self.pack_buckets:
            self._pack()
        if self.dedupe_horizon_ms is not None:
            oldest = now_ms - self.dedupe_horizon_ms
            dead = []
            for key, seen_at in self.seen.items():
                if seen_at >= oldest:
                    break  # insertion order is processing-time order
                dead.append(key)
            for key in dead:
                del self.seen[key]
        if now_ms - self._last_state_sweep < SWEEP_STATE_EVERY_MS:
            return
        self._last_state_sweep = now_ms
        # Everything of a user or session older than the horizon is in expired
        # buckets: dropping it, or keeping it a while, changes no bucket.
        horizon = now_ms - STATE_HORIZON_MS
        for skey in [k for k, ss in self.sessions.items() if _last_session(ss).last_ts < horizon]:
            del self.sessions[skey]
        for uid in [u for u, user in self.users.items() if user.last < horizon]:
            del self.users[uid]

    def _pack(self) -> None:
        """Pack buckets starting PACK_AFTER_MS (per level) before stream time.

        Events arrive around now, so older buckets only change when a user's latest
        activity moves out of one or a late event arrives (`BucketStore.get` unpacks
        them then). Called only between events, when no caller holds a bucket.
        """
        now = self.now_ms or 0
        self.store.pack_old(pack_cutoffs(now))
        self._pack_at = next_pack_at(len(self.store.buckets))

    # -- events -------------------------------------------------------------------

    def offer(self, event: Event, processed_at_ms: int | None = None) -> str:
        """Deduplicate and apply (or hold, while its `ts` is in the future) one event.

        Returns an Outcome. `processed_at_ms` is the processing time used for the
        dedupe horizon (defaults to stream time).
        """
        user = self.users.get(event.user_id)
        if user is None:
            user = self.users[event.user_id] = _User(uid=event.user_id)
        elif event.user_id is not user.uid:
            event.user_id = user.uid  # equal; one string for all of the user's state
        key = user_key(event.user_id, event.event_id)
        if key in self.seen:
            return Outcome.DUPLICATE
        self.seen[key] = processed_at_ms if processed_at_ms is not None else (self.now_ms or 0)
        # Values take their cap slot when the event is accepted (first come, first
        # served), also when its `ts` is still ahead and it applies later: the
        # dimensions (in `_scopes`), then the page or feature, as `capped_values`.
        scopes = self._scopes(event)
        etype = event.type
        if etype == "page_view":
            self.cap.admit("page", event.props["page"])
        elif etype == "feature_used":
            self.cap.admit("feature", event.props["feature"])
        if self.now_ms is None or event.ts_ms > self.now_ms:
            self._seq += 1
            heapq.heappush(self.pending, (event.ts_ms, self._seq, event))
        else:
            self._apply(event, scopes, user)
        return Outcome.ACCEPTED

    def has_seen(self, event: Event) -> bool:
        """True if an event with this identity was accepted before (and is remembered)."""
        return user_key(event.user_id, event.event_id) in self.seen

    def _scopes(self, event: Event) -> Scopes:
        """The capped scopes of an event's dimensions (cached per raw combination).

        A value once admitted stays admitted and a full dimension stays full, so the
        answer for a combination never changes for a given cap.
        """
        if self._combo_cap is not self.cap:
            self._combo_cap = self.cap
            self._combos = {}
        dims = (event.product, event.channel, event.touchpoint)
        scopes = self._combos.get(dims)
        if scopes is None:
            cap = self.cap
            scopes = scopes_of(
                cap.admit("product", event.product),
                cap.admit("channel", event.channel),
                cap.admit("touchpoint", event.touchpoint),
            )
            if len(self._combos) < _COMBO_CACHE_MAX:
                self._combos[dims] = scopes
        return scopes

    def _apply_due(self, event: Event) -> None:
        """Apply an event held until its `ts` (its user may have been swept meanwhile)."""
        user = self.users.get(event.user_id)
        if user is None:
            user = self.users[event.user_id] = _User(uid=event.user_id)
        self._apply(event, self._scopes(event), user)

    def _apply(self, event: Event, scopes: Scopes, user: _User) -> None:
        if len(self.store.buckets) > self._pack_at:
            self._pack()
        ts = event.ts_ms
        if ts > user.last:
            user.last = ts
        targets = self._targets(scopes, ts)
        self._touch_active(user, scopes, ts, targets)
        _HANDLERS[event.type](self, event, scopes, user, targets)

    def _targets(self, scopes: Scopes, ts: int) -> list[Bucket]:
        """The live buckets (every scope, both levels) that an event at `ts` counts in.

        Cached per (scopes, minute) until the store drops buckets or the cuts move;
        every use marks the buckets changed, as `BucketStore.get` does, unless they
        are still marked from an earlier use (the store has cleared nothing since).
        """
        store = self.store
        if self._cache_version != store.version:
            self._targets_cache.clear()
            self._cache_version = store.version
        minute = ts - ts % MINUTE_MS
        hit = self._targets_cache.get((scopes, minute))
        if hit is not None:
            if hit.marked != store.cleared:  # else the keys are still recorded as changed
                store.mark(hit.keys)
                hit.marked = store.cleared
            return hit.buckets
        keys: list[BucketKey] = []
        minute_cut, hour_cut = self._cuts
        if minute >= minute_cut:
            keys.extend((s, MINUTE_MS, minute) for s in scopes)
        hour = ts - ts % HOUR_MS
        if hour >= hour_cut:
            keys.extend((s, HOUR_MS, hour) for s in scopes)
        get = store.get
        buckets = [get(key) for key in keys]
        if len(self._targets_cache) >= _TARGETS_CACHE_MAX:
            self._targets_cache.clear()
        self._targets_cache[(scopes, minute)] = _Targets(buckets, tuple(keys), store.cleared)
        return buckets

    def _scope_targets(self, scope: str, ts: int) -> list[Bucket]:
        """The live buckets of one scope for `ts` (minute, then hour level)."""
        out: list[Bucket] = []
        minute_cut, hour_cut = self._cuts
        minute = ts - ts % MINUTE_MS
        if minute >= minute_cut:
            out.append(self.store.get((scope, MINUTE_MS, minute)))
        hour = ts - ts % HOUR_MS
        if hour >= hour_cut:
            out.append(self.store.get((scope, HOUR_MS, hour)))
        return out

    def _add(self, scopes: Scopes, ts: int, index: int, delta: int | float) -> None:
        for bucket in self._targets(scopes, ts):
            bucket.values[index] += delta

    def _move(self, scope: str, old: int, ts: int, apply: Callable[[Bucket, int], None]) -> None:
        """Move one count of `scope` from the buckets of `old` to those of `ts`.

        Levels where both fall in the same bucket are left alone (no change).
        """
        minute_cut, hour_cut = self._cuts
        get = self.store.get
        old_minute = old - old % MINUTE_MS
        minute = ts - ts % MINUTE_MS
        if old_minute != minute:
            if old_minute >= minute_cut:
                apply(get((scope, MINUTE_MS, old_minute)), -1)
            if minute >= minute_cut:
                apply(get((scope, MINUTE_MS, minute)), 1)
        old_hour = old - old % HOUR_MS
        hour = ts - ts % HOUR_MS
        if old_hour != hour:
            if old_hour >= hour_cut:
                apply(get((scope, HOUR_MS, old_hour)), -1)
            if hour >= hour_cut:
                apply(get((scope, HOUR_MS, hour)), 1)

    def _touch_active(self, user: _User, scopes: Scopes, ts: int, targets: list[Bucket]) -> None:
        """Count (user, scope) in the buckets of the user's latest activity in the scope.

        `targets` are the event's own buckets: the minute level of the four scopes
        (when live), then their hour level (when live).
        """
        latest = user.latest
        if latest is None:
            combo = user.combo
            if combo is None:  # the user's first activity: counted in all its buckets
                user.combo, user.at = scopes, ts
                for bucket in targets:
                    bucket.values[C.ACTIVE] += 1
                return
            if combo is scopes or combo == scopes:
                previous = user.at
                if previous < ts:
                    user.at = ts
                    self._move_active(scopes, previous, ts, targets)
                return
            # other scopes than before: from now on, one entry per scope
            latest = user.latest = dict.fromkeys(combo, user.at)
            user.combo = None
        minute_cut, hour_cut = self._cuts
        minute = ts - ts % MINUTE_MS
        hour = ts - ts % HOUR_MS
        minute_live = minute >= minute_cut
        hour_live = hour >= hour_cut
        hour_at = 4 if minute_live else 0
        get = self.store.get
        for i, scope in enumerate(scopes):
            old = latest.get(scope)
            if old is None:
                latest[scope] = ts
                if minute_live:
                    targets[i].values[C.ACTIVE] += 1
                if hour_live:
                    targets[hour_at + i].values[C.ACTIVE] += 1
                continue
            if old >= minute:  # the same minute (most often) or later: no bucket moves
                if old < ts:
                    latest[scope] = ts
                continue
            latest[scope] = ts
            old_minute = old - old % MINUTE_MS
            if old_minute >= minute_cut:
                get((scope, MINUTE_MS, old_minute)).values[C.ACTIVE] -= 1
            if minute_live:
                targets[i].values[C.ACTIVE] += 1
            old_hour = old - old % HOUR_MS
            if old_hour != hour:
                if old_hour >= hour_cut:
                    get((scope, HOUR_MS, old_hour)).values[C.ACTIVE] -= 1
                if hour_live:
                    targets[hour_at + i].values[C.ACTIVE] += 1

    def _move_active(self, scopes: Scopes, old: int, ts: int, targets: list[Bucket]) -> None:
        """Move a single-combination user's count in all four scopes from `old` to `ts`.

        The rule for a user (one combination of scopes so far): every scope moves
        alike, so the buckets of `old` come whole from the targets cache.
        """
        old_minute = old - old % MINUTE_MS
        minute = ts - ts % MINUTE_MS
        if old_minute == minute:
            return
        minute_cut, hour_cut = self._cuts
        olds = self._targets(scopes, old)  # minute level (if live), then hour (if live)
        old_minute_live = old_minute >= minute_cut
        minute_live = minute >= minute_cut
        if old_minute_live:
            for bucket in olds[:4]:
                bucket.values[C.ACTIVE] -= 1
        if minute_live:
            for bucket in targets[:4]:
                bucket.values[C.ACTIVE] += 1
        old_hour = old - old % HOUR_MS
        hour = ts - ts % HOUR_MS
        if old_hour == hour:
            return
        if old_hour >= hour_cut:
            for bucket in olds[4:] if old_minute_live else olds:
                bucket.values[C.ACTIVE] -= 1
        if hour >= hour_cut:
            for bucket in targets[4:] if minute_live else targets:
                bucket.values[C.ACTIVE] += 1

    # -- per type -----------------------------------------------------------------
    # Each handler gets the event's live buckets and counts the event in them too.

    @staticmethod
    def _moments(targets: list[Bucket], pairs: Iterable[tuple[int, int, int, Any]]) -> None:
        """Add count, sum and sum of squares of each present value (n, sum, sumsq, value)."""
        for n_i, sum_i, sq_i, value in pairs:
            if value is None:
                continue
            square = value * value
            for bucket in targets:
                v = bucket.values
                v[n_i] += 1
                v[sum_i] += value
                v[sq_i] += square

    def _page_leave(self, event: Event, scopes: Scopes, user: _User, targets: list[Bucket]) -> None:
        props = event.props
        duration = props["duration_ms"]
        square = duration * duration
        scroll = props.get("scroll_pct")
        if scroll is None:
            for bucket in targets:
                v = bucket.values
                v[C.EVENTS] += 1
                v[C.LEAVE_N] += 1
                v[C.LEAVE_SUM_MS] += duration
                v[C.LEAVE_SUMSQ_MS] += square
            return
        scroll_sq = scroll * scroll
        for bucket in targets:
            v = bucket.values
            v[C.EVENTS] += 1
            v[C.LEAVE_N] += 1
            v[C.LEAVE_SUM_MS] += duration
            v[C.LEAVE_SUMSQ_MS] += square
            v[C.SCROLL_N] += 1
            v[C.SCROLL_SUM] += scroll
            v[C.SCROLL_SUMSQ] += scroll_sq

    def _ticket_resolved(
        self, event: Event, scopes: Scopes, user: _User, targets: list[Bucket]
    ) -> None:
        props = event.props
        contacts = props.get("contacts")
        one = 1 if contacts == 1 else 0
        for bucket in targets:
            v = bucket.values
            v[C.EVENTS] += 1
            v[C.TICKETS_RESOLVED] += 1
            v[C.CONTACTS_ONE] += one
        self._moments(
            targets,
            (
                (C.FRT_N, C.FRT_SUM_MS, C.FRT_SUMSQ_MS, props.get("first_response_ms")),
                (C.RES_N, C.RES_SUM_MS, C.RES_SUMSQ_MS, props.get("resolution_ms")),
                (C.CONTACTS_N, C.CONTACTS_SUM, C.CONTACTS_SUMSQ, contacts),
            ),
        )

    def _task_completed(
        self, event: Event, scopes: Scopes, user: _User, targets: list[Bucket]
    ) -> None:
        for bucket in targets:
            v = bucket.values
            v[C.EVENTS] += 1
            v[C.TASKS_COMPLETED] += 1
        steps = event.props.get("steps")
        self._moments(targets, ((C.STEPS_N, C.STEPS_SUM, C.STEPS_SUMSQ, steps),))

    def _nps(self, event: Event, scopes: Scopes, user: _User, targets: list[Bucket]) -> None:
        score = event.props["score"]
        kind = C.NPS_PROMOTERS if score >= 9 else C.NPS_PASSIVES if score >= 7 else C.NPS_DETRACTORS
        for bucket in targets:
            v = bucket.values
            v[C.EVENTS] += 1
            v[C.NPS_N] += 1
            v[kind] += 1

    def _csat(self, event: Event, scopes: Scopes, user: _User, targets: list[Bucket]) -> None:
        props = event.props
        satisfied = 1 if props["score"] >= self.csat_thresholds[props["scale"]] else 0
        for bucket in targets:
            v = bucket.values
            v[C.EVENTS] += 1
            v[C.CSAT_N] += 1
            v[C.CSAT_SATISFIED] += satisfied

    def _ces(self, event: Event, scopes: Scopes, user: _User, targets: list[Bucket]) -> None:
        props = event.props
        # Mapped onto 1..7 and doubled: 2 + 12 (score - 1) / (scale - 1) is an exact int
        # for scales 5 and 7, so sums stay exact.
        doubled = 2 + 12 * (props["score"] - 1) // (props["scale"] - 1)
        easy = 1 if doubled <= 6 else 0
        for bucket in targets:
            v = bucket.values
            v[C.EVENTS] += 1
            v[C.CES_N] += 1
            v[C.CES_SUM2] += doubled
            v[C.CES_SUMSQ4] += doubled * doubled
            v[C.CES_EASY] += easy

    # -- features and activation --------------------------------------------------

    def _feature_used(
        self, event: Event, scopes: Scopes, user: _User, targets: list[Bucket]
    ) -> None:
        for bucket in targets:
            bucket.values[C.EVENTS] += 1
        ts = event.ts_ms
        feature = self.cap.admit("feature", event.props["feature"])
        feature_latest = user.feature_latest
        if feature_latest is None:
            feature_latest = user.feature_latest = {}
        for scope in scopes:
            key = (feature, scope)
            old = feature_latest.get(key)
            if old is not None and old >= ts:
                continue
            feature_latest[key] = ts
            if old is None:
                for bucket in self._scope_targets(scope, ts):
                    counts = bucket.features
                    counts[feature] = counts.get(feature, 0) + 1
                    if not counts[feature]:
                        del counts[feature]
            elif old - old % MINUTE_MS != ts - ts % MINUTE_MS:
                self._move(scope, old, ts, _FeatureCount(feature))
        times = user.feature_times
        if times is None:
            times = user.feature_times = []
        at = bisect.bisect_left(times, ts)
        if at == len(times) or times[at] != ts:
            times.insert(at, ts)
        for signup in user.signups or ():
            if signup.ts <= ts <= signup.ts + ACTIVATION_MS and (
                signup.first_use is None or ts < signup.first_use
            ):
                self._activation(signup, -1)
                signup.first_use = ts
                self._activation(signup, 1)

    def _signup(self, event: Event, scopes: Scopes, user: _User, targets: list[Bucket]) -> None:
        ts = event.ts_ms
        for bucket in targets:
            v = bucket.values
            v[C.EVENTS] += 1
            v[C.SIGNUPS] += 1
        signup = _Signup(ts, scopes)
        times = user.feature_times or ()
        at = bisect.bisect_left(times, ts)
        if at < len(times) and times[at] <= ts + ACTIVATION_MS:
            signup.first_use = times[at]
            self._activation(signup, 1)
        if user.signups is None:
            user.signups = []
        user.signups.append(signup)

    def _activation(self, signup: _Signup, sign: int) -> None:
        if signup.first_use is None:
            return
        ttv = sign * (signup.first_use - signup.ts)
        for bucket in self._targets(signup.scopes, signup.ts):
            v = bucket.values
            v[C.ACTIVATED] += sign
            v[C.TTV_SUM_MS] += ttv

    # -- sessions -----------------------------------------------------------------

    def _page_view(self, event: Event, scopes: Scopes, user: _User, targets: list[Bucket]) -> None:
        ts = event.ts_ms
        page = self.cap.admit("page", event.props["page"])
        page = self._strings.setdefault(page, page)  # one copy per page in the sessions
        for bucket in targets:
            v = bucket.values
            v[C.EVENTS] += 1
            v[C.PAGEVIEWS] += 1
            pages = bucket.pages
            pages[page] = pages.get(page, 0) + 1
        assert event.session_id is not None
        key = user_key(event.user_id, event.session_id)
        stored = self.sessions.get(key)
        if stored is None:
            session = _Session(ts, scopes, ts, page, 1)
            self.sessions[key] = session
            self._session_delta(session, 1)
            return
        sessions = [stored] if isinstance(stored, _Session) else stored
        self._join_session(sessions, ts, page, scopes)
        self.sessions[key] = sessions[0] if len(sessions) == 1 else sessions

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
            old_count, old_exit = prev.count, prev.last_page
            prev.count += 1
            if ts == prev.last_ts:
                prev.last_page = page
            self._session_grew(prev, old_count, old_exit)
            return
        join_prev = prev is not None and ts - prev.last_ts <= SESSION_GAP_MS
        join_next = nxt is not None and nxt.first_ts - ts <= SESSION_GAP_MS
        if prev is not None and join_prev:
            if nxt is not None and join_next:
                self._session_delta(prev, -1)
                prev.count += 1
                prev.last_ts, prev.last_page = ts, page
                self._session_delta(nxt, -1)
                prev.count += nxt.count
                prev.last_ts, prev.last_page = nxt.last_ts, nxt.last_page
                del sessions[after]
                self._session_delta(prev, 1)
            else:
                old_count, old_exit = prev.count, prev.last_page
                prev.count += 1
                prev.last_ts, prev.last_page = ts, page
                self._session_grew(prev, old_count, old_exit)
        elif nxt is not None and join_next:
            self._session_delta(nxt, -1)
            nxt.count += 1
            nxt.first_ts, nxt.scopes = ts, scopes
            self._session_delta(nxt, 1)
        else:
            session = _Session(ts, scopes, ts, page, 1)
            sessions.insert(after, session)
            self._session_delta(session, 1)

    def _session_grew(self, session: _Session, old_count: int, old_exit: str) -> None:
        """A session kept its start and gained page views: apply the net change only."""
        grown = session.count - old_count
        bounce = -1 if old_count == 1 else 0
        new_exit = session.last_page
        for bucket in self._targets(session.scopes, session.first_ts):
            v = bucket.values
            v[C.SESSION_PAGEVIEWS] += grown
            v[C.BOUNCES] += bounce
            if new_exit != old_exit:
                exits = bucket.exits
                total = exits.get(old_exit, 0) - 1
                if total:
                    exits[old_exit] = total
                else:
                    del exits[old_exit]
                total = exits.get(new_exit, 0) + 1
                if total:
                    exits[new_exit] = total
                else:
                    del exits[new_exit]

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


def _counter(index: int) -> Handler:
    def handle(
        state: PartitionState, event: Event, scopes: Scopes, user: _User, targets: list[Bucket]
    ) -> None:
        for bucket in targets:
            v = bucket.values
            v[C.EVENTS] += 1
            v[index] += 1

    return handle


def _subscription(index: int) -> Handler:
    count = _counter(index)

    def handle(
        state: PartitionState, event: Event, scopes: Scopes, user: _User, targets: list[Bucket]
    ) -> None:
        count(state, event, scopes, user, targets)
        # All-time state: active subscribers count events of any age.
        for scope in scopes:
            state.store.get((scope, ALL_TIME, 0)).values[index] += 1

    return handle


_HANDLERS: Final[dict[str, Handler]] = {
    "page_view": PartitionState._page_view,
    "page_leave": PartitionState._page_leave,
    "impression": _counter(C.IMPRESSIONS),
    "click": _counter(C.CLICKS),
    "feature_used": PartitionState._feature_used,
    "signup": PartitionState._signup,
    "subscription_started": _subscription(C.SUBS_STARTED),
    "subscription_cancelled": _subscription(C.SUBS_CANCELLED),
    "support_ticket_opened": _counter(C.TICKETS_OPENED),
    "support_ticket_resolved": PartitionState._ticket_resolved,
    "task_completed": PartitionState._task_completed,
    "task_failed": _counter(C.TASKS_FAILED),
    "nps": PartitionState._nps,
    "csat": PartitionState._csat,
    "ces": PartitionState._ces,
}


@dataclass(frozen=True, slots=True)
class _FeatureCount:
    """Moves a (user, feature) count between buckets (see `PartitionState._move`)."""

    feature: str

    def __call__(self, bucket: Bucket, sign: int) -> None:
        counts = bucket.features
        total = counts.get(self.feature, 0) + sign
        if total:
            counts[self.feature] = total
        else:
            del counts[self.feature]


@dataclass(frozen=True, slots=True)
class _Packed:
    """A marshal blob inside a checkpoint (see `PartitionState.__getstate__`)."""

    data: bytes


def _last_session(stored: _Session | list[_Session]) -> _Session:
    return stored if isinstance(stored, _Session) else stored[-1]
