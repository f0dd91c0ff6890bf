"""``serve --workers N``: N server processes sharing one port through SO_REUSEPORT.

The parent reserves the port, starts each worker as ``python -m
ingest_server.workers`` with its settings as one JSON line on standard
input, and waits until every worker reports that it listens. The kernel
spreads new connections over the workers' listening sockets. The parent
forwards SIGTERM and SIGINT to the workers. When one worker exits on its
own, the parent stops the others and exits with status 1, so a service
manager (systemd, Kubernetes) restarts the whole server rather than it
running on fewer processes unnoticed. A worker stops when the parent's end
of its standard input closes, so no worker outlives a killed parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ingest_server.config import Settings
from ingest_server.logs import configure_logging, server_logger
from ingest_server.services.container import Services
from ingest_server.web.app import create_app

READY_LINE = b"ready\n"
STARTUP_TIMEOUT = 60.0
# aiohttp waits up to 60 s for open requests by default; live streams end at once.
STOP_TIMEOUT = 70.0


class WorkersError(Exception):
    """The worker processes failed to start or to keep serving; the message gives the cause."""


@dataclasses.dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process

    @property
    def running(self) -> bool:
        return self.process.returncode is None


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Check that no other server listens on host:port and hold the port for the workers.

    Port 0 picks a free port. The returned socket is bound with SO_REUSEPORT
    but never listens, so it receives no connections; it only keeps the port
    while the workers start.
    """
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    # Without SO_REUSEPORT this bind fails if anything listens on the port,
    # even another server started with SO_REUSEPORT by the same user.
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
        port = int(probe.getsockname()[1])
    reservation = socket.socket(family, socket.SOCK_STREAM)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        reservation.bind((*address[:1], port, *address[2:]))
    except OSError:
        reservation.close()
        raise
    return reservation, port


async def serve_workers(
    settings: Settings, *, log_level: str, log_format: str, on_listening: Callable[[int], None]
) -> int:
    """Run settings.workers worker processes until a stop signal; return the exit status.

    on_listening receives the port once every worker listens. Raises
    WorkersError when a worker fails to start.
    """
    if not sys.platform.startswith("linux"):
        raise WorkersError(
            f"--workers {settings.workers} needs Linux, whose SO_REUSEPORT spreads "
            "connections over the processes: use --workers 1 on this system"
        )
    try:
        reservation, port = reserve_port(settings.host, settings.port)
    except OSError as exc:
        raise WorkersError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
        ) from exc
    config = {
        "settings": dataclasses.asdict(dataclasses.replace(settings, port=port)),
        "log_level": log_level,
        "log_format": log_format,
    }
    stop = asyncio.Event()
    workers: list[_Worker] = []
    with reservation, _stop_signals(stop):
        try:
            for index in range(settings.workers):
                workers.append(await _spawn(index, config))
            if not await _until_ready(workers, stop):
                return 0
            on_listening(port)
            return await _supervise(workers, stop)
        finally:
            await _stop_all(workers)


@contextlib.contextmanager
def _stop_signals(stop: asyncio.Event) -> Any:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _spawn(index: int, config: dict[str, Any]) -> _Worker:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ingest_server.workers",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    # The settings go through a pipe rather than the command line, where
    # any user of the machine could read the database password.
    process.stdin.write(json.dumps({**config, "index": index}).encode() + b"\n")
    await process.stdin.drain()
    server_logger.info("started worker %d as pid %d", index, process.pid)
    return _Worker(index, process)


async def _wait_ready(worker: _Worker) -> None:
    assert worker.process.stdout is not None
    line = await worker.process.stdout.readline()
    if line == READY_LINE:
        return
    code = await worker.process.wait()
    raise WorkersError(
        f"worker {worker.index} (pid {worker.process.pid}) exited with status {code} "
        "before listening; its log lines above say why"
    )


async def _until_ready(workers: list[_Worker], stop: asyncio.Event) -> bool:
    """Wait until every worker listens; return False if a stop signal came first."""
    ready = asyncio.ensure_future(asyncio.gather(*(_wait_ready(w) for w in workers)))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait(
            (ready, stopping), timeout=STARTUP_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopping.cancel()
    if ready.done():
        ready.result()
        return True
    ready.cancel()
    if stop.is_set():
        return False
    raise WorkersError(f"the workers did not start listening within {STARTUP_TIMEOUT:.0f} s")


async def _supervise(workers: list[_Worker], stop: asyncio.Event) -> int:
    exits = {asyncio.ensure_future(worker.process.wait()): worker for worker in workers}
    stopping = asyncio.ensure_future(stop.wait())
    done, pending = await asyncio.wait((*exits, stopping), return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if stopping in done:
        server_logger.info("stopping %d workers", len(workers))
        return 0
    exited = exits[next(task for task in done if task is not stopping)]
    server_logger.error(
        "worker %d (pid %d) exited with status %s; stopping the other workers",
        exited.index,
        exited.process.pid,
        exited.process.returncode,
    )
    return 1


async def _stop_all(workers: list[_Worker]) -> None:
    running = [worker for worker in workers if worker.running]
    for worker in running:
        with contextlib.suppress(ProcessLookupError):
            worker.process.send_signal(signal.SIGTERM)
    waiting = asyncio.gather(*(worker.process.wait() for worker in running))
    try:
        await asyncio.wait_for(waiting, STOP_TIMEOUT)
    except TimeoutError:
        for worker in workers:
            if worker.running:
                server_logger.error("worker %d did not stop in time; killing it", worker.index)
                worker.process.kill()
        await asyncio.gather(*(worker.process.wait() for worker in workers))


# --- the worker process ----------------------------------------------------------------


async def _serve(settings: Settings, index: int) -> int:
    services = Services(settings)
    runner = web.AppRunner(create_app(services), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        server_logger.error(
            "worker %d cannot listen on %s:%d: %s", index, settings.host, settings.port, exc
        )
        return 1
    sys.stdout.buffer.write(READY_LINE)
    sys.stdout.flush()
    # The parent reads nothing after the ready line, so anything printed later
    # goes to standard error instead of filling the pipe until writes block.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    await _wait_for_stop()
    server_logger.info("worker %d stopping", index)
    await runner.cleanup()
    return 0


async def _wait_for_stop() -> None:
    """Wait for SIGTERM or SIGINT, or for the parent's end of standard input to close."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def on_input() -> None:
        # The parent writes nothing more, so readable means end of file.
        loop.remove_reader(sys.stdin.fileno())
        server_logger.warning("the parent process is gone")
        stop.set()

    loop.add_reader(sys.stdin.fileno(), on_input)
    await stop.wait()


def main() -> int:
    """Run one worker with the settings the parent writes as a JSON line on standard input."""
    config = json.loads(sys.stdin.buffer.readline())
    configure_logging(config["log_level"], config["log_format"])
    settings = Settings(**config["settings"])
    return asyncio.run(_serve(settings, config["index"]))


if __name__ == "__main__":
    sys.exit(main())
