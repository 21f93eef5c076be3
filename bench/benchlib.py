"""Small pieces the benchmark scripts share."""

from __future__ import annotations

import asyncio
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass


def wait_until(check: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``check`` until it is truthy (connection errors count as "not yet"); exit with a message on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, for the results' headings."""
    try:
        with open("/proc/cpuinfo") as fh:
            return next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "unknown CPU")
    except OSError:
        return "unknown CPU"


def machine() -> str:
    """The machine line of a results heading: CPUs, kernel, Python and the load before the run."""
    return (f"{os.cpu_count()} CPUs ({cpu_model()}), Linux {platform.release()}, Python {platform.python_version()}, "
            f"load average before the run {os.getloadavg()[0]:.2f}")


def steal_seconds() -> float:
    """CPU time the hypervisor gave to other guests, summed over this VM's CPUs (/proc/stat, proc(5)).

    A rule evaluation or a scrape that took 3x its usual time while steal rose was slowed by
    the host, not by what it ran; the scale-out bench prints it beside its maxima."""
    with open("/proc/stat") as fh:
        fields = fh.readline().split()  # "cpu user nice system idle iowait irq softirq steal ..."
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


@dataclass
class ProbeCounts:
    """Outcomes of blackbox_exporter /probe requests: probe_success 1, 0, or no answer at all."""

    ok: int = 0
    failed: int = 0
    errors: int = 0


async def _response_body(reader: asyncio.StreamReader) -> bytes:
    """The body of one HTTP/1.1 response (Content-Length or chunked: Go chunks bodies over 2 KiB)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    if length:
        return await reader.readexactly(int(length.group(1)))
    if not re.search(rb"(?i)\r\ntransfer-encoding: *chunked", head):
        raise OSError("response without length")
    body = bytearray()
    for _ in range(10000):
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers from Go's server
            return bytes(body)
        body += (await reader.readexactly(size + 2))[:-2]
    raise OSError("too many chunks")


async def drive_probes(port: int, query: Callable[[int], str], rate: float, duration: float, concurrency: int,
                       counts: ProbeCounts, start_delay: float = 0.0) -> None:
    """Open-loop GET /probe?<query(i)> at ``rate``/s for ``duration`` s over at most ``concurrency``
    keep-alive connections to blackbox_exporter on 127.0.0.1:``port``, counting into ``counts``."""
    total = int(rate * duration)
    loop = asyncio.get_running_loop()
    start = loop.time() + start_delay
    deadline = start + duration + 10
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        reader = writer = None
        while next_index < total and loop.time() < deadline:
            i = next_index
            next_index += 1
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(f"GET /probe?{query(i)} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                body = await asyncio.wait_for(_response_body(reader), 15)
                if b"\nprobe_success 1" in body:
                    counts.ok += 1
                else:
                    counts.failed += 1
            except (OSError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                counts.errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
