"""The background sender: one thread per pytest process, so hooks only enqueue events."""

from __future__ import annotations

import queue
import threading
import time

from pytest_testoqa import spool
from pytest_testoqa.client import ApiClient
from pytest_testoqa.delivery import MAX_BATCH_BYTES, MAX_BATCH_ITEMS, Delivery, GiveUp
from pytest_testoqa.spool import Event, SpoolWriter

# A partial batch waits at most this long for more events before it is sent.
BATCH_INTERVAL = 1.0
_STOP = Event(-1, "stop", {})


class Sender:
    """Batch spooled events on a daemon thread and deliver them until closed."""

    def __init__(self, client: ApiClient, writer: SpoolWriter) -> None:
        self._writer = writer
        self._queue: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._deadline: float | None = None
        # Set when the session ends, to cut short a backoff wait in progress.
        self._wake = threading.Event()
        self.delivery = Delivery(
            client, writer.acknowledge, deadline=lambda: self._deadline, sleep=self._sleep
        )
        self._thread = threading.Thread(target=self._run, name="testoqa-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, event: Event) -> None:
        self._queue.put(event)

    def close(self, timeout: float) -> bool:
        """Flush what is queued within timeout seconds; return whether the thread finished."""
        self._deadline = time.monotonic() + timeout
        self.delivery.begin_closing()
        self._wake.set()
        self._queue.put(_STOP)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _sleep(self, seconds: float) -> bool:
        woken = self._wake.wait(seconds)
        if woken:
            self._wake.clear()
        return woken

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._next_batch()
            if not batch or self.delivery.stopped:
                continue
            try:
                self.delivery.deliver(batch)
            except GiveUp:
                continue  # the events stay in the spool
        self._retry_from_spool()

    def _next_batch(self) -> tuple[list[Event], bool]:
        """Collect events until the batch is full, the interval passes, or the stop arrives."""
        batch: list[Event] = []
        size = 0
        first_at: float | None = None
        while len(batch) < MAX_BATCH_ITEMS and size < MAX_BATCH_BYTES:
            if first_at is None:
                wait = None
            else:
                wait = max(0.0, BATCH_INTERVAL - (time.monotonic() - first_at))
            try:
                event = self._queue.get(timeout=wait)
            except queue.Empty:
                break
            if event is _STOP:
                return batch, True
            batch.append(event)
            size += event.size
            if first_at is None:
                first_at = time.monotonic()
            if event.kind != "execution":
                break  # runs, cases and finishes go out at once, in order
        return batch, False

    def _retry_from_spool(self) -> None:
        """After the sender gave up mid-run, try once more at the end with what is on disk."""
        stats = self.delivery.stats
        if stats.fatal is not None or not stats.gave_up or self.delivery.gave_up_closing:
            return
        self.delivery.reopen()
        _, events = spool.read(self._writer.path)
        acked = spool.read_acks(self._writer.path)
        pending = [e for e in events if e.seq not in acked or e.kind == "run"]
        try:
            self.delivery.deliver(pending)
        except GiveUp:
            return
