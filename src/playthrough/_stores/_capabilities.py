"""What a store can do, by capability, and the stand-ins for a capability it lacks.

A store has the log (:class:`LogRecorder`: the append, heads values,
snapshots and their reads) and, optionally, the read side, the lifecycle and
maintenance. A backend that lacks one mixes in its stand-in here
(``NoReadSide``, ``NoLifecycle``, ``NoMaintenance`` on the store and the
``...Reads`` ones on its reader): each of the capability's methods then raises
:class:`CapabilityMissing` naming the capability and the method, so a feature
the store cannot serve fails at once and clearly, never half way.
"""

from __future__ import annotations

from typing import Any, NoReturn

from .._errors import CapabilityMissing
from ._base import Store, StoreReader

LOG = "log"
READ_SIDE = "read side"
LIFECYCLE = "lifecycle"
MAINTENANCE = "maintenance"
CAPABILITIES = (LOG, READ_SIDE, LIFECYCLE, MAINTENANCE)


class _Lacking:
    """A method of a capability the store lacks: calling it raises CapabilityMissing."""

    def __init__(self, capability: str) -> None:
        self.capability = capability
        self.name = "?"

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        capability, name = self.capability, self.name
        where = type(instance if instance is not None else owner).__name__
        if instance is None and owner is not None:
            where = owner.__name__

        def refuse(*args: Any, **kwargs: Any) -> NoReturn:
            raise CapabilityMissing(
                f"{where} has no {capability} capability: {name}() is not available "
                f"(this store has: {', '.join(capabilities(instance or owner))})",
                capability,
                name,
            )

        return refuse


def lacking(capability: str) -> Any:
    """The stand-in for one method of ``capability`` (see the module docstring)."""
    return _Lacking(capability)


def capabilities(store: object) -> tuple[str, ...]:
    """The capabilities a store (or its reader, or their class) has, in ``CAPABILITIES`` order."""
    cls = store if isinstance(store, type) else type(store)
    missing = {
        value.capability
        for klass in cls.__mro__
        for value in vars(klass).values()
        if isinstance(value, _Lacking)
    }
    return tuple(c for c in CAPABILITIES if c not in missing)


class NoReadSide(Store):
    """A store without the read side (``follow``; its reader: ``NoReadSideReads``)."""

    follow = lacking(READ_SIDE)


class NoLifecycle(Store):
    """A store without the lifecycle (subject keys, schedule, handlers completed alone)."""

    ensure_subject_keys = lacking(LIFECYCLE)
    forget_subject = lacking(LIFECYCLE)
    claim_due = lacking(LIFECYCLE)
    finish_schedule = lacking(LIFECYCLE)
    rearm_schedule = lacking(LIFECYCLE)
    mark_handled = lacking(LIFECYCLE)


class NoMaintenance(Store):
    """A store without maintenance (import, archive, repair of the heads, vacuum)."""

    import_events = lacking(MAINTENANCE)
    import_pages = lacking(MAINTENANCE)
    archive = lacking(MAINTENANCE)
    rebuild_heads = lacking(MAINTENANCE)
    vacuum = lacking(MAINTENANCE)


class NoReadSideReads(StoreReader):
    find_events = lacking(READ_SIDE)
    state_info = lacking(READ_SIDE)
    stale_states = lacking(READ_SIDE)
    query_states = lacking(READ_SIDE)
    count_states = lacking(READ_SIDE)
    followers = lacking(READ_SIDE)


class NoLifecycleReads(StoreReader):
    completions = lacking(LIFECYCLE)
    subject_keys = lacking(LIFECYCLE)
    schedule = lacking(LIFECYCLE)
    schedules = lacking(LIFECYCLE)
    pending_handlers = lacking(LIFECYCLE)


class NoMaintenanceReads(StoreReader):
    transfer_rows = lacking(MAINTENANCE)
    transfer_tables = lacking(MAINTENANCE)
    heads_disagreements = lacking(MAINTENANCE)
    snapshot_disagreements = lacking(MAINTENANCE)
    event_versions = lacking(MAINTENANCE)
    snapshot_versions = lacking(MAINTENANCE)
