"""The write-ahead spool: every event is on disk before it is sent.

Each reporting process writes ``<spool_dir>/<client_run_id>/<process>.jsonl``
(one JSON event per line, numbered) and, beside it, ``<process>.acks`` (the
numbers the server acknowledged). When the process ends, acknowledged
events are removed: a fully delivered spool file disappears, and a
partly delivered one keeps only what is still undelivered.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPOOL_VERSION = 1
EVENTS_SUFFIX = ".jsonl"
ACKS_SUFFIX = ".acks"


class SpoolError(Exception):
    """A spool file that cannot be read: the message names the file and line."""


@dataclass(frozen=True)
class Event:
    """One spooled event: a run start, a batch of cases, an execution or a run finish."""

    seq: int
    kind: str
    body: dict[str, Any]
    # Bytes of the event's spool line, which approximates its size on the wire.
    size: int = 0
    # The body as JSON, encoded once for the spool and reused for the request.
    raw: bytes = b""


@dataclass(frozen=True)
class SpoolHeader:
    url: str
    project: str
    client_run_id: str


def encode_body(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def encode(event: Event) -> bytes:
    raw = event.raw or encode_body(event.body)
    head = f'{{"seq":{event.seq},"kind":"{event.kind}","body":'.encode()
    return head + raw + b"}\n"


class SpoolWriter:
    """Append events for one process; the sender thread records acknowledgements."""

    def __init__(self, directory: Path, process: str, header: SpoolHeader) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{process}{EVENTS_SUFFIX}"
        self.acks_path = directory / f"{process}{ACKS_SUFFIX}"
        self._events = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        self._acks = open(self.acks_path, "ab", buffering=0)  # noqa: SIM115
        self._seq = 0
        self._lock = threading.Lock()
        self._acked: set[int] = set()
        head = {
            "seq": 0,
            "kind": "header",
            "body": {
                "version": SPOOL_VERSION,
                "url": header.url,
                "project": header.project,
                "client_run_id": header.client_run_id,
            },
        }
        self._events.write(json.dumps(head).encode() + b"\n")

    def append(self, kind: str, body: dict[str, Any]) -> Event:
        """Write the event with one unbuffered write, so a crash after it loses nothing."""
        raw = encode_body(body)
        with self._lock:
            self._seq += 1
            event = Event(self._seq, kind, body, 0, raw)
            line = encode(event)
            self._events.write(line)
        return Event(event.seq, kind, body, len(line), raw)

    def acknowledge(self, seqs: list[int]) -> None:
        if not seqs:
            return
        with self._lock:
            self._acked.update(seqs)
            self._acks.write(("\n".join(map(str, seqs)) + "\n").encode())

    @property
    def pending(self) -> int:
        with self._lock:
            return self._seq - len(self._acked)

    def close(self) -> int:
        """Close the files and drop acknowledged events; return the executions left."""
        with self._lock:
            self._events.close()
            self._acks.close()
            delivered = self._seq == len(self._acked)
        if delivered:
            # Everything was acknowledged: nothing to read back or rewrite.
            remove(self.path)
            return 0
        return compact(self.path)


def spool_files(paths: list[Path]) -> Iterator[Path]:
    """Yield the event files under each path, a directory or a file."""
    for path in paths:
        if path.is_dir():
            yield from sorted(path.rglob(f"*{EVENTS_SUFFIX}"))
        elif path.exists():
            yield path
        else:
            raise SpoolError(f"spool path {str(path)!r} does not exist")


def read_acks(path: Path) -> set[int]:
    acks_path = path.with_suffix(ACKS_SUFFIX)
    if not acks_path.exists():
        return set()
    acked = set()
    for line in acks_path.read_text().splitlines():
        # A crash mid-write can leave a partial last line; it acknowledges nothing.
        with contextlib.suppress(ValueError):
            acked.add(int(line))
    return acked


def read(path: Path) -> tuple[SpoolHeader, list[Event]]:
    """Return the header and the events of a spool file, acknowledged or not."""
    events: list[Event] = []
    header: SpoolHeader | None = None
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            try:
                line = json.loads(raw)
            except ValueError:
                if not raw.endswith(b"\n"):
                    break  # a partial last line from a crash: the event never completed
                raise SpoolError(f"{path}:{number}: not a JSON line") from None
            if line.get("kind") == "header":
                body = line["body"]
                if body.get("version") != SPOOL_VERSION:
                    raise SpoolError(
                        f"{path}: spool version {body.get('version')!r} is not supported; "
                        f"this plugin reads version {SPOOL_VERSION}"
                    )
                header = SpoolHeader(body["url"], body["project"], body["client_run_id"])
                continue
            events.append(Event(int(line["seq"]), str(line["kind"]), line["body"], len(raw)))
    if header is None:
        raise SpoolError(f"{path}: no header line; this is not a TestoQA spool file")
    return header, events


def remove(path: Path) -> None:
    """Delete a spool file, its acknowledgements, and its run's folder once empty."""
    path.unlink(missing_ok=True)
    path.with_suffix(ACKS_SUFFIX).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # only succeeds when the run's directory is empty


def compact(path: Path) -> int:
    """Rewrite path without acknowledged events, or delete it when nothing is left.

    Return how many executions remain undelivered in it.
    """
    header, events = read(path)
    acked = read_acks(path)
    remaining = [e for e in events if e.seq not in acked]
    acks_path = path.with_suffix(ACKS_SUFFIX)
    undelivered = [e for e in remaining if e.kind != "run"]
    if not undelivered:
        remove(path)
        return 0
    # The run event stays with undelivered events: an upload needs it to
    # find or create the run again.
    keep = [e for e in events if e.kind == "run"][:1] + undelivered
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as file:
        head = {
            "seq": 0,
            "kind": "header",
            "body": {
                "version": SPOOL_VERSION,
                "url": header.url,
                "project": header.project,
                "client_run_id": header.client_run_id,
            },
        }
        file.write(json.dumps(head).encode() + b"\n")
        for event in keep:
            file.write(encode(event))
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    acks_path.unlink(missing_ok=True)
    return sum(e.kind == "execution" for e in undelivered)
