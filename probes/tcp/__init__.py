"""TCP connect, optionally TLS, optionally a line sent and a banner matched."""

from probes.tcp.kind import TcpKind

__all__ = ["TcpKind"]
