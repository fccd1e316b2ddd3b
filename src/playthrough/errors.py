"""The errors playthrough raises on purpose; every one derives from ``PlaythroughError``.

Catch ``PlaythroughError`` for all of them, or the branch you mean::

    PlaythroughError
    ├── EventRejected                  validate refused an event
    │   └── StateCompleted             the event touches a completed state
    ├── ConcurrencyError               another writer got there first (retry)
    │   ├── StaleForgetError           a person was forgotten since the load
    │   ├── HandledElsewhere           another runner completed the handler
    │   └── CancelRefused              the scheduled event fired or was cancelled
    ├── StoreError                     the database said no
    │   ├── CapabilityMissing          the store lacks what a feature needs
    │   ├── CommitOutcomeUnknown       the connection died around COMMIT
    │   ├── CorruptionError            stored rows contradict each other
    │   └── SchemaVersionError         the store is newer than this code
    ├── DecodeError                    a stored row this code cannot read
    │   ├── UnknownKeysError           fields the class does not have
    │   └── UnknownTypeError           a type no imported module defines
    ├── DefinitionError (TypeError)    a class definition playthrough refuses
    ├── ConfigurationError             a bad option, URL or environment
    ├── ScheduleNotFound (KeyError)    no scheduled event with that id
    ├── DuplicateEvent                 an idempotency key already committed
    ├── ReconstitutionError            a load that cannot be planned or played
    ├── HandlerFailed                  handle hooks raised (after a durable commit)
    ├── StateMutationError             a state changed outside apply
    ├── StateTypeError (TypeError)     a committed value of the wrong type
    ├── NotFoundError (LookupError)    no event ever touched that state
    ├── QueryError (ValueError)        a find/count filter that cannot be run
    ├── FollowerFailed                 a projection raised
    ├── FollowerBusy                   another process runs that follower
    ├── TransferError                  an export file that cannot be imported
    └── ArchivedRangeError             a read before the archive cut

(The same names are importable from ``playthrough`` until 0.3.0, with a
DeprecationWarning.)
"""

from ._errors import (
    ArchivedRangeError,
    CancelRefused,
    CapabilityMissing,
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

__all__ = [
    "ArchivedRangeError",
    "CancelRefused",
    "CapabilityMissing",
    "CommitOutcomeUnknown",
    "ConcurrencyError",
    "ConfigurationError",
    "CorruptionError",
    "DecodeError",
    "DefinitionError",
    "DuplicateEvent",
    "EventRejected",
    "FollowerBusy",
    "FollowerFailed",
    "HandledElsewhere",
    "HandlerFailed",
    "NotFoundError",
    "PlaythroughError",
    "QueryError",
    "ReconstitutionError",
    "ScheduleNotFound",
    "SchemaVersionError",
    "StaleForgetError",
    "StateCompleted",
    "StateMutationError",
    "StateTypeError",
    "StoreError",
    "TransferError",
    "UnknownKeysError",
    "UnknownTypeError",
]

# Shown as ``playthrough.errors.StoreError`` in tracebacks, not as a private module.
for _name in __all__:
    globals()[_name].__module__ = "playthrough.errors"
del _name
