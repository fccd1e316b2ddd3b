"""The ``playthrough`` command (click), one module per group of commands.

- ``_group``: the ``main`` group (``playthrough = "playthrough._cli:main"``);
- ``_shared``: the options every command takes, :func:`~._shared.open_engine`
  (the one way a command opens a store) and the progress bar;
- ``demo``: ``demo``;
- ``check``: ``verify`` and ``schema``;
- ``maintain``: ``snapshot`` and ``repair``;
- ``lifecycle``: ``handlers``, ``scheduled``, ``reschedule`` and ``scheduler``;
- ``transfer``: ``export``, ``import`` and ``archive``;
- ``read``: ``events``, ``states``, ``info`` and ``followers``;
- ``see``: ``explain``, ``graph``, ``history``, ``serve`` and ``follow``.

Output: text for a terminal, or with ``--format json`` (every command but
``serve``) one JSON object, or JSON Lines for a command whose output is a
stream (``events``, ``states``, ``followers``, ``scheduled``, ``reschedule``,
``scheduler``, ``handlers --forever``).
"""

from __future__ import annotations

from . import check, demo, lifecycle, maintain, read, see, transfer  # noqa: F401 - register commands
from ._group import main

__all__ = ["main"]
