"""What an archive leaves in a store, and the guards that refuse reading past it.

``Store.archive`` moves the log up to a cut out to a file and records the cut
in ``pt_meta`` (:data:`ARCHIVED_UNTIL`); from then on the base snapshots at the
cut stand for the events before it. Every reader that needs the log from an
earlier position (a load planned before the cut, ``engine.events(after=...)``,
a follower behind it, a history) asks these guards first, and gets an
:class:`ArchivedRangeError` naming the way out (``archive=FILE``) rather than a
silently shorter log. The archive module (``_archive``) cuts and checks a cut;
these guards sit in the base layer because the core and the stores use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import ArchivedRangeError
from ._steps import Call, Steps

if TYPE_CHECKING:
    from ._stores._base import LogReader

#: pt_meta key: the log's events at positions <= this were moved to an archive.
ARCHIVED_UNTIL = "archived_until"


def archived_until(reader: LogReader) -> int:
    """The last archived position (0: nothing archived)."""
    value = reader.meta(ARCHIVED_UNTIL)
    return int(value) if value else 0


def archived_until_steps() -> Steps[int]:
    """The last archived position (0: nothing archived), as a reader request."""
    value = yield Call("meta", (ARCHIVED_UNTIL,))
    return int(value) if value else 0


def refuse_archived_steps(at: int, doing: str) -> Steps[None]:
    """``refuse_archived`` as reader requests."""
    check_archived((yield from archived_until_steps()), at, doing)


def refuse_archived(reader: LogReader, at: int, doing: str) -> None:
    """ArchivedRangeError when the log as of ``at`` needs archived events (``at`` < the cut)."""
    check_archived(archived_until(reader), at, doing)


def check_archived(until: int, at: int, doing: str) -> None:
    """ArchivedRangeError when ``at`` is before the cut ``until``."""
    if at < until:
        raise ArchivedRangeError(
            f"{doing} needs the log from position {at}, but positions 1..{until} were "
            "archived: open the engine with archive=FILE (--archive FILE) to read them"
        )
