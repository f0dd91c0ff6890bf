"""The run event bus: notifies the server processes that a run changed.

An event carries only the project id, the run id and what changed; a
subscriber reads the run's new state from the database when woken. On
SQLite one process serves everything, so events go from publisher to
subscribers in memory. On PostgreSQL each process listens on one channel
over a dedicated connection and publishing is a NOTIFY, so a subscriber in
any process hears the events of every process, its own included.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from ingest_server.db.engine import Database
from ingest_server.logs import database_logger

CHANNEL = "testoqa_run_events"
EventKind = Literal["cases", "executions", "finished"]
EVENT_KINDS: tuple[EventKind, ...] = ("cases", "executions", "finished")
# Sent to every subscriber once the listening connection is back, because
# events published while it was down are lost.
RECONNECTED = "reconnected"

RECONNECT_FIRST_DELAY = 0.5
RECONNECT_MAX_DELAY = 30.0
# A connection cut without a TCP reset (a network partition) raises nothing
# while it only listens, so it is queried at this interval, in seconds.
HEALTH_CHECK_INTERVAL = 30.0
HEALTH_CHECK_TIMEOUT = 10.0

RunKey = tuple[int, uuid.UUID]


@dataclass(frozen=True)
class RunEvent:
    """One change of one run, sent as the NOTIFY payload ``project_id:run_id:kind``."""

    project_id: int
    run_id: uuid.UUID
    kind: EventKind

    def payload(self) -> str:
        return f"{self.project_id}:{self.run_id}:{self.kind}"

    @classmethod
    def parse(cls, payload: str) -> RunEvent | None:
        """Return the event in payload, or None for a payload of another format."""
        parts = payload.split(":")
        if len(parts) != 3:
            return None
        project_id, run_id, kind = parts
        if kind not in EVENT_KINDS or not project_id.isdigit():
            return None
        try:
            return cls(int(project_id), uuid.UUID(run_id), kind)
        except ValueError:
            return None


class Subscription:
    """A wake-up signal for one run; the kinds of the events since the last wait."""

    def __init__(self, key: RunKey) -> None:
        self.key = key
        self._kinds: set[str] = set()
        self._woken = asyncio.Event()

    def notify(self, kind: str) -> None:
        self._kinds.add(kind)
        self._woken.set()

    async def wait(self) -> set[str]:
        """Wait for the next event and return the kinds received since the last call."""
        await self._woken.wait()
        self._woken.clear()
        kinds, self._kinds = self._kinds, set()
        return kinds


class EventBus:
    """Deliver run events to the subscribers of this process; subclasses publish."""

    def __init__(self) -> None:
        self._subscribers: dict[RunKey, set[Subscription]] = {}

    async def start(self) -> None:
        """Start receiving events; the memory bus needs nothing."""

    async def close(self) -> None:
        """Stop receiving events; the memory bus holds nothing to release."""

    async def publish(self, project_id: int, run_id: uuid.UUID, kind: EventKind) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def subscribe(self, project_id: int, run_id: uuid.UUID) -> Iterator[Subscription]:
        """Receive the events of one run while the block runs."""
        subscription = Subscription((project_id, run_id))
        self._subscribers.setdefault(subscription.key, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._subscribers.get(subscription.key)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscribers[subscription.key]

    @property
    def subscriber_count(self) -> int:
        return sum(len(subscribers) for subscribers in self._subscribers.values())

    def deliver(self, event: RunEvent) -> None:
        for subscription in self._subscribers.get((event.project_id, event.run_id), ()):
            subscription.notify(event.kind)

    def _wake_all(self, kind: str) -> None:
        for subscribers in self._subscribers.values():
            for subscription in subscribers:
                subscription.notify(kind)


class MemoryBus(EventBus):
    """The bus of a single process: a publish wakes this process's subscribers directly."""

    async def publish(self, project_id: int, run_id: uuid.UUID, kind: EventKind) -> None:
        self.deliver(RunEvent(project_id, run_id, kind))


