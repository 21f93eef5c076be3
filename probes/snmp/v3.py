"""SNMPv3 requests with the user-based security model, on the shared v1/v2c socket.

Until now v3 went through pysnmp's v3arch engine: about 33 ms of CPU per poll
(its pyasn1 codec and MIB machinery, ~50x our v2c poll), a row per transport
target that was never freed, and a first poll that waited a timeout during
engine discovery. Here a request is our own BER codec (``v3msg``), one HMAC
and one cipher call (``usm``), on the transport's socket and timers, so ICMP
errors (``refused``) and id matching work as for v2c.

Per device we remember its engine (id, boots, time and when we learnt them,
RFC 3414 2.3) and the user's keys localised to it. First contact is one
discovery request (RFC 3414 4: an empty noAuthNoPriv GET, answered at once
with a usmStatsUnknownEngineIDs report carrying engine id, boots and time)
and then the real request. Reports map to reasons: unknown engine id or not
in time window (an agent restart raises boots and resets time) update the
engine and resend once; wrong digest, unknown user, unsupported security
level and decryption errors are ``auth``.

Net-SNMP drops a message it cannot decrypt without any report, so a wrong
privacy key looks like a dead agent. When an encrypted request to an engine
that just answered discovery times out and these credentials never worked
there, one empty authNoPriv GET tells the two apart: an authenticated answer
proves user and auth key right, so the privacy key (or protocol) is wrong.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from probes.base import REASON_AUTH, REASON_MALFORMED, REASON_TIMEOUT
from probes.snmp import usm, v3msg
from probes.snmp.caller import Batch
from probes.snmp.codec import (GET, GETBULK, GETNEXT, RESPONSE, Malformed, Response, encode_pdu, oid_arcs,
                               oid_content)
from probes.snmp.config import SnmpSettings
from probes.snmp.transport import REASON_AGENT_ERROR, SnmpFailure, SnmpUdpClient
from probes.snmp.v3msg import FLAG_AUTH, FLAG_PRIV, FLAG_REPORTABLE, V3Message

REPORT = 0xA8
TIME_WINDOW = 150  # seconds, RFC 3414 3.2.7
MAX_RESENDS = 2  # per request, after reports that update what we know of the engine
STALE_AFTER = 3600.0  # a device engine unused this long is forgotten (removed targets)
_USM_STATS = (1, 3, 6, 1, 6, 3, 15, 1, 1)
_NOT_IN_TIME_WINDOW = oid_content(_USM_STATS + (2, 0))
_UNKNOWN_ENGINE_ID = oid_content(_USM_STATS + (4, 0))
# Reports that end a request: (reason, what to tell the operator). Same reasons as with pysnmp.
_FATAL_REPORTS = {
    oid_content(_USM_STATS + (1, 0)): (REASON_AUTH, "the agent does not accept this security level for the user "
                                                    "(usmStatsUnsupportedSecLevels)"),
    oid_content(_USM_STATS + (3, 0)): (REASON_AUTH, "unknown user name (usmStatsUnknownUserNames)"),
    oid_content(_USM_STATS + (5, 0)): (REASON_AUTH, "wrong authentication key or protocol (usmStatsWrongDigests)"),
    oid_content(_USM_STATS + (6, 0)): (REASON_AUTH, "wrong privacy key or protocol (usmStatsDecryptionErrors)"),
    oid_content((1, 3, 6, 1, 6, 3, 11, 2, 1, 2, 0)): (REASON_MALFORMED, "the agent found our message invalid "
                                                                         "(snmpInvalidMsgs)"),
}


@dataclass(frozen=True, slots=True)
class _Creds:
    """What identifies a user's keys; Secrets keep the pass phrases out of any repr."""

    user: str
    auth: str | None
    auth_key: Any
    priv: str | None
    priv_key: Any


