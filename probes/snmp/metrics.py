"""SNMP's families, formatted per target once per poll: status, uptime, reboots, interfaces."""

from __future__ import annotations

from common.textfmt import Family, escape, fmt
from probes.base import ProbeResult
from probes.snmp.result import SnmpResult
from probes.snmp.state import SnmpState

# (IfRow attribute, family) for the per-interface families.
IF_FAMILIES = (
    ("oper", Family("lifeline_snmp_if_oper_status", "gauge",
                    "ifOperStatus (1 up, 2 down, ... as in IF-MIB). Labelled like lifeline_target_up, and by interface.")),
    ("admin", Family("lifeline_snmp_if_admin_status", "gauge", "ifAdminStatus (1 up, 2 down, 3 testing).")),
    ("in_octets", Family("lifeline_snmp_if_in_octets_total", "counter",
                         "Octets received (ifHCInOctets, or ifInOctets where the device has no 64-bit counter).")),
    ("out_octets", Family("lifeline_snmp_if_out_octets_total", "counter",
                          "Octets sent (ifHCOutOctets, or ifOutOctets where the device has no 64-bit counter).")),
    ("in_ucast_pkts", Family("lifeline_snmp_if_in_unicast_packets_total", "counter", "Unicast packets received.")),
    ("out_ucast_pkts", Family("lifeline_snmp_if_out_unicast_packets_total", "counter", "Unicast packets sent.")),
    ("in_errors", Family("lifeline_snmp_if_in_errors_total", "counter", "ifInErrors.")),
    ("out_errors", Family("lifeline_snmp_if_out_errors_total", "counter", "ifOutErrors.")),
    ("in_discards", Family("lifeline_snmp_if_in_discards_total", "counter", "ifInDiscards.")),
    ("out_discards", Family("lifeline_snmp_if_out_discards_total", "counter", "ifOutDiscards.")),
    ("speed", Family("lifeline_snmp_if_speed_bits_per_second", "gauge", "ifHighSpeed x 10^6, or ifSpeed.")),
)
FAMILIES = (
    Family("lifeline_snmp_up", "gauge", "1 if the last SNMP poll of the target succeeded."),
    Family("lifeline_snmp_poll_duration_seconds", "gauge", "Duration of the last SNMP poll."),
    Family("lifeline_snmp_reboots_total", "counter",
           "Times sysUpTime went backwards (device or agent restarted) since Lifeline started. "
           "Labelled like lifeline_target_up."),
    Family("lifeline_snmp_sys_uptime_seconds", "gauge", "sysUpTime of the SNMP agent."),
    Family("lifeline_snmp_info", "gauge", "sysName and sysDescr; value is always 1."),
    Family("lifeline_snmp_oid_value", "gauge", "Extra scalar OIDs configured for the target, by name."),
    *(family for _, family in IF_FAMILIES),
    Family("lifeline_snmp_if_info", "gauge", "Interface names and alias; value is always 1."),
)
_NONE = (b"",) * len(FAMILIES)


def record(state: SnmpState, result: ProbeResult) -> None:
    if isinstance(result, SnmpResult) and result.rebooted:
        state.reboots += 1
    state.last = result  # type: ignore[assignment]  # a crashed cycle's generic result counts as a failed poll


def fragments(state: SnmpState, key: bytes) -> list[bytes] | tuple[bytes, ...]:
    r = state.last
    if r is None:
        return _NONE  # not polled yet: no series rather than zeros
    frags = [b"lifeline_snmp_up{%s} %d\n" % (key, r.ok),
             b"lifeline_snmp_poll_duration_seconds{%s} %s\n" % (key, fmt(r.duration).encode()),
             # The two families the alert rules read carry category and site (state.where): the
             # rules' join on lifeline_target_info read 30,000 info series every 30 s, ~200 ms apiece,
             # with no SNMP target at all (bench/bench_scaleout.py).
             b"lifeline_snmp_reboots_total{%s%s} %d\n" % (key, state.where, state.reboots)]
    if not (r.ok and isinstance(r, SnmpResult)):
        return frags + [b""] * (len(FAMILIES) - 3)  # a failed poll's values would look current
    frags.append(b"" if r.sys_uptime is None else
                 b"lifeline_snmp_sys_uptime_seconds{%s} %s\n" % (key, fmt(r.sys_uptime).encode()))
    frags.append(b'lifeline_snmp_info{%s,sysname="%s",sysdescr="%s"} 1\n'
                 % (key, escape(r.sys_name).encode(), escape(r.sys_descr).encode()))
    frags.append(b"".join([b'lifeline_snmp_oid_value{%s,name="%s"} %s\n' % (key, n.encode(), fmt(v).encode())
                           for n, v in r.oids.items()]))
    if_keys, info_keys = state.if_keys, state.info_keys
    if len(if_keys) > 4 * len(r.interfaces) + 16:  # interfaces come and go; their keys must not pile up
        if_keys.clear()
        info_keys.clear()
    rows = []
    for row in r.interfaces:
        keys = if_keys.get((row.ifindex, row.ifname))
        if keys is None:
            ifname = escape(row.ifname).encode()
            keys = if_keys[(row.ifindex, row.ifname)] = (
                b'%s,ifindex="%d",ifname="%s"' % (key, row.ifindex, ifname),
                b'%s%s,ifindex="%d",ifname="%s"' % (key, state.where, row.ifindex, ifname))
        rows.append((keys, row))
    for attr, family in IF_FAMILIES:
        name = family.name.encode()
        which = 1 if attr == "oper" else 0
        frags.append(b"".join([b"%s{%s} %d\n" % (name, keys[which], v) for keys, row in rows
                               if (v := getattr(row, attr)) is not None]))
    lines = []
    for row in r.interfaces:
        full = (row.ifindex, row.ifname, row.ifalias, row.ifdescr)
        line = info_keys.get(full)
        if line is None:
            line = info_keys[full] = (
                b'lifeline_snmp_if_info{%s,ifindex="%d",ifname="%s",ifalias="%s",ifdescr="%s"} 1\n'
                % (key, row.ifindex, escape(row.ifname).encode(), escape(row.ifalias).encode(),
                   escape(row.ifdescr).encode()))
        lines.append(line)
    frags.append(b"".join(lines))
    return frags
