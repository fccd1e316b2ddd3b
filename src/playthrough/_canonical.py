"""Canonical JSON: the one text of a value that is stored, hashed and compared.

Keys sorted, no spaces, UTF-8 kept as is, no NaN. No other playthrough module
is imported: the stores write it (scrubbed snapshots) as the core does.
"""

from __future__ import annotations

import json
from typing import Any

_encoder = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def dumps(value: Any) -> str:
    """``value`` as canonical JSON text."""
    return _encoder.encode(value)
