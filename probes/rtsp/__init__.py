"""RTSP: OPTIONS and DESCRIBE against a camera or media server, with Basic and Digest auth."""

from probes.rtsp.kind import RtspKind

__all__ = ["RtspKind"]
