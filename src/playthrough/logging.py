"""Logging helpers for applications: :class:`JSONFormatter`.

The ``playthrough`` logger puts every fact of a record in its attributes
(``extra``: ``event_count``, ``first_position``, ``duration_ms``...). This
formatter writes one JSON object per record with the standard fields
(``time``, ``level``, ``logger``, ``message``), those facts, and the
traceback under ``exception`` when there is one::

    import logging
    from playthrough.logging import JSONFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter())
    logging.getLogger("playthrough").addHandler(handler)
    logging.getLogger("playthrough").setLevel(logging.INFO)
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

__all__ = ["JSONFormatter"]

# The attributes every LogRecord has: anything else came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JSONFormatter(logging.Formatter):
    """One JSON object per record: time (UTC ISO 8601), level, logger, message, the
    record's ``extra`` facts, and ``exception`` (the formatted traceback) if any.
    Values JSON cannot hold are written as their ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_") and name not in out:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)
