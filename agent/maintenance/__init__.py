"""Maintenance windows: planned work during which a target's alerts are suppressed, not its probing.

``model`` parses the ``maintenance:`` section (one-off and recurring windows and
their scope), ``recurrence`` turns cron and RFC 5545 RRULE schedules into wall-clock
starts, ``calendar`` works out at render time which windows are active and exports
``lifeline_maintenance_active``, ``lifeline_target_suppressed``
and the ``lifeline_maintenance_window_*`` series, ``command`` is ``lifeline maintenance``.
"""
