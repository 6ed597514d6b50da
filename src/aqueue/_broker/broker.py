"""Redis dispatch: the key layout of a queue and every Redis operation aqueue uses.

All keys of a queue share one hash tag, ``{<prefix>:<queue>}``, so a queue lives on one
Redis Cluster slot. Multi-key moves are Lua scripts (``lua/*.lua``), loaded once.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.commands.core import AsyncScript

from .._errors import BrokerError, ConfigurationError

WAKE = b"~wake"
"""Pushed to the normal ready list beside a high/low message: wakes a runner blocked in
BLMOVE on that list; never run (take.lua and the fetcher drop it)."""


def _lua(name: str) -> str:
    return (resources.files("aqueue._broker.lua") / f"{name}.lua").read_text("utf-8")


def _joined(messages: Sequence[str | bytes]) -> str | bytes | None:
    """The messages as one newline-separated string (``push.lua`` splits it), or None
    when that cannot be split back: a message that holds a newline itself (aqueue's
    never do), or str and bytes mixed."""
    if not messages:
        return ""
    if len(messages) == 1 and not messages[0]:
        return None  # "" means no messages to push.lua
    joined: str | bytes
    try:
        joined = "\n".join(messages)  # type: ignore[arg-type]  # all str, or TypeError
    except TypeError:
        try:
            joined = b"\n".join(messages)  # type: ignore[arg-type]
        except TypeError:
            return None
        return joined if joined.count(b"\n") == len(messages) - 1 else None
    return joined if joined.count("\n") == len(messages) - 1 else None


@asynccontextmanager
async def map_exceptions(what: str) -> AsyncIterator[None]:
    """Map redis-py and socket errors to :class:`BrokerError` at the Redis boundary."""
    try:
        yield
    except (rexc.RedisError, OSError) as exc:
        # redis-py may turn a cancellation into a connection error: never swallow it.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError() from exc
        raise BrokerError(f"Redis {what} failed: {type(exc).__name__}: {exc}") from exc


class Keys:
    def __init__(self, prefix: str, queue: str) -> None:
        tag = f"{{{prefix}:{queue}}}"
        self.tag = tag
        self.ready = f"{tag}:ready"
        self.ready_high = f"{tag}:ready:high"
        self.ready_low = f"{tag}:ready:low"
        self.delayed = f"{tag}:delayed"
        self.epoch = f"{tag}:epoch"
        self.runners = f"{tag}:runners"
        self.suspects = f"{tag}:suspects"
        self.suspects_alone = f"{tag}:suspects:alone"
        self.lock_sweep = f"{tag}:lock:sweep"
        self.lock_reclaim = f"{tag}:lock:reclaim"
        self.finished = f"{tag}:finished"

    def working(self, runner_id: str) -> str:
        return f"{self.tag}:working:{runner_id}"

    def alive(self, runner_id: str) -> str:
        return f"{self.tag}:alive:{runner_id}"


class Broker:
    def __init__(self, url: str, prefix: str, queue: str) -> None:
        try:
            self.redis: aioredis.Redis = aioredis.Redis.from_url(
                url, decode_responses=False, health_check_interval=15
            )
            # Blocking commands get their own client so they never starve the pool.
            self.blocking: aioredis.Redis = aioredis.Redis.from_url(
                url, decode_responses=False, health_check_interval=15
            )
        except ValueError as exc:
            raise ConfigurationError(f"invalid Redis URL: {exc}") from exc
        self.keys = Keys(prefix, queue)
        self._takes = 0
        self._take: AsyncScript = self.redis.register_script(_lua("take"))
        self._promote: AsyncScript = self.redis.register_script(_lua("promote"))
        self._settle: AsyncScript = self.redis.register_script(_lua("settle"))
        self._requeue_all: AsyncScript = self.redis.register_script(_lua("requeue_all"))
        self._push: AsyncScript = self.redis.register_script(_lua("push"))
        self._release_lock: AsyncScript = self.redis.register_script(_lua("release_lock"))
        self._ratelimit: AsyncScript = self.redis.register_script(_lua("ratelimit"))

    async def close(self) -> None:
        await self.redis.aclose()
        await self.blocking.aclose()

    async def maxmemory_policy(self) -> str | None:
        try:
            res = await self.redis.config_get("maxmemory-policy")
        except rexc.ResponseError:  # CONFIG may be disabled (managed Redis)
            return None
        except (rexc.RedisError, OSError) as exc:
            raise BrokerError(f"Redis CONFIG GET failed: {exc}") from exc
        data: dict[Any, Any] = dict(res)
        value = data.get(b"maxmemory-policy") or data.get("maxmemory-policy")
        return value.decode() if isinstance(value, bytes) else value

    # -- producer side --------------------------------------------------------------

    async def dispatch(
        self,
        ready: Sequence[str | bytes],
        delayed: Sequence[tuple[int, str | bytes]],
        *,
        high: Sequence[str | bytes] = (),
        low: Sequence[str | bytes] = (),
    ) -> str:
        """Push new messages: ready ones to the ready list of their priority level
        (``high``/``low``, plus a wake-up token on the normal list that idle runners
        block on), future ones to the delayed set (score = due time in ms). One round
        trip: ready messages only go through ``push.lua``, a level's messages joined
        into one argument (packing a thousand arguments cost redis-py ~1 ms, more than
        Redis takes to split them); else a pipeline.

        Returns the epoch of the dataset the messages went into, read with the push (in
        the script, or after it on the pipeline's one connection, which a restart would
        have broken): a dispatch mark must name the dataset that holds the messages, not
        the one Redis has by the time the mark is written."""
        if not (ready or delayed or high or low):
            return await self.epoch()
        if not delayed:
            n, h, lo = _joined(ready), _joined(high), _joined(low)
            if n is not None and h is not None and lo is not None:
                keys = [self.keys.ready, self.keys.ready_high, self.keys.ready_low, self.keys.epoch]
                async with map_exceptions("dispatch"):
                    _, epoch = await self._push(keys=keys, args=[n, h, lo, WAKE, _fresh_epoch()])
                return _text(epoch)
        async with map_exceptions("dispatch"):
            pipe = self.redis.pipeline(transaction=False)
            for key, msgs in ((self.keys.ready_high, high), (self.keys.ready_low, low)):
                for i in range(0, len(msgs), 1000):
                    pipe.lpush(key, *msgs[i : i + 1000])
            if high or low:
                pipe.lpush(self.keys.ready, WAKE)
            for i in range(0, len(ready), 1000):
                pipe.lpush(self.keys.ready, *ready[i : i + 1000])
            for i in range(0, len(delayed), 1000):
                mapping: dict[Any, float] = {m: s for s, m in delayed[i : i + 1000]}
                pipe.zadd(self.keys.delayed, mapping)
            return await self._execute_reading_epoch(pipe)

    # -- runner side ------------------------------------------------------------------

    async def notify_finished(self, job_ids: Sequence[str]) -> None:
        if job_ids:
            async with map_exceptions("publish"):
                await self.redis.publish(self.keys.finished, " ".join(job_ids))

    async def take(self, runner_id: str, count: int) -> list[bytes]:
        """Strict priority (high, normal, low), except that on one take in ten the normal
        level goes first and on another the low level does: no level starves."""
        self._takes += 1
        k = self._takes % 10
        order = "lhn" if k == 9 else "nhl" if k == 4 else "hnl"
        keys = [self.keys.ready_high, self.keys.ready, self.keys.ready_low]
        async with map_exceptions("take"):
            items = await self._take(
                keys=[*keys, self.keys.working(runner_id)], args=[count, order, WAKE]
            )
        return list(items or [])

    async def wait_one(self, runner_id: str, timeout: float) -> bytes | None:
        """Block (on the blocking client) until a message arrives, moving it into the
        runner's working list."""
        async with map_exceptions("BLMOVE"):
            res = await self.blocking.blmove(
                self.keys.ready,
                self.keys.working(runner_id),
                timeout,  # type: ignore[arg-type]  # Redis >= 6 takes fractional seconds
                "RIGHT",
                "LEFT",
            )
        if res == WAKE:  # a high/low message arrived: the caller takes by priority
            async with map_exceptions("LREM"):
                await self.redis.lrem(self.keys.working(runner_id), 1, WAKE)  # type: ignore[arg-type]
            return b""
        return res if isinstance(res, bytes) else None

    async def settle(
        self,
        runner_id: str,
        remove: Sequence[bytes],
        ready: Sequence[str | bytes] = (),
        delayed: Sequence[tuple[int, str | bytes]] = (),
        finished: Sequence[str] = (),
    ) -> int:
        """Remove delivered messages from the working list, push follow-ups (retries,
        put-backs) and tell result waiters which jobs ``finished``: one round trip."""
        args: list[Any] = [len(remove), *remove, len(ready), *ready, len(delayed)]
        for score, msg in delayed:
            args.extend((score, msg))
        if finished:
            args.extend((self.keys.finished, " ".join(finished)))
        async with map_exceptions("settle"):
            res = await self._settle(
                keys=[self.keys.working(runner_id), self.keys.ready, self.keys.delayed],
                args=args,
            )
        return int(res)

    async def admit(
        self, runner_id: str, requests: Sequence[tuple[str, str, int, int, bytes]]
    ) -> list[int]:
        """Rate limits (``ratelimit.lua``): ``requests`` are ``(limit state key, job id,
        interval µs, tolerance µs, message)``. Returns each one's wait in µs: 0 to start
        now; else the message moved from the working list to the delayed set, due at
        the time reserved for it. One round trip for the batch."""
        keys = [self.keys.working(runner_id), self.keys.delayed]
        index: dict[str, int] = {}
        args: list[Any] = ["admit", len(requests)]
        for state_key, job_id, interval, tolerance, raw in requests:
            k = index.get(state_key)
            if k is None:
                keys.append(state_key)
                k = index[state_key] = len(keys)  # Lua's KEYS count from 1
            args += [k, job_id, interval, tolerance, raw]
        async with map_exceptions("rate limit"):
            waits = await self._ratelimit(keys=keys, args=args)
        return [int(w) for w in waits]

    async def back_off(self, state_key: str, delay_us: int, tolerance_us: int) -> int:
        """No start under this limit state for ``delay_us``; returns µs until it ends."""
        async with map_exceptions("rate limit back-off"):
            left = await self._ratelimit(keys=[state_key], args=["backoff", delay_us, tolerance_us])
        return int(left)

    async def promote(self, limit: int = 1000) -> tuple[int, int]:
        async with map_exceptions("promote"):
            moved, next_ms = await self._promote(
                keys=[
                    self.keys.delayed,
                    self.keys.ready_high,
                    self.keys.ready,
                    self.keys.ready_low,
                ],
                args=[limit, WAKE],
            )
        return int(moved), int(next_ms)

    async def requeue_all(self, runner_id: str) -> int:
        async with map_exceptions("requeue"):
            return int(
                await self._requeue_all(keys=[self.keys.working(runner_id), self.keys.ready])
            )

    async def working_items(self, runner_id: str) -> list[bytes]:
        async with map_exceptions("LRANGE"):
            items = await self.redis.lrange(self.keys.working(runner_id), 0, -1)
        return [i if isinstance(i, bytes) else i.encode() for i in items]

    async def heartbeat(self, runner_id: str, ttl_ms: int) -> None:
        async with map_exceptions("heartbeat"):
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(self.keys.alive(runner_id), b"1", px=ttl_ms)
            pipe.sadd(self.keys.runners, runner_id)
            await pipe.execute()

    async def runners(self) -> dict[str, bool]:
        """Runners seen on this queue, and whether their liveness key is still there."""
        async with map_exceptions("runners"):
            ids = [_text(r) for r in await self.redis.smembers(self.keys.runners)]
            if not ids:
                return {}
            pipe = self.redis.pipeline(transaction=False)
            for r in ids:
                pipe.exists(self.keys.alive(r))
            alive = await pipe.execute()
        return {r: bool(a) for r, a in zip(ids, alive, strict=True)}

    async def dispatch_suspects(
        self, messages: Sequence[str | bytes], alone: Sequence[str | bytes] = ()
    ) -> str:
        """Jobs whose runner died while they ran: run by a runner with nothing else in
        flight, in small groups, or ``alone`` when one more stall would fail them.
        Returns the epoch, as :meth:`dispatch` does."""
        async with map_exceptions("dispatch suspects"):
            pipe = self.redis.pipeline(transaction=False)
            if messages:
                pipe.lpush(self.keys.suspects, *messages)
            if alone:
                pipe.lpush(self.keys.suspects_alone, *alone)
            return await self._execute_reading_epoch(pipe)

    async def take_suspect(self, runner_id: str, *, alone: bool = False) -> bytes | None:
        key = self.keys.suspects_alone if alone else self.keys.suspects
        async with map_exceptions("take suspect"):
            res = await self.redis.lmove(key, self.keys.working(runner_id), "RIGHT", "LEFT")
        return res if isinstance(res, bytes) else None

    async def suspects_waiting(self) -> int:
        async with map_exceptions("LLEN"):
            pipe = self.redis.pipeline(transaction=False)
            pipe.llen(self.keys.suspects)
            pipe.llen(self.keys.suspects_alone)
            a, b = await pipe.execute()
        return int(a) + int(b)

    async def publish_stats(self, runner_id: str, stats: dict[str, int], ttl_ms: int) -> None:
        key = f"{self.keys.tag}:stats:{runner_id}"
        async with map_exceptions("stats"):
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(key, mapping=stats)  # type: ignore[arg-type]
            pipe.pexpire(key, ttl_ms)
            await pipe.execute()

    async def runner_stats(self) -> dict[str, dict[str, int]]:
        runners = list(await self.runners())
        if not runners:
            return {}
        async with map_exceptions("stats"):
            pipe = self.redis.pipeline(transaction=False)
            for r in runners:
                pipe.hgetall(f"{self.keys.tag}:stats:{r}")
            rows = await pipe.execute()
        return {
            r: {_text(k): int(v) for k, v in row.items()}
            for r, row in zip(runners, rows, strict=True)
            if row
        }

    async def forget_runner(self, runner_id: str) -> None:
        async with map_exceptions("forget runner"):
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(self.keys.alive(runner_id))
            pipe.srem(self.keys.runners, runner_id)
            await pipe.execute()

    async def _execute_reading_epoch(self, pipe: Any) -> str:
        """Run a pipeline of pushes, then read (creating it if missing) the epoch on the
        same connection: a restart in between would have broken the connection."""
        pipe.set(self.keys.epoch, _fresh_epoch(), nx=True)
        pipe.get(self.keys.epoch)
        *_, epoch = await pipe.execute()
        return _text(epoch)

    async def epoch(self) -> str:
        """The Redis dataset's epoch: created once; a different (or missing) value than
        a runner saw before means Redis lost its data (restart, FLUSHALL, failover)."""
        async with map_exceptions("epoch"):
            fresh = _fresh_epoch().encode()
            await self.redis.set(self.keys.epoch, fresh, nx=True)
            value = await self.redis.get(self.keys.epoch)
        return _text(value or fresh)

    async def lengths(self) -> tuple[int, int]:
        async with map_exceptions("lengths"):
            pipe = self.redis.pipeline(transaction=False)
            pipe.llen(self.keys.ready)
            pipe.zcard(self.keys.delayed)
            pipe.llen(self.keys.suspects)
            pipe.llen(self.keys.ready_high)
            pipe.llen(self.keys.ready_low)
            pipe.llen(self.keys.suspects_alone)
            ready, delayed, suspects, high, low, alone = await pipe.execute()
        return int(ready) + int(suspects) + int(high) + int(low) + int(alone), int(delayed)

    async def acquire_lock(self, key: str, ttl_ms: int) -> str | None:
        token = secrets.token_hex(8)
        async with map_exceptions("lock"):
            ok = await self.redis.set(key, token, nx=True, px=ttl_ms)
        return token if ok else None

    async def release_lock(self, key: str, token: str) -> bool:
        """Delete the lock if it still holds ``token`` (one atomic script): a holder
        whose lock expired never deletes the next holder's. True when it was ours."""
        async with map_exceptions("unlock"):
            return bool(await self._release_lock(keys=[key], args=[token]))

    async def purge(self) -> None:
        """Delete the queue's keys, including every known runner's working list."""
        async with map_exceptions("purge"):
            runners = [_text(r) for r in await self.redis.smembers(self.keys.runners)]
            keys = [self.keys.ready, self.keys.delayed, self.keys.epoch, self.keys.runners]
            keys += [self.keys.suspects, self.keys.ready_high, self.keys.ready_low]
            keys.append(self.keys.suspects_alone)
            keys += [self.keys.working(r) for r in runners]
            keys += [self.keys.alive(r) for r in runners]
            await self.redis.delete(*keys)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _fresh_epoch() -> str:
    """A new dataset's epoch, used only if Redis has none."""
    return secrets.token_hex(8)
