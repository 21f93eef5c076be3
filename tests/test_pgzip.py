"""Parallel gzip: one standard member, byte-exact round trip, whatever the piece boundaries."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from agent import pgzip


def _strict_gunzip(data: bytes) -> bytes:
    """Decode exactly one gzip member; anything after it (a second member) is an error here."""
    d = zlib.decompressobj(31)
    out = d.decompress(data) + d.flush()
    assert d.eof and d.unused_data == b"", "not a single gzip member"
    return out


CASES = {
    "empty": [],
    "one-small": [b"lifeline_target_up 1\n"],
    "many-pieces": [os.urandom(50) + b"x" * 3000 for _ in range(400)],  # ~1.2 MB over 10 KB pieces
    "text": [f'lifeline_icmp_rtt_seconds_bucket{{target="t{i}",le="0.0001"}} {i}\n'.encode() for i in range(20000)],
}


@pytest.mark.parametrize("backend", ["isal", "zlib"])
@pytest.mark.parametrize("workers", [0, 2], ids=["inline", "pool"])
@pytest.mark.parametrize("name", list(CASES))
def test_round_trip_as_one_member(name, workers, backend, monkeypatch):
    if backend == "zlib":  # the fallback when the isal package is not installed
        monkeypatch.setattr(pgzip, "_zlib", zlib)
    else:
        assert pgzip._zlib.__name__ == "isal.isal_zlib", "isal not installed: pip install isal"
    chunks = CASES[name]
    pool = ThreadPoolExecutor(workers) if workers else None
    try:
        body = pgzip.compress(chunks, pool, piece=10_000, in_flight=2)
    finally:
        if pool:
            pool.shutdown()
    plain = b"".join(chunks)
    assert _strict_gunzip(body) == plain
    assert gzip.decompress(body) == plain


def test_the_gzip_tool_accepts_it(tmp_path):
    tool = shutil.which("gzip")
    if tool is None:
        raise AssertionError("gzip not found: apt-get install -y gzip")
    chunks = CASES["text"]
    path = tmp_path / "metrics.gz"
    path.write_bytes(pgzip.compress(chunks, None, piece=100_000))
    out = subprocess.run([tool, "-dc", str(path)], capture_output=True, timeout=30, check=True).stdout
    assert out == b"".join(chunks)
