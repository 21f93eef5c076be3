"""Pieces of Linux's socket error queue (IP_RECVERR) that the ICMP engine and the SNMP transport share."""

from __future__ import annotations

import socket
import struct
import sys

# struct sock_extended_err (linux/errqueue.h): errno, origin, type, code, pad, info, data.
EXTENDED_ERR = struct.Struct("=IBBBxII")


def offender_address(raw: bytes) -> str:
    """The address in the ``sockaddr`` that follows ``sock_extended_err`` (who sent the ICMP error), or ""."""
    family = int.from_bytes(raw[:2], sys.byteorder) if len(raw) >= 2 else 0  # sa_family_t: host order
    if len(raw) >= 8 and family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8])
    if len(raw) >= 24 and family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[8:24])
    return ""