class PostgresBus(EventBus):
    """Event bus that listens on a dedicated asyncpg connection and publishes with pg_notify.

    Publishing goes through the server's connection pool, so it works before
    start() and after close() and does not use the listening connection.
    When the listening connection drops, it is opened again with a growing
    delay. Every subscriber is then woken once so it re-reads what it may
    have missed.
    """

    def __init__(
        self,
        database: Database,
        *,
        first_delay: float = RECONNECT_FIRST_DELAY,
        max_delay: float = RECONNECT_MAX_DELAY,
    ) -> None:
        super().__init__()
        self._db = database
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._connection: Any = None
        self._lost = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._connections = 0
        self._connected = asyncio.Condition()

    async def start(self) -> None:
        """Open the listening connection; raise if the database cannot be reached."""
        await self._listen()
        self._supervisor = asyncio.create_task(self._keep_listening(), name="testoqa-bus")

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._close_connection()

    async def publish(self, project_id: int, run_id: uuid.UUID, kind: EventKind) -> None:
        """Send the event with NOTIFY. A database failure is logged, not raised.

        The change the event announces is already committed, so a lost event
        only delays a browser's update until the next event. It must not fail
        the request that made the change.
        """
        payload = RunEvent(project_id, run_id, kind).payload()
        try:
            async with self._db.engine.begin() as connection:
                await connection.execute(select(func.pg_notify(CHANNEL, payload)))
        except (SQLAlchemyError, OSError) as exc:
            database_logger.warning("could not publish run event %s: %s", payload, exc)

    @property
    def connections(self) -> int:
        """Number of listening connections opened so far: 1 after start, more after drops."""
        return self._connections

    async def wait_for_connection(self, number: int) -> None:
        """Wait until the listening connection number ``number`` is open."""
        async with self._connected:
            await self._connected.wait_for(lambda: self._connections >= number)

    async def _listen(self) -> None:
        import asyncpg

        args, kwargs = self._db.engine.dialect.create_connect_args(self._db.engine.url)
        connection = await asyncpg.connect(*args, **kwargs)
        self._lost.clear()
        connection.add_termination_listener(lambda _connection: self._lost.set())
        try:
            await connection.add_listener(CHANNEL, self._on_notification)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        async with self._connected:
            self._connections += 1
            self._connected.notify_all()

    async def _keep_listening(self) -> None:
        while True:
            await self._wait_until_lost()
            database_logger.warning("lost the connection listening for run events; reconnecting")
            await self._close_connection()
            await self._reconnect()
            database_logger.info("listening for run events again")
            self._wake_all(RECONNECTED)

    async def _wait_until_lost(self) -> None:
        import asyncpg

        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), HEALTH_CHECK_INTERVAL)
                return
            try:
                await self._connection.execute("SELECT 1", timeout=HEALTH_CHECK_TIMEOUT)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                database_logger.warning("the listening connection failed a health check: %s", exc)
                return

    async def _reconnect(self) -> None:
        import asyncpg

        delay = self._first_delay
        while True:
            try:
                await self._listen()
                return
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                database_logger.warning(
                    "could not listen for run events: %s; retrying in %.1f s", exc, delay
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_delay)

    async def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None or connection.is_closed():
            return
        try:
            await connection.close(timeout=5)
        except (OSError, TimeoutError) as exc:
            database_logger.debug("closing the listening connection failed: %s", exc)
            connection.terminate()

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        event = RunEvent.parse(payload)
        if event is None:
            database_logger.debug("ignored a notification with payload %r", payload[:200])
            return
        self.deliver(event)


def create_bus(database: Database) -> EventBus:
    """Return the bus that fits the database: NOTIFY on PostgreSQL, memory on SQLite."""
    if database.is_sqlite:
        return MemoryBus()
    return PostgresBus(database)
