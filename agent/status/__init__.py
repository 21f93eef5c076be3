"""The status page (/) and /status.json: what a duty engineer needs when there is no Grafana."""

from agent.status.page import page
from agent.status.snapshot import StatusBoard

__all__ = ["StatusBoard", "page"]
