"""Live progress of running runs: counts by outcome, read again whenever the run changes.

One feed per run and process reads the run's progress when the event bus
reports a change. After each read the feed pauses for one interval, so
changes during the pause fold into a single next read. The feed shares
each reading with every stream of that run in the process. Each stream is
authorized on its own before it joins a feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ingest_server.config import DEFAULT_MAX_LIVE_STREAMS
from ingest_server.db.engine import Database
from ingest_server.db.notify import EventBus, MemoryBus, RunKey
from ingest_server.logs import server_logger
from ingest_server.repositories import runs as run_repo
from ingest_server.services.authz import Action
from ingest_server.services.context import RequestContext
from ingest_server.services.errors import NotFound, ServiceError
from ingest_server.services.runs import load_run

OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
DEFAULT_INTERVAL = 0.5


class TooManyStreams(ServiceError):
    """This process already serves its maximum number of live streams."""

    code = "too_many_streams"


@dataclass(frozen=True)
class Progress:
    """A run's progress: tests by final outcome, how many are done, of how many collected."""

    run_id: uuid.UUID
    status: str
    counts: dict[str, int]
    done: int
    # The collected count the run reported, else its collected cases, or None if neither is known.
    collected: int | None

    @property
    def settled(self) -> bool:
        return self.status != "running"

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": str(self.run_id),
            "status": self.status,
            "counts": self.counts,
            "done": self.done,
            "collected": self.collected,
        }


ProgressLoader = Callable[[], Awaitable[Progress]]


class _Feed:
    """The progress of one run, read once per change and shared by its streams."""

    def __init__(self, key: RunKey, load: ProgressLoader, bus: EventBus, interval: float) -> None:
        self.key = key
        self.watchers = 0
        self.version = 0
        self.latest: Progress | None = None
        # Set when the feed stops without a settled run: a failed read or a shutdown.
        self.ended = False
        self._changed = asyncio.Event()
        self._load = load
        self._bus = bus
        self._interval = interval
        self._task = asyncio.create_task(self._follow(), name=f"testoqa-live-{key[1]}")

    @property
    def running(self) -> bool:
        return not self._task.done()

    async def next_after(self, version: int) -> tuple[int, Progress] | None:
        """Wait for a reading newer than version, or return None once the feed has ended."""
        while self.version <= version and not self.ended:
            await self._changed.wait()
        if self.version <= version or self.latest is None:
            return None
        return self.version, self.latest

    def stop(self) -> None:
        self._task.cancel()
        self._end()

    async def _follow(self) -> None:
        try:
            with self._bus.subscribe(*self.key) as subscription:
                progress = await self._publish()
                while not progress.settled:
                    await subscription.wait()
                    progress = await self._publish()
                    # Events during this pause fold into the next single read.
                    await asyncio.sleep(self._interval)
        except Exception:
            server_logger.exception("live progress of run %s stopped after an error", self.key[1])
            self._end()

    async def _publish(self) -> Progress:
        progress = await self._load()
        self.latest = progress
        self.version += 1
        self._wake()
        return progress

    def _end(self) -> None:
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


class LiveService:
    def __init__(
        self,
        database: Database,
        bus: EventBus | None = None,
        *,
        interval: float = DEFAULT_INTERVAL,
        max_streams: int = DEFAULT_MAX_LIVE_STREAMS,
    ) -> None:
        self._db = database
        self.bus = bus or MemoryBus()
        self.interval = interval
        self.max_streams = max_streams
        self._feeds: dict[RunKey, _Feed] = {}
        self._streams = 0

    @property
    def streams(self) -> int:
        """Number of live streams open in this process."""
        return self._streams

    async def start(self) -> None:
        await self.bus.start()

    def end_streams(self) -> None:
        """End every open stream, as a server does before it stops."""
        for feed in list(self._feeds.values()):
            feed.stop()
        self._feeds.clear()

    async def close(self) -> None:
        self.end_streams()
        await self.bus.close()

    @contextlib.asynccontextmanager
    async def watch(
        self, ctx: RequestContext, run_id: uuid.UUID
    ) -> AsyncIterator[AsyncIterator[Progress]]:
        """Authorize a stream of one run's progress and yield its readings.

        The readings start with the current progress and end after the first
        one of a settled run. They also end early when the server stops.
        Raises NotFound for an unknown run and TooManyStreams at the limit.
        """
        project = ctx.require(Action.READ_RESULTS)
        if self._streams >= self.max_streams:
            raise TooManyStreams(
                f"too many live streams: this server process serves at most "
                f"{self.max_streams} at once; reload the page later"
            )
        # Counted before the first await, so concurrent requests cannot pass the limit.
        self._streams += 1
        try:
            async with self._db.read() as session:
                await load_run(session, project, run_id)
            feed = self._join((project.id, run_id))
            try:
                yield self._readings(feed)
            finally:
                self._leave(feed)
        finally:
            self._streams -= 1

    async def _readings(self, feed: _Feed) -> AsyncIterator[Progress]:
        version = 0
        while True:
            reading = await feed.next_after(version)
            if reading is None:
                return
            version, progress = reading
            yield progress
            if progress.settled:
                return

    def _join(self, key: RunKey) -> _Feed:
        feed = self._feeds.get(key)
        # A finished feed may be out of date: a shard can set its run running again.
        if feed is None or not feed.running:
            feed = _Feed(key, lambda: self._read_progress(*key), self.bus, self.interval)
            self._feeds[key] = feed
        feed.watchers += 1
        return feed

    def _leave(self, feed: _Feed) -> None:
        feed.watchers -= 1
        if feed.watchers > 0:
            return
        feed.stop()
        if self._feeds.get(feed.key) is feed:
            del self._feeds[feed.key]

    async def _read_progress(self, project_id: int, run_id: uuid.UUID) -> Progress:
        async with self._db.read() as session:
            run = await run_repo.get_run(session, project_id, run_id)
            if run is None:
                raise NotFound(f"run {str(run_id)!r} not found")
            totals = await run_repo.totals_by_run(session, project_id, [run_id])
            collected = run.collected_count
            if collected is None:
                collected = await run_repo.count_planned(session, project_id, run_id) or None
        counts = {outcome: totals[run_id].get(outcome, 0) for outcome in OUTCOMES}
        return Progress(
            run_id=run_id,
            status=run.status,
            counts=counts,
            done=sum(totals[run_id].values()),
            collected=collected,
        )
