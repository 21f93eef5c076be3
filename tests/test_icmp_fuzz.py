"""Hostile bytes into the ICMP reader: it never raises and accepts only the exact reply it waits for."""

from __future__ import annotations

import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from probes.icmp.engine import IcmpEngine, _FamilySocket

IP_HEADER = b"\x45" + bytes(19)  # what a raw IPv4 socket puts in front of the ICMP message


class _FakeSocket:
    """Delivers queued datagrams, then reports 'would block' like a drained socket."""

    def __init__(self, packets):
        self.packets = list(packets)

    def recvmsg(self, bufsize, ancsize):
        if not self.packets:
            raise BlockingIOError
        data, source = self.packets.pop(0)
        return data[:bufsize], [], 0, (source, 0)


class _Waiting:
    """Stands in for a cycle: records what the reader settles."""

    def __init__(self):
        self.replies, self.errors, self.settled = [], [], 0

    def reply(self, index, recv_ns):
        self.replies.append(index)

    def settle(self):
        self.settled += 1


def _reader(packets):
    engine = IcmpEngine(mode="raw")
    fam = _FamilySocket(socket.AF_INET, _FakeSocket(packets), True, engine)
    waiting = _Waiting()
    fam.pending[("127.0.0.5", 7)] = (waiting, 0)
    return engine, fam, waiting


@settings(max_examples=500, deadline=1000)
@given(packets=st.lists(st.tuples(st.binary(max_size=120), st.sampled_from(["127.0.0.5", "127.0.0.6"])),
                        max_size=8),
       prefix=st.sampled_from([b"", IP_HEADER, b"\x4f" + bytes(59)]))
def test_reader_never_crashes_and_never_accepts_garbage(packets, prefix):
    engine, fam, waiting = _reader([(prefix + data, src) for data, src in packets])
    fam.on_readable()
    # Random bytes essentially never carry the engine's random 8-byte cookie, and a random
    # ICMP error essentially never quotes our identifier: nothing may be settled.
    assert waiting.replies == [] and waiting.settled == 0
    assert ("127.0.0.5", 7) in fam.pending
    assert sum(engine.ignored.values()) == len(packets)


def test_reader_accepts_exactly_the_right_reply():
    """The control for the property above: a well-formed reply for the pending echo is accepted once."""
    engine, fam, waiting = _reader([])
    reply = bytes([0]) + fam.packet(7)[1:]  # echo reply: same identifier, sequence and payload
    fam.sock = _FakeSocket([(IP_HEADER + reply, "127.0.0.6"),       # right packet, wrong source
                            (IP_HEADER + reply[:12], "127.0.0.5"),  # cookie cut short
                            (IP_HEADER + reply, "127.0.0.5"),       # the one
                            (IP_HEADER + reply, "127.0.0.5")])      # its duplicate
    fam.on_readable()
    assert waiting.replies == [0]
    assert engine.ignored["unmatched"] == 2 and engine.ignored["foreign"] == 1
