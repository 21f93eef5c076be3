"""SIP OPTIONS ping over UDP, TCP or TLS: is the SBC or hotline answering, and with which status."""

from probes.sip.kind import SipKind

__all__ = ["SipKind"]
