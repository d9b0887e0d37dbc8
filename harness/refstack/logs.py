"""Logging for reference-stack processes: ``LOG_FORMAT=json|text`` and ``LOG_LEVEL`` (seed §2.6).

Why JSON lines: the harness (and a Kubernetes log pipeline) parses them; each line carries the component
and instance id so merged logs stay attributable. Logs go to stderr, which the supervisor captures.
Nothing here ever formats a secret: callers log redacted DSNs only.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
           "error": logging.ERROR}


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str, instance: str) -> None:
        super().__init__()
        self.component = component
        self.instance = instance

    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "component": self.component,
            "id": self.instance,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, separators=(",", ":"))


def setup(log_format: str, level: str, component: str, instance: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(component, instance))
    else:
        handler.setFormatter(logging.Formatter(
            f"[%(asctime)s] [%(levelname)s] [{component} {instance}] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    for noisy in ("aiohttp.access", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
