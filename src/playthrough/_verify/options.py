"""What a verification run checks: one :class:`VerifyOptions`, for the engine and the CLI."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

__all__ = ["VerifyOptions"]


@attrs.frozen(kw_only=True)
class VerifyOptions:
    """The options of ``engine.admin.verify()`` and ``playthrough verify``.

    - ``sample``: check this many states, drawn with ``random.Random(seed)``
      from those the range touches or snapshots (None: every state);
    - ``start``, ``end``: compare snapshots at positions in ``[start, end]`` and
      states touched by events in ``(start, end]`` (rebuilding still starts from
      blank at 0; None: from the start, to the head);
    - ``time_budget``: seconds; then stop cleanly and list what was left;
    - ``strict_sync``: coupled snapshots out of sync fail the run (by default a
      warning: they cost a rewind on load, not a wrong result);
    - ``apps``: modules defining the domain; with them (and a store at ``url``,
      by default the store's, that another process can open) the second replay
      runs in a subprocess with another ``PYTHONHASHSEED``; ``subprocess_replay``
      forces that on (True) or off (False);
    - ``determinism=False``: only the snapshot (and sync) checks.

    A bad range or sample is a ``ValueError`` when the run starts (the range
    is checked against the log's head).
    """

    sample: int | None = None
    seed: int = 0
    start: int | None = None
    end: int | None = None
    time_budget: float | None = None
    strict_sync: bool = False
    apps: Sequence[str] = ()
    url: str | None = None
    subprocess_replay: bool | None = None
    determinism: bool = True
