"""Delivery of spooled events to the server, in order, with retries and a deadline.

The live sender thread and ``testoqa upload`` share this logic. Every
request is idempotent (client-generated run and execution ids), so a batch
whose response was lost can be sent again without creating duplicates.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_testoqa.client import ApiClient, DeliveryError
from pytest_testoqa.spool import Event, encode_body

MAX_BATCH_ITEMS = 500
MAX_BATCH_BYTES = 4 * 1024 * 1024
BACKOFF_START = 0.5
BACKOFF_MAX = 10.0
# Consecutive failed attempts after which the sender stops trying and leaves
# everything in the spool for ``testoqa upload``.
MAX_FAILURES = 5
# Once the session is over, waits between attempts are capped at this, and
# fewer attempts are made, so an outage delays the end of a run only briefly.
CLOSING_BACKOFF_MAX = 1.0
CLOSING_MAX_FAILURES = 2


# Statuses that will not change however often the request is repeated: the
# token is invalid, its role may not report, or the project is unknown.
FATAL_STATUSES = (401, 403, 404)


class Rejected(Exception):
    """The server refused one request for good (invalid or too large); others may pass."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class GiveUp(Exception):
    """Delivery stopped: the server is unreachable for too long, or it rejected us for good."""


@dataclass
class DeliveryStats:
    """Counts of what reached the server, and the errors that stopped the rest."""

    run_id: str | None = None
    report_url: str | None = None
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    rejected_messages: list[str] = field(default_factory=list)
    last_error: DeliveryError | None = None
    fatal: DeliveryError | None = None
    gave_up: bool = False

    @property
    def delivered(self) -> int:
        return self.accepted + self.duplicate


class Delivery:
    """Send events in order, acknowledging each one the server has stored."""

    def __init__(
        self,
        client: ApiClient,
        acknowledge: Callable[[list[int]], None],
        *,
        deadline: Callable[[], float | None] = lambda: None,
        sleep: Callable[[float], bool | None] = time.sleep,
    ) -> None:
        self.client = client
        self.acknowledge = acknowledge
        self.stats = DeliveryStats()
        self._deadline = deadline
        # Sleeps up to the given seconds; returns True when woken early.
        self._sleep = sleep
        self._failures = 0
        # The server's Retry-After: no request before this monotonic time.
        self._not_before = 0.0
        self.closing = False
        self.gave_up_closing = False

    @property
    def stopped(self) -> bool:
        return self.stats.fatal is not None or self.stats.gave_up

    def begin_closing(self) -> None:
        """Switch to the end-of-session policy: short backoff and few attempts."""
        self.closing = True
        self._failures = 0

    def reopen(self) -> None:
        """Allow a last short try after giving up; a fatal rejection stays final."""
        if self.stats.fatal is None and self.stats.gave_up:
            self.stats.gave_up = False
            self._failures = 0

    def deliver(self, events: Sequence[Event]) -> None:
        """Deliver events; raise GiveUp when delivery has stopped for good."""
        if self.stopped:
            raise GiveUp()
        index = 0
        while index < len(events):
            kind = events[index].kind
            if kind == "execution":
                batch = self._execution_batch(events, index)
                self._send_executions(batch)
                index += len(batch)
                continue
            self._send_one(events[index])
            index += 1

    @staticmethod
    def _execution_batch(events: Sequence[Event], start: int) -> list[Event]:
        batch: list[Event] = []
        size = 0
        for event in events[start:]:
            if event.kind != "execution" or len(batch) >= MAX_BATCH_ITEMS:
                break
            if batch and size + event.size > MAX_BATCH_BYTES:
                break
            batch.append(event)
            size += event.size
        return batch

    def _send_one(self, event: Event) -> None:
        try:
            self._send_event(event)
        except Rejected as rejection:
            # The server will never accept this event; keeping it would block
            # every later one, so it is dropped and reported.
            self._note_rejection(f"{event.kind} event: {rejection.message}")
        self.acknowledge([event.seq])

    def _send_event(self, event: Event) -> None:
        if event.kind == "run":
            answer = self._retry(lambda: self.client.create_run(event.body))
            self.stats.run_id = str(answer["run_id"])
            self.stats.report_url = answer.get("report_url")
        elif event.kind == "cases":
            self._retry(lambda: self.client.put_cases(self._run_id(), event.body))
        elif event.kind == "finish":
            self._retry(lambda: self.client.finish_run(self._run_id(), event.body))

    def _note_rejection(self, message: str) -> None:
        if len(self.stats.rejected_messages) < 20:
            self.stats.rejected_messages.append(message[:300])

    def _send_executions(self, batch: list[Event]) -> None:
        try:
            answer = self._retry(
                lambda: self.client.post_executions(
                    self._run_id(), [e.raw or encode_body(e.body) for e in batch]
                )
            )
        except Rejected as rejection:
            if rejection.status == 413 and len(batch) > 1:
                # Too large for this server's limits: send each half on its own.
                middle = len(batch) // 2
                self._send_executions(batch[:middle])
                self._send_executions(batch[middle:])
                return
            self.stats.rejected += len(batch)
            self._note_rejection(f"batch of {len(batch)} executions: {rejection.message}")
            self.acknowledge([e.seq for e in batch])
            return
        self.stats.accepted += int(answer.get("accepted", 0))
        self.stats.duplicate += int(answer.get("duplicate", 0))
        self.stats.rejected += int(answer.get("rejected", 0))
        for item in answer.get("rejected_items", [])[:20]:
            self._note_rejection(str(item.get("message", "")))
        # Rejected items are acknowledged too: the server will never accept
        # them, and the summary reports them.
        self.acknowledge([e.seq for e in batch])

    def _run_id(self) -> str:
        if self.stats.run_id is None:
            raise GiveUp("no run: the run's start event is missing")
        return self.stats.run_id

    def _retry(self, send: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        delay = BACKOFF_START
        while True:
            self._wait_until(self._not_before, honour=True)
            try:
                answer = send()
            except DeliveryError as error:
                self.stats.last_error = error
                if error.status in FATAL_STATUSES:
                    self.stats.fatal = error
                    raise GiveUp(error.message) from None
                if not error.retryable:
                    raise Rejected(error.message, status=error.status) from None
                self._failures += 1
                if error.retry_after is not None:
                    self._not_before = time.monotonic() + error.retry_after
                if self._failures >= self._max_failures:
                    self._give_up()
                    raise GiveUp(error.message) from None
                if error.retry_after is None:
                    backoff = delay * random.uniform(0.5, 1.5)  # noqa: S311
                    self._wait_until(time.monotonic() + backoff, honour=False)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            self._failures = 0
            return answer

    @property
    def _max_failures(self) -> int:
        return CLOSING_MAX_FAILURES if self.closing else MAX_FAILURES

    def _give_up(self) -> None:
        self.stats.gave_up = True
        self.gave_up_closing = self.closing

    def _wait_until(self, moment: float, *, honour: bool) -> None:
        """Sleep until moment, or until the flush deadline, whichever comes first.

        A wait the server asked for (``honour``) is kept in full; our own
        backoff is cut to CLOSING_BACKOFF_MAX once the session is ending.
        Raise GiveUp when the deadline cannot be met.
        """
        started = time.monotonic()
        while True:
            target = moment
            if self.closing and not honour:
                target = min(target, started + CLOSING_BACKOFF_MAX)
            remaining = target - time.monotonic()
            if remaining <= 0:
                return
            deadline = self._deadline()
            if deadline is not None and target > deadline:
                self._give_up()
                raise GiveUp("the flush deadline passes before the server accepts requests")
            self._sleep(remaining)
