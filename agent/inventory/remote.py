"""A running agent's configuration, read from its /api/v1/status/config, as a comparable ``Config``.

What comes back is the redacted rendering, so a configuration read from a file
is compared in the same rendered form (``canonical``): per-probe blocks are
compared as their rendering, and a changed secret cannot be seen, by design.
Credentials for basic auth go in the URL (``https://user:password@host:9123``);
they are sent as an Authorization header, never as part of the request.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from agent.config import Config, ReloadSettings
from agent.inventory.render import API_PATH, config_data
from common.model import Target, Tier

MAX_BODY = 256 * 1024 * 1024


class RemoteError(Exception):
    """The agent could not be asked, or its answer is not a configuration."""


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def shown(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, f"{parts.username}:***@{host}", parts.path, parts.query, ""))


def fetch(url: str, ca_file: str | None = None, timeout: float = 60.0) -> dict[str, Any]:
    """``data`` of the agent's /api/v1/status/config."""
    parts = urllib.parse.urlsplit(url)
    headers = {"Accept": "application/json"}
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    endpoint = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + API_PATH, "", ""))
    context = ssl.create_default_context(cafile=ca_file) if parts.scheme == "https" else None
    try:
        request = urllib.request.Request(endpoint, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            body = resp.read(MAX_BODY + 1)
    except urllib.error.HTTPError as exc:
        hint = " (basic auth: put the user and password in the URL)" if exc.code == 401 else ""
        raise RemoteError(f"{endpoint}: HTTP {exc.code}{hint}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RemoteError(f"{endpoint}: {reason}") from None
    try:
        doc = json.loads(body)
        data = doc["data"]
        if doc.get("status") != "success" or not isinstance(data.get("config", {}).get("targets"), list):
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RemoteError(f"{endpoint}: not a Lifeline configuration answer (is it a Lifeline agent?)") from None
    return data


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def from_data(data: dict[str, Any], source: str = "") -> Config:
    """A Config rebuilt from the rendered form; blocks and tier parts as canonical JSON text."""
    tiers = {}
    for name, t in data.get("tiers", {}).items():
        rest = {k: v for k, v in t.items() if k not in ("priority", "interval", "timeout", "severity")}
        tiers[name] = Tier(name=name, priority=int(t["priority"]), interval=float(t["interval"]),
                           timeout=float(t["timeout"]), severity=str(t["severity"]), parts={"*": _canon(rest)})
    targets = tuple(
        Target(name=t["name"], address=t["address"], tier=t["tier"], category=t["category"], site=t["site"],
               labels=tuple(sorted((str(k), str(v)) for k, v in t.get("labels", {}).items())),
               probes=tuple(t.get("probes", ())),
               settings=tuple(sorted((k, _canon(v)) for k, v in t.get("settings", {}).items())), source=source)
        for t in data["targets"])
    r = data.get("reload", {})
    reload = ReloadSettings(max_p0_drop_ratio=float(r.get("max_p0_drop_ratio", 0.25)),
                            p0_drop_intended=bool(r.get("p0_drop_intended", False)))
    return Config(tiers=tiers, targets=targets, reload=reload)


def canonical(config: Config) -> Config:
    """A loaded Config in the same rendered form as one read from an agent."""
    return from_data(config_data(config))
