"""SNMPv3 requests through pysnmp's v3arch engine (USM authentication and privacy).

We drive ``pysnmp.entity.rfc3413.cmdgen`` directly with ready ``ObjectName``
varbinds: the hlapi wrappers would push every request through the MIB
resolver (pysnmp 7.1's ``lookupMib=False`` only affects responses). Known
engine costs, measured with pysnmp 7.1 on a 2-core machine, shape the rest:

* the engine keeps a row for every transport target it ever saw and never
  frees it (+19 MB per 1,000 new targets), so when most of the targets it
  knows have gone unused we build a fresh engine and close the old one once
  its requests drain;
* devices sharing a user name with different keys confuse the engine's user
  cache during discovery, so a device's first exchange (engine-id discovery)
  is serialised per user name.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from probes.base import REASON_AUTH, REASON_INTERNAL, REASON_MALFORMED, REASON_TIMEOUT
from probes.snmp.codec import (END_OF_MIB_VIEW, GET, GETBULK, GETNEXT, NO_SUCH_INSTANCE,
                               NO_SUCH_OBJECT, RESPONSE, Response, oid_arcs, oid_content)
from probes.snmp.config import AUTH_PROTOCOLS, PRIV_PROTOCOLS, SnmpSettings
from probes.snmp.transport import REASON_AGENT_ERROR, SnmpFailure

_AUTH_ERRORS = frozenset(("WrongDigest", "AuthenticationError", "AuthenticationFailure",
                          "UnknownUserName", "UnknownSecurityName", "UnsupportedSecurityLevel",
                          "DecryptionError", "NotInTimeWindow", "NoAuthentication", "UnknownEngineID",
                          "UnsupportedAuthProtocol", "UnsupportedPrivProtocol"))
_MALFORMED_ERRORS = frozenset(("ParseError", "DeserializationError", "InvalidMsg", "DataMismatch"))
STALE_AFTER = 3600.0  # a transport target unused this long counts as gone
REBUILD_SLACK = 64  # rebuild when known targets exceed twice the live ones plus this


@dataclass
class _Generation:
    engine: Any
    inflight: int = 0
    discovered: set[tuple[str, int, str]] = field(default_factory=set)
    seen: dict[tuple[Any, ...], float] = field(default_factory=dict)
    retired: bool = False


class V3Client:
    """All v3 requests of one probe; built lazily so v1/v2c-only agents never load pysnmp."""

    def __init__(self, engine_factory: Any = None, clock: Any = time.monotonic) -> None:
        from pysnmp.hlapi.v3arch import asyncio as hl
        from pysnmp.entity.rfc3413 import cmdgen
        from pysnmp.hlapi.v3arch.asyncio.lcd import CommandGeneratorLcdConfigurator
        from pyasn1.type import univ
        from pysnmp.proto import rfc1902, rfc1905

        self._hl, self._cmdgen, self._rfc1902, self._univ = hl, cmdgen, rfc1902, univ
        self._exceptions = {rfc1905.NoSuchObject: NO_SUCH_OBJECT, rfc1905.NoSuchInstance: NO_SUCH_INSTANCE,
                            rfc1905.EndOfMibView: END_OF_MIB_VIEW}
        self._lcd = CommandGeneratorLcdConfigurator()
        self._engine_factory = engine_factory or hl.SnmpEngine
        self._clock = clock
        self._gen: _Generation | None = None
        self._users: dict[SnmpSettings, Any] = {}
        self._transports: dict[tuple[str, int, float, int], Any] = {}
        self._names: dict[bytes, Any] = {}
        self._discovery: dict[str, asyncio.Lock] = {}
        self._null = rfc1902.Null("")
        self.rebuilds = 0

    async def close(self) -> None:
        if self._gen is not None:
            self._gen.engine.close_dispatcher()
            self._gen = None

    def _generation(self) -> _Generation:
        gen = self._gen
        if gen is None:
            gen = self._gen = _Generation(self._engine_factory())
        return gen

    def _maybe_rebuild(self, gen: _Generation, now: float) -> None:
        live = sum(1 for t in gen.seen.values() if now - t < STALE_AFTER)
        if len(gen.seen) > 2 * live + REBUILD_SLACK:
            gen.retired = True
            self._gen = None
            self.rebuilds += 1
            if gen.inflight == 0:
                gen.engine.close_dispatcher()

    def _user(self, s: SnmpSettings) -> Any:
        user = self._users.get(s)
        if user is None:
            hl = self._hl
            kwargs: dict[str, Any] = {}
            if s.auth_key is not None:
                kwargs.update(authKey=s.auth_key.value,
                              authProtocol=getattr(hl, AUTH_PROTOCOLS[s.auth_protocol or "SHA"]))
            if s.priv_key is not None:
                kwargs.update(privKey=s.priv_key.value,
                              privProtocol=getattr(hl, PRIV_PROTOCOLS[s.priv_protocol or "AES"]))
            user = self._users[s] = hl.UsmUserData(s.user, **kwargs)
        return user

    async def _transport(self, host: str, port: int, timeout: float, retries: int) -> Any:
        key = (host, port, timeout, retries)
        target = self._transports.get(key)
        if target is None:
            cls = self._hl.Udp6TransportTarget if ":" in host else self._hl.UdpTransportTarget
            target = await cls.create((host, port), timeout=timeout, retries=retries)
            self._transports[key] = target
        return target

    def _varbinds(self, contents: tuple[bytes, ...]) -> list[tuple[Any, Any]]:
        out = []
        for c in contents:
            name = self._names.get(c)
            if name is None:
                name = self._names[c] = self._rfc1902.ObjectName(oid_arcs(c))
            out.append((name, self._null))
        return out

    async def request(self, s: SnmpSettings, host: str, port: int, pdu_type: int,
                      contents: tuple[bytes, ...], timeout: float, retries: int,
                      max_repetitions: int = 0) -> Response:
        """Same contract as the v1/v2c client: a Response, or SnmpFailure with a reason."""
        transport = await self._transport(host, port, timeout, retries)
        user = self._user(s)
        gen = self._generation()
        now = self._clock()
        key = (host, port, s)
        if key not in gen.seen:
            gen.seen[key] = now
            self._maybe_rebuild(gen, now)
            gen = self._generation()
        gen.seen[key] = now
        first = (host, port, s.user or "") not in gen.discovered
        gen.inflight += 1
        try:
            if first:
                async with self._discovery.setdefault(s.user or "", asyncio.Lock()):
                    response = await self._send(gen, user, transport, pdu_type, contents, max_repetitions)
                gen.discovered.add((host, port, s.user or ""))
            else:
                response = await self._send(gen, user, transport, pdu_type, contents, max_repetitions)
        finally:
            gen.inflight -= 1
            if gen.retired and gen.inflight == 0:
                gen.engine.close_dispatcher()
        return response

    async def _send(self, gen: _Generation, user: Any, transport: Any, pdu_type: int,
                    contents: tuple[bytes, ...], max_repetitions: int) -> Response:
        engine = gen.engine
        addr_name, _ = self._lcd.configure(engine, user, transport, b"")
        future = asyncio.get_running_loop().create_future()

        def done(_engine: Any, _handle: Any, indication: Any, status: Any, index: Any, varbinds: Any,
                 _ctx: Any) -> None:
            if not future.done():
                future.set_result((indication, status, index, varbinds))

        varbinds = self._varbinds(contents)
        if pdu_type == GETBULK:
            self._cmdgen.BulkCommandGenerator().send_varbinds(
                engine, addr_name, None, b"", 0, max_repetitions, varbinds, done)
        elif pdu_type == GETNEXT:
            self._cmdgen.NextCommandGenerator().send_varbinds(engine, addr_name, None, b"", varbinds, done)
        elif pdu_type == GET:
            self._cmdgen.GetCommandGenerator().send_varbinds(engine, addr_name, None, b"", varbinds, done)
        else:
            raise SnmpFailure(REASON_INTERNAL, f"unsupported PDU type {pdu_type:#x}")
        indication, status, index, raw = await future
        if indication:
            name = type(indication).__name__
            if name == "RequestTimedOut":
                raise SnmpFailure(REASON_TIMEOUT, "no reply")
            if name in _AUTH_ERRORS:
                raise SnmpFailure(REASON_AUTH, str(indication))
            if name in _MALFORMED_ERRORS:
                raise SnmpFailure(REASON_MALFORMED, str(indication))
            raise SnmpFailure(REASON_AGENT_ERROR, str(indication))
        return Response(3, b"", RESPONSE, 0, int(status), int(index),
                        [(oid_content(tuple(n)), self._value(v)) for n, v in raw])

    def _value(self, v: Any) -> object:
        marker = self._exceptions.get(type(v))
        if marker is not None:
            return marker
        if isinstance(v, self._univ.ObjectIdentifier):
            return tuple(v)
        if isinstance(v, self._rfc1902.Null):
            return None
        if hasattr(v, "asOctets"):  # OctetString, IpAddress, Opaque
            return v.asOctets()
        return int(v)