class _User:
    """A user's protocols and pass-phrase hashes (Ku, the 1 MB hash, done once)."""

    __slots__ = ("creds", "name", "auth", "priv", "flags", "_ku_auth", "_ku_priv")

    def __init__(self, s: SnmpSettings) -> None:
        self.creds = _Creds(s.user or "", s.auth_protocol, s.auth_key, s.priv_protocol, s.priv_key)
        self.name = (s.user or "").encode()
        self.auth = usm.AUTH[s.auth_protocol or "SHA"] if s.auth_key is not None else None
        self.priv = usm.PRIV[s.priv_protocol or "AES"] if s.priv_key is not None and self.auth else None
        self.flags = FLAG_REPORTABLE | (FLAG_AUTH if self.auth else 0) | (FLAG_PRIV if self.priv else 0)
        self._ku_auth = usm.hash_passphrase(s.auth_key.value.encode(), self.auth.hash) if self.auth else b""
        self._ku_priv = usm.hash_passphrase(s.priv_key.value.encode(), self.auth.hash) \
            if self.priv and self.auth else b""

    def __repr__(self) -> str:
        return f"_User({self.creds.user!r}, <redacted>)"

    def localize(self, engine_id: bytes) -> usm.LocalKeys | None:
        if self.auth is None:
            return None
        auth_key = usm.localize(self._ku_auth, engine_id, self.auth.hash)
        priv_key = usm.localized_priv_key(self._ku_priv, engine_id, self.auth, self.priv) if self.priv else b""
        return usm.LocalKeys(self.auth, auth_key, self.priv, priv_key)


@dataclass(eq=False)
class _Engine:
    """One device's SNMP engine as we know it (RFC 3414 2.3), and the keys localised to it."""

    engine_id: bytes | None = None
    boots: int = 0
    engine_time: int = 0  # the latest time received at these boots ...
    at: float = 0.0  # ... and our clock then
    used: float = 0.0
    keys: dict[_Creds, usm.LocalKeys | None] = field(default_factory=dict, repr=False)
    verified: set[_Creds] = field(default_factory=set, repr=False)  # got an authenticated reply
    lock: asyncio.Lock | None = None

    def learn(self, engine_id: bytes, boots: int, engine_time: int, now: float) -> None:
        if engine_id != self.engine_id:
            self.keys.clear()
            self.verified.clear()
        self.engine_id, self.boots, self.engine_time, self.at = engine_id, boots, engine_time, now

    def clock(self, now: float) -> tuple[int, int]:
        return self.boots, min(self.engine_time + int(now - self.at), v3msg.MAX_INT31)


