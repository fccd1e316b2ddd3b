"""Verification: do the stored snapshots agree with the log, and does it replay deterministically?

``engine.admin.verify()`` and ``playthrough verify`` call :func:`verify`, which needs
only a store, a reconstitutor and a sync check. The pieces:

- ``options``: :class:`VerifyOptions`, what a run checks;
- ``checks``: :func:`verify`, the orchestration of the checks;
- ``report``: :class:`VerifyReport` and its parts, as text, JSON and JUnit XML;
- ``rebuild``: states rebuilt from the log from blank, snapshots ignored;
- ``bisect``: :func:`locate_divergence`, the event a snapshot's fields come from;
- ``subprocess_replay``: the determinism check's second replay in another process.
"""

from .bisect import Divergence, locate_divergence
from .checks import verify
from .options import VerifyOptions
from .rebuild import Progress, ReplayFailed, digest, rebuild, replay_encodings
from .report import (
    DeterminismCheck,
    DeterminismMismatch,
    FieldDiff,
    LinkCheck,
    LinkMismatch,
    SnapshotCheck,
    SnapshotMismatch,
    VerifyInterrupted,
    VerifyReport,
    field_diffs,
)

__all__ = [
    "DeterminismCheck",
    "DeterminismMismatch",
    "Divergence",
    "FieldDiff",
    "LinkCheck",
    "LinkMismatch",
    "Progress",
    "ReplayFailed",
    "SnapshotCheck",
    "SnapshotMismatch",
    "VerifyInterrupted",
    "VerifyOptions",
    "VerifyReport",
    "digest",
    "field_diffs",
    "locate_divergence",
    "rebuild",
    "replay_encodings",
    "verify",
]
