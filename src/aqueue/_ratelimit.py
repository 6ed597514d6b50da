"""Global rate limits: parsing ``"100/s"``, the limiter's key names, and GCRA.

The limiter is GCRA (the generic cell rate algorithm) in its scheduling form. Each limit
key keeps a *theoretical arrival time* ``t``: the time the next start would be due if
starts came exactly one ``interval`` (period / count) apart. A start is admitted at once
while ``now >= t - tolerance``; otherwise it is *reserved* at ``t - tolerance``, the first
time the limit admits it. Either way ``t`` moves on by one interval. Over any window of
``W`` seconds the reservations hold at most ``rate * W + burst - 1`` starts
(``tolerance`` is ``burst - 1`` intervals), wherever the window lies: unlike a fixed window
counter, which admits a full window's count at the end of one window and again at the
start of the next (2x the limit within one second).

A reservation is kept in the key's state under the job id: when the deferred message
comes back at its reserved time, it starts without taking a second slot. Deferred
messages may come back late and bunched (a runner's loop was busy, the promoter ran
late): a second GCRA, ``a``, over the starts actually admitted, spaces them out again,
so the limit holds on admissions, not only on reservations. Its tolerance is one
interval more than the reservations' (a start that came back late may catch up one
interval, else every delay on the way back would be capacity lost for good): over any
window of ``W`` seconds at most ``rate * W + burst`` starts are admitted. A
back-off (``RateLimited``) sets ``b``: no start before it; reservations made for a time
before ``b`` are void and asked for again when their message comes back.

``gcra_request`` and ``gcra_back_off`` are the reference implementation: the Redis
broker runs the same steps in ``_broker/lua/ratelimit.lua`` (atomically, by Redis'
clock), the in-memory broker of ``aqueue.testing`` runs these.
"""

from __future__ import annotations

import re
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from ._errors import ConfigurationError

RateKey = Callable[[tuple[Any, ...], dict[str, Any]], object]
"""``rate_key(args, kwargs)``: the key a job's start is counted under (e.g. a customer
id); each key has its own limit."""

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"([1-9][0-9]{0,8})/([1-9][0-9]{0,5})?([smhd])")

RESERVED = "j:"
"""The prefix of a reservation's field (then the job id) in a limit's state: apart from
the fields ``t``, ``a`` and ``b`` whatever a job id is."""

STATE_MARGIN_MS = 60_000
"""A key's state outlives its last reservation by this long: a deferred message that
comes back late (runners down) still finds its reservation."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``count`` starts per ``period`` seconds, ``burst`` of them back to back."""

    count: int
    period: float
    burst: int = 1

    @property
    def interval_us(self) -> int:
        """The emission interval: the time one start uses up."""
        return max(1, round(self.period * 1_000_000 / self.count))

    @property
    def tolerance_us(self) -> int:
        """How far ahead of the schedule a start may run: ``burst - 1`` intervals."""
        return (self.burst - 1) * self.interval_us

    def __str__(self) -> str:
        return f"{self.count}/{self.period:g}s (burst {self.burst})"


def parse_rate(text: object, burst: object = 1) -> RateLimit:
    """``"<count>/<unit>"`` or ``"<count>/<n><unit>"``, unit ``s``, ``m``, ``h`` or ``d``
    (``"100/s"``, ``"5000/m"``, ``"10/5s"``); anything else is a ConfigurationError."""
    if not isinstance(text, str):
        raise ConfigurationError(f"rate_limit must be a string like '100/s', got {text!r}")
    m = _RATE.fullmatch(text)
    if m is None:
        raise ConfigurationError(
            f"invalid rate_limit {text!r}: use '<count>/<unit>' or '<count>/<n><unit>' with "
            "unit s, m, h or d (e.g. '100/s', '5000/m', '10/5s')"
        )
    if not isinstance(burst, int) or isinstance(burst, bool) or not 1 <= burst <= 1_000_000:
        raise ConfigurationError(f"rate_burst must be an int >= 1, got {burst!r}")
    count = int(m.group(1))
    period = int(m.group(2) or 1) * _UNITS[m.group(3)]
    return RateLimit(count, period, burst)


def limiter_key(tag: str, task: str, key: str | None) -> str:
    """The Redis key of a limit's state, in the queue's hash tag (one cluster slot). Task
    names never hold ``#``, so a task's keyed states cannot meet another task's."""
    base = f"{tag}:rate:{task}"
    return base if key is None else f"{base}#{key}"


def job_key(rate_key: RateKey | None, args: list[Any], kwargs: dict[str, Any]) -> str | None:
    """The key a job is limited under (None: the task's one limit). Raises what
    ``rate_key`` raises."""
    if rate_key is None:
        return None
    return str(rate_key(tuple(args), kwargs))


# -- GCRA, the reference steps (µs; ``state`` is the key's hash: t, a, b, job ids) ----------


def gcra_request(
    state: MutableMapping[str, int], job_id: str, now: int, interval: int, tolerance: int
) -> int:
    """Ask to start ``job_id`` at ``now``: 0 when admitted, else the µs until the time
    reserved for it (its message is to come back then)."""
    blocked = state.get("b", 0)
    field = RESERVED + job_id
    reserved = state.pop(field, None)
    started = max(state.get("a", 0), now)
    slack = tolerance + interval  # a late start may catch up one interval
    if reserved is not None and reserved >= blocked:
        if _ms(reserved) <= now and started - slack <= now:
            state["a"] = started + interval
            return 0
        # Early (a second copy), or late behind others that came back late too: starts
        # stay spaced however the deferred messages bunch on their way back.
        state[field] = reserved
        return max(_ms(reserved), _ms_up(started - slack)) - now
    tat = max(state.get("t", 0), now, started - interval)
    allow = tat - tolerance
    state["t"] = tat + interval
    if _ms(allow) <= now and started - slack <= now:
        state["a"] = started + interval
        return 0
    state[field] = allow
    return max(_ms(allow), _ms_up(started - slack)) - now


def _ms(t: int) -> int:
    """The start of the millisecond ``t`` falls in: a reservation is on time from the
    ms its message is due at (the delayed set's scores are ms; without this, a message
    due at that ms would bounce until the ms ends). The admitted starts themselves are
    checked to the µs (``a``), so the bound on them stays exact."""
    return t // 1000 * 1000


def _ms_up(t: int) -> int:
    return -(-t // 1000) * 1000


def gcra_back_off(state: MutableMapping[str, int], now: int, delay: int, tolerance: int) -> int:
    """No start before ``now + delay``; returns the µs until the back-off ends."""
    until = max(state.get("b", 0), now + delay)
    state["b"] = until
    state["t"] = max(state.get("t", 0), until + tolerance)
    return until - now


def state_ttl_ms(state: MutableMapping[str, int], now: int) -> int:
    """How long the key's state is kept after this change."""
    last = max(state.get("t", 0), state.get("a", 0), state.get("b", 0))
    return max(0, (last - now) // 1000) + STATE_MARGIN_MS


__all__ = [
    "RateKey",
    "RateLimit",
    "gcra_back_off",
    "gcra_request",
    "job_key",
    "limiter_key",
    "parse_rate",
    "state_ttl_ms",
]