class V3Client:
    """All SNMPv3 requests of one probe, over its ``SnmpUdpClient``."""

    def __init__(self, udp: SnmpUdpClient, clock: Any = time.monotonic) -> None:
        self._udp = udp
        self._clock = clock
        self._users: dict[_Creds, _User] = {}
        self._engines: dict[tuple[str, int], _Engine] = {}
        self._pruned = clock()
        # RFC 3826 3.1.2.1 / RFC 3414 8.1.1.1: a salt never reused with the same key; counters
        # from a random start, as Net-SNMP does.
        self._salt = random.getrandbits(64)

    async def close(self) -> None:
        """Nothing of its own to close: the socket belongs to the transport."""

    def _user(self, s: SnmpSettings) -> _User:
        creds = _Creds(s.user or "", s.auth_protocol, s.auth_key, s.priv_protocol, s.priv_key)
        user = self._users.get(creds)
        if user is None:
            user = self._users[creds] = _User(s)
        return user

    def _engine(self, host: str, port: int, now: float) -> _Engine:
        key = (host, port)
        engine = self._engines.get(key)
        if engine is None:
            if now - self._pruned > 600:
                self._pruned = now
                for k in [k for k, e in self._engines.items() if now - e.used > STALE_AFTER]:
                    del self._engines[k]
            engine = self._engines[key] = _Engine()
        engine.used = now
        return engine

    def _keys(self, engine: _Engine, user: _User) -> usm.LocalKeys | None:
        try:
            return engine.keys[user.creds]
        except KeyError:
            assert engine.engine_id is not None
            keys = engine.keys[user.creds] = user.localize(engine.engine_id)
            return keys

    async def request(self, s: SnmpSettings, host: str, port: int, pdu_type: int, batch: Batch,
                      timeout: float, retries: int, max_repetitions: int = 0) -> Response:
        """Same contract as the v1/v2c client: a Response, or SnmpFailure with a reason."""
        if pdu_type not in (GET, GETNEXT, GETBULK):
            raise ValueError(f"unsupported PDU type {pdu_type:#x}")
        user = self._user(s)
        engine = self._engine(host, port, self._clock())
        for _ in range(MAX_RESENDS + 1):
            if engine.engine_id is None:
                await self._discover(engine, host, port, timeout, retries)
            keys = self._keys(engine, user)
            try:
                message, response = await self._send(engine, user, keys, host, port, pdu_type, batch.encoded,
                                                      max_repetitions, timeout, retries, user.flags)
            except SnmpFailure as exc:
                if exc.reason == REASON_TIMEOUT and user.priv is not None and user.creds not in engine.verified:
                    await self._diagnose_privacy(engine, user, keys, host, port, timeout)
                raise
            if response.pdu_type == RESPONSE:
                engine.verified.add(user.creds)
                return response
            self._report(engine, message, response)
        raise SnmpFailure(REASON_AUTH, "still outside the agent's time window after resynchronising "
                                       "(usmStatsNotInTimeWindows)")

    # --- the exchanges ---------------------------------------------------------

    async def _discover(self, engine: _Engine, host: str, port: int, timeout: float, retries: int) -> None:
        if engine.lock is None:
            engine.lock = asyncio.Lock()
        async with engine.lock:  # one discovery per device, whatever polls wait on it
            if engine.engine_id is not None:
                return

            def build(rid: int) -> bytes:
                return v3msg.encode(rid, FLAG_REPORTABLE, b"", 0, 0, b"",
                                    v3msg.scoped_pdu(b"", encode_pdu(GET, rid, b"")))

            def accept(message: V3Message) -> tuple[V3Message, Response]:
                if message.flags & FLAG_PRIV:
                    raise Malformed("encrypted reply to discovery")
                response = v3msg.parse_scoped(message.data, message.payload_start, message.payload_end)
                if response.pdu_type != REPORT or len(message.engine_id) < 5:
                    raise Malformed("discovery reply is not a report with an engine id")
                return message, response

            message, _ = await self._udp.exchange_v3(host, port, build, accept, timeout, retries)
            engine.learn(message.engine_id, message.boots, message.engine_time, self._clock())

    async def _send(self, engine: _Engine, user: _User, keys: usm.LocalKeys | None, host: str, port: int,
                    pdu_type: int, varbinds: bytes, max_repetitions: int, timeout: float, retries: int,
                    flags: int) -> tuple[V3Message, Response]:
        engine_id = engine.engine_id
        assert engine_id is not None
        boots, engine_time = engine.clock(self._clock())

        def build(rid: int) -> bytes:
            scoped = v3msg.scoped_pdu(engine_id, encode_pdu(pdu_type, rid, varbinds, 0, max_repetitions))
            if flags & FLAG_PRIV:
                assert keys is not None
                self._salt += 1
                ciphertext, params = usm.encrypt(keys, scoped, boots, engine_time, self._salt)
                return v3msg.encode(rid, flags, engine_id, boots, engine_time, user.name, v3msg.octets(ciphertext),
                                    keys, params)
            return v3msg.encode(rid, flags, engine_id, boots, engine_time, user.name, scoped, keys)

        def accept(message: V3Message) -> tuple[V3Message, Response]:
            return message, self._open(engine, keys, flags, message)

        return await self._udp.exchange_v3(host, port, build, accept, timeout, retries)

    def _open(self, engine: _Engine, keys: usm.LocalKeys | None, flags: int, message: V3Message) -> Response:
        """Check and decrypt a reply (RFC 3414 3.2); Malformed drops it."""
        level = message.flags & (FLAG_AUTH | FLAG_PRIV)
        if level & FLAG_AUTH:
            if keys is None or message.engine_id != engine.engine_id:
                raise Malformed("authenticated reply from an engine we did not ask")
            if message.mac_end - message.mac_start != keys.auth.mac_len or \
                    not usm.verify(keys, message.unsigned(), message.mac):
                raise Malformed("reply fails its digest check")
        if level & FLAG_PRIV:
            assert keys is not None and keys.priv is not None
            try:
                plain = usm.decrypt(keys, message.data[message.payload_start:message.payload_end], message.boots,
                                    message.engine_time, message.priv_params)
            except ValueError as exc:
                raise Malformed(f"cannot decrypt the reply: {exc}") from None
            response = v3msg.parse_scoped(plain)
        else:
            response = v3msg.parse_scoped(message.data, message.payload_start, message.payload_end)
        if response.pdu_type == REPORT:
            return response  # reports may come at a lower level (unknown user, wrong digest ...)
        if response.pdu_type != RESPONSE or response.request_id != message.msg_id:
            raise Malformed("reply is not the response to this request")
        if level != flags & (FLAG_AUTH | FLAG_PRIV):
            raise Malformed("reply at another security level than the request")
        if level & FLAG_AUTH:
            # RFC 3414 3.2.7 b: a reply from an older boot, or well behind the time we know, is a replay.
            if message.boots < engine.boots or message.boots == v3msg.MAX_INT31 or (
                    message.boots == engine.boots and message.engine_time < engine.engine_time - TIME_WINDOW):
                raise Malformed("reply outside the time window")
            if message.boots > engine.boots or message.engine_time > engine.engine_time:
                engine.boots, engine.engine_time, engine.at = message.boots, message.engine_time, self._clock()
        return response

    def _report(self, engine: _Engine, message: V3Message, report: Response) -> None:
        """Act on a report: learn the engine's new boots, time or id (then resend), or fail."""
        oid = report.varbinds[0][0] if report.varbinds else b""
        if oid == _NOT_IN_TIME_WINDOW or oid == _UNKNOWN_ENGINE_ID:
            if len(message.engine_id) < 5:
                engine.engine_id = None  # rediscover
            else:
                engine.learn(message.engine_id, message.boots, message.engine_time, self._clock())
            return
        reason, detail = _FATAL_REPORTS.get(oid, (REASON_AGENT_ERROR, ""))
        raise SnmpFailure(reason, detail or f"report {'.'.join(map(str, _arcs(oid)))}")

    async def _diagnose_privacy(self, engine: _Engine, user: _User, keys: usm.LocalKeys | None, host: str,
                                port: int, timeout: float) -> None:
        """After an encrypted request timed out: raise ``auth`` if an authNoPriv request is answered."""
        try:
            message, response = await self._send(engine, user, keys, host, port, GET, b"", 0, timeout, 0,
                                                 FLAG_REPORTABLE | FLAG_AUTH)
        except SnmpFailure:
            return  # silent to this too: the timeout stands
        if response.pdu_type == RESPONSE or message.flags & FLAG_AUTH:
            raise SnmpFailure(REASON_AUTH, "the agent answers authenticated requests without privacy but drops "
                                           "encrypted ones: wrong privacy key or protocol")
        if response.varbinds and response.varbinds[0][0] in _FATAL_REPORTS:
            self._report(engine, message, response)


def _arcs(oid: bytes) -> tuple[int, ...]:
    try:
        return oid_arcs(oid)
    except Malformed:
        return ()
