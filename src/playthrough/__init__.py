"""playthrough: event sourcing where every read of a state is a playthrough of one ordered log.

Layout: the public names are re-exported here, the errors are in ``playthrough.errors``,
the store interfaces for backend authors in ``playthrough.stores``; everything else is
private.

- ``_model``: State, SingletonState, Event, ``state_id`` and the type registry
- ``_slots``: the only writer of the private ``_pt_*`` slots
- ``_serialization``: JSON through cattrs (no pickle), blank states, decoding stored rows
- ``_repository``: StateRepository, the identity map
- ``_playing``: EventPlayer, the one way events are played (live, reconstitution, replay)
- ``_replay``: the full replay (``engine.admin.replay()``)
- ``_reconstitution``: StateReconstitutor, which plans loads over the state-event links
- ``_snapshots``: SnapshotCoordinator, aligned snapshot sets and the sync check
- ``_lifecycle``: completed states (refused by fire, recorded at commit)
- ``_scheduling``: scheduled events (``engine.scheduler.schedule``/``cancel``/``run_due``)
- ``_personal``: personal fields, their encryption per data subject, forgetting
- ``_clock``: the engine's clock (``SystemClock``; ``testing.ManualClock``)
- ``_log``: reading the log (``engine.log.events``/``event``/``causes``/``effects``), metadata
- ``_query``: states by value (``engine.states.find``/``count``/``info``) over the stored values
- ``_followers``: ``Projection`` and ``engine.followers.run``, followers that survive restarts
- ``_engine``: Engine, which ties them together
- ``_versions``: class versions, aliases and fingerprints, checked at class definition
- ``_upcasting``: reading old rows: upcaster chains, strict decoding, unusable snapshots
- ``_verify``: ``engine.admin.verify()`` / ``playthrough verify``: snapshots vs the log, determinism
- ``_stores``: the store contract and its SQLite and PostgreSQL implementations
"""

import importlib
import importlib.metadata
import typing
import warnings

from . import errors
from ._archive import ArchiveReport
from ._asdict import asdict
from ._connect import Connection, connect
from ._engine import Engine
from ._followers import FollowerReport, FollowerStatus, Projection
from ._handlers import CommitResult
from ._model import Event, SingletonState, State, StateKey, state_id
from ._personal import FORGOTTEN, Personal
from ._playing import event_random, is_replaying, now
from ._query import StateInfo
from ._reconstitution import Plan
from ._replay import ReplayReport
from ._scheduling import ScheduledEvent
from ._snapshots import OutOfSync, SyncReport
from ._stores import FollowerTransaction
from ._stores._base import Completion, SubjectForgotten
from ._transfer import TransferReport
from ._verify import VerifyOptions, VerifyReport

__all__ = [
    "FORGOTTEN",
    "ArchiveReport",
    "CommitResult",
    "Completion",
    "Connection",
    "Engine",
    "Event",
    "FollowerReport",
    "FollowerStatus",
    "FollowerTransaction",
    "OutOfSync",
    "Personal",
    "Plan",
    "Projection",
    "ReplayReport",
    "ScheduledEvent",
    "SingletonState",
    "State",
    "StateInfo",
    "StateKey",
    "SubjectForgotten",
    "SyncReport",
    "TransferReport",
    "VerifyOptions",
    "VerifyReport",
    "asdict",
    "connect",
    "event_random",
    "is_replaying",
    "now",
    "state_id",
]

#: The installed version (the released section of CHANGELOG.md it matches).
__version__: str = importlib.metadata.version("playthrough")

# Shown as ``playthrough.Engine`` etc. in reprs and tracebacks, not as private modules.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type):
        _value.__module__ = "playthrough"
del _name, _value

#: The release that removes the deprecated names below.
_REMOVED_IN = "0.3.0"

# Components that were public before the surface was trimmed: still importable from
# here, with a DeprecationWarning naming where they live now. (module, name, advice)
_DEPRECATED: dict[str, tuple[str, str, str]] = {
    "StateRepository": ("_repository", "StateRepository", "it is an internal component"),
    "StateReconstitutor": (
        "_reconstitution",
        "StateReconstitutor",
        "use Engine.load() and Engine.explain()",
    ),
    "StatePlan": ("_reconstitution", "StatePlan", "read it from Plan.states"),
    "SnapshotCoordinator": (
        "_snapshots",
        "SnapshotCoordinator",
        "use engine.admin.snapshot() and engine.admin.snapshot_sync()",
    ),
    "Replay": ("_playing", "EventPlayer", "it is an internal component (now EventPlayer)"),
    "Store": ("_stores", "Store", "open stores with playthrough.connect(url)"),
    "SQLiteStore": ("_stores", "SQLiteStore", "open stores with playthrough.connect(url)"),
    "open_store": ("_stores", "open_store", "open stores with playthrough.connect(url)"),
}


if typing.TYPE_CHECKING:  # the deprecated names, so code still using them type-checks meanwhile
    from ._playing import EventPlayer as Replay  # noqa: F401
    from ._reconstitution import StatePlan as StatePlan
    from ._reconstitution import StateReconstitutor as StateReconstitutor
    from ._repository import StateRepository as StateRepository
    from ._snapshots import SnapshotCoordinator as SnapshotCoordinator
    from ._stores import SQLiteStore as SQLiteStore
    from ._stores import Store as Store
    from ._stores import open_store as open_store
    from .errors import *  # noqa: F403 - the errors' old top-level names


def __getattr__(name: str) -> object:
    if name in errors.__all__:
        warnings.warn(
            f"playthrough.{name} moved to playthrough.errors.{name}; the old name will be "
            f"removed in {_REMOVED_IN}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(errors, name)
    found = _DEPRECATED.get(name)
    if found is None:
        raise AttributeError(f"module 'playthrough' has no attribute {name!r}")
    module, attribute, advice = found
    warnings.warn(
        f"playthrough.{name} is no longer part of the public API ({advice}); "
        f"it will be removed in {_REMOVED_IN}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(f"playthrough.{module}"), attribute)
