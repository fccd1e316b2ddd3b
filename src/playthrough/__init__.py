"""playthrough: event sourcing where every read of a state is a playthrough of one ordered log.

Layout: the public names are re-exported here; everything else is private.

- ``_model``: State, SingletonState, Event, ``state_id`` and the type registry
- ``_slots``: the only writer of the private ``_pt_*`` slots
- ``_serialization``: JSON through cattrs (no pickle), blank states, decoding stored rows
- ``_repository``: StateRepository, the identity map
- ``_playing``: EventPlayer, the one way events are played (live, reconstitution, replay)
- ``_replay``: the full replay (``Engine.replay()``)
- ``_reconstitution``: StateReconstitutor, which plans loads over the state-event links
- ``_snapshots``: SnapshotCoordinator, aligned snapshot sets and the sync check
- ``_lifecycle``: completed states (refused by fire, recorded at commit)
- ``_scheduling``: scheduled events (``Engine.schedule``/``cancel``/``run_due``)
- ``_personal``: personal fields, their encryption per data subject, forgetting
- ``_clock``: the engine's clock (``SystemClock``; ``testing.ManualClock``)
- ``_log``: reading the log (``engine.events``/``event``/``causes``/``effects``), metadata
- ``_query``: states by value (``engine.find``/``count``/``info``) over the stored values
- ``_followers``: ``Projection`` and ``engine.run``, followers that survive restarts
- ``_engine``: Engine, which ties them together
- ``_versions``: class versions, aliases and fingerprints, checked at class definition
- ``_upcasting``: reading old rows: upcaster chains, strict decoding, unusable snapshots
- ``_verify``: ``engine.verify()`` / ``playthrough verify``: snapshots vs the log, determinism
- ``_stores``: the store contract and its SQLite and PostgreSQL implementations
"""

import importlib
import typing
import warnings

from ._archive import ArchiveReport
from ._asdict import asdict
from ._connect import connect
from ._engine import Engine
from ._errors import (
    ArchivedRangeError,
    CancelRefused,
    CommitOutcomeUnknown,
    ConcurrencyError,
    ConfigurationError,
    CorruptionError,
    DecodeError,
    DefinitionError,
    DuplicateEvent,
    EventRejected,
    FollowerBusy,
    FollowerFailed,
    HandledElsewhere,
    HandlerFailed,
    NotFoundError,
    PlaythroughError,
    QueryError,
    ReconstitutionError,
    ScheduleNotFound,
    SchemaVersionError,
    StaleForgetError,
    StateCompleted,
    StateMutationError,
    StateTypeError,
    StoreError,
    TransferError,
    UnknownKeysError,
    UnknownTypeError,
)
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
from ._verify import VerifyReport

__all__ = [
    "ArchiveReport",
    "ArchivedRangeError",
    "CommitOutcomeUnknown",
    "CommitResult",
    "Completion",
    "FollowerTransaction",
    "StateInfo",
    "QueryError",
    "Projection",
    "NotFoundError",
    "FollowerStatus",
    "FollowerReport",
    "FollowerFailed",
    "FollowerBusy",
    "CancelRefused",
    "ConcurrencyError",
    "ConfigurationError",
    "CorruptionError",
    "DecodeError",
    "DefinitionError",
    "DuplicateEvent",
    "Engine",
    "Event",
    "FORGOTTEN",
    "EventRejected",
    "HandledElsewhere",
    "HandlerFailed",
    "OutOfSync",
    "Personal",
    "Plan",
    "PlaythroughError",
    "ReconstitutionError",
    "ReplayReport",
    "ScheduleNotFound",
    "ScheduledEvent",
    "SchemaVersionError",
    "SingletonState",
    "StaleForgetError",
    "SubjectForgotten",
    "State",
    "StateCompleted",
    "StateKey",
    "StateMutationError",
    "StateTypeError",
    "StoreError",
    "SyncReport",
    "TransferError",
    "TransferReport",
    "UnknownKeysError",
    "UnknownTypeError",
    "VerifyReport",
    "asdict",
    "connect",
    "event_random",
    "is_replaying",
    "now",
    "state_id",
]

# Shown as ``playthrough.Engine`` etc. in reprs and tracebacks, not as private modules.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type):
        _value.__module__ = "playthrough"
del _name, _value

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
        "use Engine.snapshot() and Engine.snapshot_sync()",
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


def __getattr__(name: str) -> object:
    found = _DEPRECATED.get(name)
    if found is None:
        raise AttributeError(f"module 'playthrough' has no attribute {name!r}")
    module, attribute, advice = found
    warnings.warn(
        f"playthrough.{name} is no longer part of the public API ({advice}); "
        "it will be removed in a future release",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(f"playthrough.{module}"), attribute)
