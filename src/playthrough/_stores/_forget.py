"""Forgetting a data subject inside a store's transaction, for both stores.

The store passes ``run(sql, params)`` (its open transaction; SQL written with
``?`` placeholders and bare ``pt_`` table names, which the PostgreSQL store
rewrites). The work is bounded by the subject's own events and the states
they touched: nothing else in the store is read back or dropped, except the
schedule's error texts and the archive's base snapshots of those states.
Opening the subject's sealed values (to know what to scrub) is the caller's
``reveal``: no crypto here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any

from .._canonical import dumps
from .._errors import StoreError
from .._sealed import FORGOTTEN, MARK, Reveal, key_id
from ._base import ARCHIVED_UNTIL, FORGET_EPOCH, chunks, key_conflicts

Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

_CHUNK = 500  # parameters per IN (...) list
#: A clear value this short is replaced only where it is a whole string (never inside
#: longer text): scrubbing "Al" out of every error message would be noise, not erasure.
_MIN_INSIDE = 3


def scrub_text(text: str, values: set[str]) -> str:
    """``text`` with each clear value replaced by FORGOTTEN (longest first)."""
    if text in values:
        return FORGOTTEN
    for v in sorted(values, key=len, reverse=True):
        if len(v) >= _MIN_INSIDE and v in text:
            text = text.replace(v, FORGOTTEN)
    return text


def scrub_json(data: str, values: set[str]) -> str:
    """JSON text with every string holding a clear value scrubbed (keys left alone)."""

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return scrub_text(v, values)
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v

    try:
        obj = json.loads(data)
    except ValueError:
        return scrub_text(data, values)
    return dumps(walk(obj))


def forget(run: Run, subject: str, reveal: Reveal) -> bool:
    """Forget ``subject`` in the caller's open write transaction; False: it had no key.

    ``reveal`` opens the subject's sealed values, which are scrubbed out of what
    is kept in clear."""
    found = run("SELECT key FROM pt_subject_keys WHERE subject = ?", [subject])
    if not found:
        return False
    key = base64.b64decode(found[0][0])
    # The subject's events, as the database indexed them when they were written.
    hot = run(
        "SELECT e.position, e.type, e.data FROM pt_subject_events s "
        "JOIN pt_events e ON e.position = s.position WHERE s.subject = ? ORDER BY e.position",
        [subject],
    )
    archived = run(
        "SELECT state_type, state_id, type, data FROM pt_archived_personal WHERE subject = ?",
        [subject],
    )
    values = reveal([(t, d) for _, t, d in hot] + [(t, d) for _, _, t, d in archived], subject, key)
    states: set[tuple[str, str]] = {(t, i) for t, i, _, _ in archived}
    for chunk in chunks([p for p, _, _ in hot], _CHUNK):
        marks = ",".join("?" for _ in chunk)
        rows = run(
            f"SELECT DISTINCT state_type, state_id FROM pt_links WHERE position IN ({marks})",
            list(chunk),
        )
        states.update((t, i) for t, i in rows)
    cut_rows = run("SELECT value FROM pt_meta WHERE key = ?", [ARCHIVED_UNTIL])
    cut = int(cut_rows[0][0]) if cut_rows else -1
    for t, i in sorted(states):
        # Snapshots and heads values may hold values derived from the personal
        # data: dropped (loads rebuild them from the log, where it reads FORGOTTEN).
        run(
            "DELETE FROM pt_snapshots WHERE state_type = ? AND state_id = ? AND position <> ?",
            [t, i, cut],
        )
        run(
            "UPDATE pt_heads SET value = NULL, value_position = NULL "
            "WHERE state_type = ? AND state_id = ? AND value IS NOT NULL",
            [t, i],
        )
        # An archive's base snapshot stands for the archived events: scrubbed, not dropped.
        for (data,) in run(
            "SELECT data FROM pt_snapshots WHERE state_type = ? AND state_id = ? AND position = ?",
            [t, i, cut],
        ):
            scrubbed = scrub_json(data, values)
            if scrubbed != data:
                run(
                    "UPDATE pt_snapshots SET data = ? WHERE state_type = ? AND state_id = ? "
                    "AND position = ?",
                    [scrubbed, t, i, cut],
                )
    if values:
        for schedule_id, error in run(
            "SELECT id, error FROM pt_schedule WHERE error IS NOT NULL", []
        ):
            scrubbed = scrub_text(error, values)
            if scrubbed != error:
                run("UPDATE pt_schedule SET error = ? WHERE id = ?", [scrubbed, schedule_id])
    run("DELETE FROM pt_archived_personal WHERE subject = ?", [subject])
    run("DELETE FROM pt_subject_events WHERE subject = ?", [subject])
    run("DELETE FROM pt_subject_keys WHERE subject = ?", [subject])
    epoch_rows = run("SELECT value FROM pt_meta WHERE key = ?", [FORGET_EPOCH])
    epoch = int(epoch_rows[0][0]) + 1 if epoch_rows else 1
    run(
        "INSERT INTO pt_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [FORGET_EPOCH, str(epoch)],
    )
    _record(run, subject, key_id(key))
    return True


def _record(run: Run, subject: str, kid: str | None) -> None:
    """Record a forget: followers are told of it, exports carry it."""
    (seq,) = run("SELECT coalesce(max(seq), 0) + 1 FROM pt_forgotten", [])[0]
    (head,) = run("SELECT coalesce(max(position), 0) FROM pt_events", [])[0]
    run(
        "INSERT INTO pt_forgotten (seq, subject, position, key_id) VALUES (?, ?, ?, ?)",
        [seq, subject, head, kid],
    )


def import_keys(
    run: Run,
    keys: Sequence[tuple[str, str]],
    forgotten: Sequence[tuple[str, str | None]],
    reveal: Reveal | None,
) -> bool:
    """Write an import's subject keys and apply the forgets its file carries, in the
    import's transaction; True if a key held here was forgotten.

    A forget (subject, id of the deleted key) is applied first: when the store
    holds that key (any key but the file's, for an id of None), the subject is
    forgotten here as it was in the source (values, snapshots, key); when it
    holds none, the forget is recorded, so that this store's own exports carry
    it on. A key the source deleted never comes back from an older file.
    Then the file's keys are added; a subject holding another key is refused.
    Applying a forget needs ``reveal`` (see :func:`forget`): without it, StoreError.
    """
    incoming = dict(keys)
    applied = False
    for subject, kid in forgotten:
        found = run("SELECT key FROM pt_subject_keys WHERE subject = ?", [subject])
        if found:
            have = str(found[0][0])
            if have == incoming.get(subject):
                continue  # the subject came back: the file's key is the current one
            if kid is None or key_id(base64.b64decode(have)) == kid:
                if reveal is None:
                    raise StoreError(
                        f"import refused, nothing was written: the file forgets {subject!r}, "
                        "whose key this store holds, and the import was given no reveal "
                        "to scrub its values with"
                    )
                forget(run, subject, reveal)
                applied = True
            continue
        seen = run(
            "SELECT 1 FROM pt_forgotten WHERE subject = ? AND coalesce(key_id, '') = ?",
            [subject, kid or ""],
        )
        if not seen:
            _record(run, subject, kid)
    for subject, key in keys:
        run(
            "INSERT INTO pt_subject_keys (subject, key) VALUES (?, ?) "
            "ON CONFLICT (subject) DO NOTHING",
            [subject, key],
        )
    if keys:
        stored: dict[str, bytes] = {}
        for chunk in chunks([s for s, _ in keys], _CHUNK):
            marks = ",".join("?" for _ in chunk)
            for subject, key in run(
                f"SELECT subject, key FROM pt_subject_keys WHERE subject IN ({marks})", list(chunk)
            ):
                stored[str(subject)] = base64.b64decode(str(key))
        key_conflicts(keys, stored)
    return applied


def import_event_keys(run: Run, rows: Sequence[tuple[int, str]], after: int, until: int) -> None:
    """Give the events an import wrote in ``(after, until]`` their idempotency keys.

    A key used twice, or already used by an event of this store (archived
    ones included), is refused: StoreError, nothing written.
    """
    if not rows:
        return
    seen: dict[str, int] = {}
    for position, key in rows:
        if not after < position <= until:
            raise StoreError(
                f"import refused, nothing was written: idempotency key {key!r} names "
                f"position {position}, outside the imported events ({after}, {until}]"
            )
        if key in seen:
            raise StoreError(
                f"import refused, nothing was written: idempotency key {key!r} is given "
                f"to positions {seen[key]} and {position}"
            )
        seen[key] = position
    for chunk in chunks(list(seen), _CHUNK):
        marks = ",".join("?" for _ in chunk)
        taken = run(
            f"SELECT event_key, position FROM pt_events WHERE event_key IN ({marks}) "
            f"UNION ALL SELECT event_key, position FROM pt_archived_keys "
            f"WHERE event_key IN ({marks})",
            [*chunk, *chunk],
        )
        if taken:
            key, position = taken[0]
            raise StoreError(
                f"import refused, nothing was written: idempotency key {key!r} is already "
                f"used by the event at position {position} in this store"
            )
    for position, key in rows:
        run("UPDATE pt_events SET event_key = ? WHERE position = ?", [key, position])


#: Tables ``forget`` deletes from or rewrites (PostgreSQL vacuums them afterwards).
TOUCHED = (
    "pt_subject_keys",
    "pt_snapshots",
    "pt_heads",
    "pt_schedule",
    "pt_archived_personal",
)


def archive_personal(run: Run, until: int) -> None:
    """Before an archive deletes the log up to ``until``: keep its sealed personal
    events, with the states they touched, so a later forget can find their states
    and scrub the clear values out of the base snapshots."""
    rows = run(
        "SELECT e.position, e.type, e.data, l.state_type, l.state_id FROM pt_events e "
        "JOIN pt_links l ON l.position = e.position "
        "WHERE e.position <= ? AND e.data LIKE ? ESCAPE '\\'",
        [until, "%" + json.dumps(MARK).replace("_", "\\_") + "%"],
    )
    keep: dict[tuple[str, str, str, str, str], None] = {}
    for _, type_name, data, t, i in rows:
        obj = json.loads(data)
        for value in obj.values() if isinstance(obj, dict) else ():
            if isinstance(value, dict) and MARK in value:
                keep[(str(value[MARK]["s"]), t, i, type_name, data)] = None
    for row in keep:
        run(
            "INSERT INTO pt_archived_personal (subject, state_type, state_id, type, data) "
            "VALUES (?, ?, ?, ?, ?)",
            list(row),
        )
