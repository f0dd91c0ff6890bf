"""A Server-Sent Events reader for tests of the live run updates."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

EVENT_TIMEOUT = 15.0


@dataclass(frozen=True)
class Event:
    """One event of a stream: its name and its JSON data."""

    name: str
    data: dict[str, Any]


class StreamClosed(Exception):
    """The server closed the stream before the next event."""


async def next_event(response: aiohttp.ClientResponse) -> Event:
    """Read the next event of an open stream; comments (keep-alive pings) are skipped."""
    name = "message"
    data: list[str] = []
    async with asyncio.timeout(EVENT_TIMEOUT):
        while True:
            raw = await response.content.readline()
            if not raw:
                raise StreamClosed("the server closed the event stream")
            line = raw.decode().rstrip("\r\n")
            if line == "" and data:
                return Event(name, json.loads("\n".join(data)))
            if line == "" or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


async def read_until_closed(response: aiohttp.ClientResponse) -> list[Event]:
    """Read every remaining event until the server closes the stream."""
    events = []
    while True:
        try:
            events.append(await next_event(response))
        except StreamClosed:
            return events
