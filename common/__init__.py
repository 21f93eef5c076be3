"""Helpers below both the agent and the probe kinds: errors, config model, YAML and validation, timers, text format.

Nothing here imports ``agent`` or ``probes``; both import from here.
"""
