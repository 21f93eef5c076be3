"""The requests of one poll: which OIDs go in a PDU, and over which transport (v1/v2c or v3)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from probes.base import REASON_MALFORMED
from probes.snmp.codec import (ERROR_NO_SUCH_NAME, ERROR_TOO_BIG, GET, GETBULK, GETNEXT, NO_SUCH_OBJECT,
                               VERSION_CODES, Response, varbind_null)
from probes.snmp.config import SnmpSettings
from probes.snmp.transport import REASON_AGENT_ERROR, SnmpFailure, SnmpUdpClient


class Batch:
    """OIDs of one request: content octets (for matching replies) and, built once, the varbinds."""

    __slots__ = ("contents", "_encoded")

    def __init__(self, contents: Sequence[bytes]) -> None:
        self.contents = tuple(contents)
        self._encoded: bytes | None = None

    @property
    def encoded(self) -> bytes:
        if self._encoded is None:
            self._encoded = b"".join(varbind_null(c) for c in self.contents)
        return self._encoded


class Caller:
    """Requests for one target in one poll, hiding the v1/v2c vs v3 transport.

    ``v3`` returns the (lazily built) v3 client, so agents without v3 targets never load its crypto.
    """

    __slots__ = ("udp", "v3", "settings", "host", "timeout", "retries", "v1", "_community", "_code")

    def __init__(self, udp: SnmpUdpClient, v3: Callable[[], Any], settings: SnmpSettings, host: str,
                 timeout: float, retries: int) -> None:
        self.udp, self.v3, self.settings, self.host = udp, v3, settings, host
        self.timeout, self.retries = timeout, retries
        self.v1 = settings.version == "1"
        self._code = VERSION_CODES.get(settings.version)
        self._community = settings.community.value.encode() if settings.community else b""

    async def call(self, pdu_type: int, batch: Batch, max_repetitions: int = 0) -> Response:
        s = self.settings
        if self._code is None:
            return await self.v3().request(s, self.host, s.port, pdu_type, batch, self.timeout, self.retries,
                                           max_repetitions)
        if pdu_type == GETBULK and self.v1:
            pdu_type, max_repetitions = GETNEXT, 0
        return await self.udp.request(self.host, s.port, self._code, self._community, pdu_type,
                                      batch.encoded, self.timeout, self.retries, 0, max_repetitions)

    async def get(self, batch: Batch) -> list[object]:
        """Values in request order; splits on tooBig, and maps v1 noSuchName to NO_SUCH_OBJECT."""
        response = await self.call(GET, batch)
        status, index = response.error_status, response.error_index
        n = len(batch.contents)
        if status == ERROR_TOO_BIG and n > 1:
            half = n // 2
            return (await self.get(Batch(batch.contents[:half]))) + \
                (await self.get(Batch(batch.contents[half:])))
        if status == ERROR_NO_SUCH_NAME and 1 <= index <= n:
            rest = batch.contents[:index - 1] + batch.contents[index:]
            values = await self.get(Batch(rest)) if rest else []
            values.insert(index - 1, NO_SUCH_OBJECT)
            return values
        if status:
            raise SnmpFailure(REASON_AGENT_ERROR, f"error-status {status} at index {index}")
        varbinds = response.varbinds
        if len(varbinds) != n or any(oid != want for (oid, _), want in zip(varbinds, batch.contents)):
            raise SnmpFailure(REASON_MALFORMED, "reply varbinds do not match the request")
        return [value for _, value in varbinds]
