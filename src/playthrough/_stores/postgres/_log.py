"""The PostgreSQL store's log: reads, the append, heads values.

Commit order is position order. Every append takes a transaction-level
advisory lock private to the store's schema; then one statement (a new READ
COMMITTED snapshot, which holds every earlier append) numbers the events after
the largest position, checks and moves the heads and inserts events and links.
The lock, that statement and the COMMIT travel in one pipelined round trip, and
PostgreSQL releases the lock only once the commit is visible, so appends become
visible in position order: a reader's snapshot always holds a prefix of the log,
and a follower paging through ``events_after`` never skips an event that
commits later with a smaller position. See design/postgres.md for the
alternatives and the measured cost.

The optimistic-concurrency check is done by the database: known states are
updated only where ``last_position`` still holds the expected value, new states
are inserted and rely on the primary key (``ON CONFLICT DO NOTHING``); a state
neither updated nor inserted is stale, and ``pt_refuse()`` raises, which aborts
the whole transaction (the COMMIT behind it does nothing).

Heads rows carry each state's value (schema version 2): the append statement
writes it with the head, and ``heads()`` reads the values of any number of
states in one autocommit statement, the whole of a load whose values are
current.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from ..._errors import (
    CommitOutcomeUnknown,
    ConcurrencyError,
    DuplicateEvent,
    PlaythroughError,
    StaleForgetError,
    StoreError,
)
from ..._keys import StateKey
from .._base import (
    CommitExtras,
    CommitRecord,
    HeadRows,
    HeadValue,
    NewEvent,
    SnapshotRecord,
    StoreReader,
    batch_keys,
    cancel_refused,
    duplicate_message,
    fired_refused,
    handled_refused,
    head_value,
    stale_forget_message,
    stale_message,
)
from . import _sql as q
from ._datastore import PostgresDatastore
from ._reader import PostgresReader, head_rows, key_arrays
from ._sql import Conn


def snapshot_arrays(records: Sequence[SnapshotRecord]) -> tuple[list[Any], ...]:
    """The arrays of ``SNAPSHOTS_WRITE``: one per column."""
    return (
        [r.key.type for r in records],
        [r.key.id for r in records],
        [r.position for r in records],
        [r.last_event_id for r in records],
        [r.data for r in records],
        [r.version for r in records],
        [r.fingerprint for r in records],
    )


class PostgresLog(PostgresDatastore):
    """The log's writes and reads over the PostgreSQL database (see :class:`PostgresStore`)."""

    @contextmanager
    def reader(self) -> Iterator[StoreReader]:
        local = self._local  # each thread's read transaction holds its own connection
        if getattr(local, "reading", False):
            raise StoreError("a reader is already open on this store: readers do not nest")
        conn = self._checkout(q.READ)
        local.reading = True
        ok = False
        try:
            yield PostgresReader(self, conn)
            ok = True
        finally:
            local.reading = False
            try:
                self._release(conn, "COMMIT" if ok else "ROLLBACK")
            except psycopg.Error:
                pass  # a read-only transaction: nothing to lose; the pool drops a dead connection

    def heads(self, keys: Iterable[StateKey]) -> HeadRows:
        wanted = list(dict.fromkeys(keys))
        if len(wanted) > q.CHUNK:  # several statements: one transaction keeps them consistent
            with self.reader() as reader:
                return HeadRows.of(reader.heads(wanted))
        rows, _ = self._single(q.HEADS, key_arrays(wanted))
        return head_rows(rows, HeadRows())

    def write_values(self, records: Sequence[SnapshotRecord], epoch: int | None = None) -> int:
        if not records:
            return 0
        latest = {r.key: r for r in records}
        rows = sorted(latest.values(), key=lambda r: r.key)
        _, count = self._single(
            q.VALUES_WRITE,
            (
                epoch,
                [r.key.type for r in rows],
                [r.key.id for r in rows],
                [r.position for r in rows],
                [r.data for r in rows],
                [r.version for r in rows],
                [r.fingerprint for r in rows],
            ),
        )
        return count

    # ------------------------------------------------------------------ writing

    def write_commit(self, commit: CommitRecord) -> list[int]:
        events, expected, values, commit_id, handled, extras, epoch = commit
        if getattr(self._local, "reading", False):
            raise StoreError("cannot write inside a read transaction")
        if extras is not None or handled or not events:
            return self._append_unpipelined(
                events, expected, values, extras or CommitExtras(), commit_id, handled, epoch
            )
        event_keys = batch_keys(events)
        params = _append_params(events, expected, values)
        params.update(
            cid=commit_id,
            cn=len(events),
            ek=[e.key for e in events],
            hn=[n for n, e in enumerate(events, 1) if e.needs_handling],
            fe=epoch,
        )
        attempts = self._append_attempts()
        for attempt in range(attempts):
            # No BEGIN yet: it travels in the append's one round trip (_send_append).
            conn = self._checkout(None)
            self.statements += 2
            try:
                cursor, error, answered = self._send_append(conn, params)
            except BaseException as exc:
                # Interrupted (KeyboardInterrupt...) with the round trip in flight.
                self._settle_interrupted(conn, commit_id, len(events), exc)
                raise
            if error is None:
                assert cursor is not None
                row = cursor.fetchone()
                self._release(conn, None)
                assert row is not None
                base = int(row[0])
                return list(range(base + 1, base + 1 + len(events)))
            if error.sqlstate is not None and not conn.broken:
                # The server refused a statement, so the transaction aborted and the
                # COMMIT queued behind it rolled it back: nothing was written.
                self._abort(conn)
                if error.sqlstate == q.STALE:
                    raise _stale_error(error.diag.message_detail) from None
                if error.sqlstate == q.LOCK_NOT_AVAILABLE:
                    raise StoreError(
                        f"append to {self._where} (schema {self.schema!r}) waited more than "
                        f"{int(self._lock_timeout_ms) / 1000:g} s for the append lock (another "
                        "writer holds it, a large commit perhaps), nothing was written; raise "
                        "the store's lock_timeout to wait longer"
                    ) from error
                if error.sqlstate == q.UNIQUE_VIOLATION and event_keys:
                    self._raise_duplicate(event_keys, error)
                raise StoreError(
                    f"append to {self._where} (schema {self.schema!r}) failed, nothing was "
                    f"written: {self._clean(error)}"
                ) from error
            # A client-side or connection failure with COMMIT possibly on its way:
            # the outcome is unknown until the old backend is gone and pt_commits is read.
            # Not even the BEGIN was answered: the connection was found closed, as
            # a pooled one the server dropped while idle (a restart, a timeout) is.
            lost = conn.broken and not answered
            try:
                return self._abandon(conn, commit_id, len(events), error)
            except CommitOutcomeUnknown:
                raise
            except StoreError:
                # Learnt for certain that nothing was written, on a connection that
                # answered nothing: try again on another one, as a BEGIN sent on its
                # own used to be. A session ended mid-append is not tried again.
                if not lost or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _append_attempts(self) -> int:
        """How many connections an append may try when each proves dead before writing."""
        return self._max_size + 1

    def _append_unpipelined(
        self,
        events: Sequence[NewEvent],
        expected: Mapping[StateKey, int | None],
        values: Mapping[StateKey, str | HeadValue],
        extras: CommitExtras,
        commit_id: str,
        handled: Sequence[int],
        epoch: int | None = None,
    ) -> list[int]:
        """An append that checks before it writes: statement by statement, not pipelined.

        Used by commits that complete a handler (its pending row is deleted,
        checked, before the events are written), complete a state or touch the
        schedule (the positions those name are known once the events are
        numbered), and by commits of no events. Like the pipelined append, a
        lost connection is resolved through ``pt_commits``: the positions, a
        certain "nothing was written", or CommitOutcomeUnknown.
        """
        conn = self._checkout(q.WRITE)  # a failure here sent nothing: its StoreError is certain
        try:
            positions = self._write_unpipelined(
                conn, events, expected, values, extras, commit_id, handled, epoch
            )
        except psycopg.Error as exc:
            if exc.sqlstate is not None and not conn.broken:
                # The server refused a statement: the transaction is rolled back.
                self._abort(conn)
                keys = batch_keys(events)
                if exc.sqlstate == q.UNIQUE_VIOLATION and keys:
                    self._raise_duplicate(keys, exc)
                raise self._append_failure(conn, exc) from None
            # The connection failed, COMMIT perhaps on its way: learn the outcome.
            return self._abandon(conn, commit_id, len(events), exc)
        except PlaythroughError:  # a check refused the commit before COMMIT: rolled back
            self._abort(conn)
            raise
        except BaseException as exc:
            # Interrupted (KeyboardInterrupt...) with a statement or COMMIT in flight.
            self._settle_interrupted(conn, commit_id, len(events), exc)
            raise
        self._release(conn, None)
        return positions

    def _write_unpipelined(
        self,
        conn: Conn,
        events: Sequence[NewEvent],
        expected: Mapping[StateKey, int | None],
        values: Mapping[StateKey, str | HeadValue],
        extras: CommitExtras,
        commit_id: str,
        handled: Sequence[int],
        epoch: int | None = None,
    ) -> list[int]:
        self.statements += 2
        conn.execute(self._sql(q.LOCK_BOUNDED), self._lock_params)
        if handled:  # checked first: a handler completed elsewhere is not a conflict
            self.statements += 1
            wanted = list(dict.fromkeys(handled))
            done = {int(r[0]) for r in conn.execute(self._sql(q.HANDLED), (wanted,)).fetchall()}
            gone = [p for p in wanted if p not in done]
            if gone:
                raise handled_refused(gone)
        self.statements += 1
        if events:
            params = _append_params(events, expected, values)
            params.update(
                cid=commit_id,
                cn=len(events),
                ek=[e.key for e in events],
                hn=[n for n, e in enumerate(events, 1) if e.needs_handling],
                fe=epoch,
            )
            if any(k is not None for k in params["ek"]):
                self.statements += 1
                conn.execute(self._sql(q.ARCHIVED_KEYS_CHECK), params)
            row = conn.execute(self._sql(q.APPEND), params).fetchone()
            assert row is not None
            base = int(row[0])
        else:
            if epoch is not None:  # the append statement checks it; without events, here
                self.statements += 1
                (now,) = conn.execute(self._sql(f"SELECT {q.SHARED.EPOCH}")).fetchone() or (0,)
                if now != epoch:
                    raise StaleForgetError(stale_forget_message())
            conn.execute(self._sql(q.EMPTY_COMMIT), (commit_id,))
            base = 0
        positions = list(range(base + 1, base + 1 + len(events)))
        if extras.fired:
            self.statements += 1
            done_ids = {
                r[0]
                for r in conn.execute(
                    self._sql(q.FIRED),
                    ([i for i, _ in extras.fired], [positions[n] for _, n in extras.fired]),
                ).fetchall()
            }
            taken = [i for i, _ in extras.fired if i not in done_ids]
            if taken:
                raise ConcurrencyError(fired_refused(taken))
        if extras.completed:
            self.statements += 1
            conn.execute(
                self._sql(q.COMPLETED_WRITE),
                (
                    [k.type for k, _ in extras.completed],
                    [k.id for k, _ in extras.completed],
                    [positions[n] for _, n in extras.completed],
                    [events[n].type for _, n in extras.completed],
                ),
            )
        if extras.reopened:
            self.statements += 1
            conn.execute(self._sql(q.REOPENED), key_arrays(list(extras.reopened)))
        if extras.schedule:
            self.statements += 1
            conn.execute(
                self._sql(q.SCHEDULE_WRITE),
                tuple([r[n] for r in extras.schedule] for n in range(6)),
            )
        if extras.cancel:  # checked: never "cancelled" and "fired"
            self.statements += 1
            wanted_ids = list(dict.fromkeys(extras.cancel))
            cancelled = {r[0] for r in conn.execute(self._sql(q.CANCEL), (wanted_ids,)).fetchall()}
            rest = [i for i in wanted_ids if i not in cancelled]
            if rest:
                self.statements += 1
                found: dict[str, str] = dict(
                    conn.execute(self._sql(q.STATUSES), (rest,)).fetchall()
                )
                refused = [
                    (i, str(found.get(i, "missing"))) for i in rest if found.get(i) != "cancelled"
                ]
                if refused:
                    raise cancel_refused(refused)
        self._send_commit(conn)
        return positions

    def _send_commit(self, conn: Conn) -> None:
        """COMMIT the transaction of an unpipelined append (tests make it fail)."""
        conn.execute("COMMIT", prepare=False)

    def _append_failure(self, conn: Conn, error: psycopg.Error) -> Exception:
        """The error to raise for a failed pipelined append (rolled back by the caller)."""
        if conn.broken:
            failure: Exception = StoreError(
                f"the connection to {self._where} was lost during an append: it may or "
                f"may not have been committed ({self._clean(error)})"
            )
            failure.__cause__ = error
        elif error.sqlstate == q.STALE:
            failure = _stale_error(error.diag.message_detail)
            failure.__suppress_context__ = True
        else:
            failure = StoreError(
                f"append to {self._where} (schema {self.schema!r}) failed, nothing was "
                f"written: {self._clean(error)}"
            )
            failure.__cause__ = error
        return failure

    def _send_append(
        self, conn: Conn, params: Mapping[str, Any]
    ) -> tuple[psycopg.Cursor[TupleRow] | None, psycopg.Error | None, bool]:
        """BEGIN, lock, append and COMMIT on a connection with no transaction open;
        (cursor of the append, first error, whether the server answered the BEGIN).

        Small batches go in one pipelined round trip: no client latency while
        the append lock is held, and an error aborts the transaction, so the
        COMMIT queued behind it does nothing. Large ones (``q.PIPELINE_BYTES``)
        are sent statement by statement: psycopg's pipeline deadlocks on big
        payloads (client and server both blocked writing), which held the
        append lock forever. Waiting for that lock is bounded by ``lock_timeout``.
        """
        if _payload_bytes(params) > q.PIPELINE_BYTES:
            return self._send_append_plainly(conn, params)
        begin = cursor = None
        error: psycopg.Error | None = None
        try:
            # One Sync, sent when the block ends: the pipeline is one round trip
            # (an explicit sync() inside it would cost a second one at its exit).
            with conn.pipeline():
                try:
                    # Transaction control is never prepared: psycopg would count a
                    # prepare that an aborted pipeline skipped as done.
                    begin = conn.execute(q.WRITE, prepare=False)
                    conn.execute(self._sql(q.LOCK_BOUNDED), self._lock_params)
                    if any(k is not None for k in params["ek"]):
                        conn.execute(self._sql(q.ARCHIVED_KEYS_CHECK), params)
                    cursor = conn.execute(self._sql(q.APPEND), params)
                    conn.execute("COMMIT", prepare=False)
                except psycopg.Error as exc:
                    error = exc
        except psycopg.Error as exc:  # the results came back at the block's end: the first error
            error = error or exc
        return cursor, error, begin is not None and begin.statusmessage is not None

    def _send_append_plainly(
        self, conn: Conn, params: Mapping[str, Any]
    ) -> tuple[psycopg.Cursor[TupleRow] | None, psycopg.Error | None, bool]:
        cursor = None
        answered = False
        try:
            conn.execute(q.WRITE, prepare=False)
            answered = True
            conn.execute(self._sql(q.LOCK_BOUNDED), self._lock_params)
            if any(k is not None for k in params["ek"]):
                conn.execute(self._sql(q.ARCHIVED_KEYS_CHECK), params)
            cursor = conn.execute(self._sql(q.APPEND), params)
            conn.execute("COMMIT", prepare=False)
        except psycopg.Error as exc:
            return cursor, exc, answered
        return cursor, None, True

    def _discard(self, conn: Conn) -> None:
        """Close a connection whose state is unknown and give it back (the pool drops it)."""
        assert self._pool is not None
        try:
            conn.close()
        finally:
            self._pool.putconn(conn)

    def _abandon(self, conn: Conn, commit_id: str, count: int, cause: BaseException) -> list[int]:
        """Drop a connection whose COMMIT may be on its way, then learn the outcome."""
        pid = _backend_pid(conn)
        self._discard(conn)
        return self._resolve(commit_id, count, pid, cause)

    def _settle_interrupted(
        self, conn: Conn, commit_id: str, count: int, interruption: BaseException
    ) -> None:
        """An interruption (KeyboardInterrupt...) with a round trip in flight: the caller
        re-raises it once the outcome is learnt, unless it cannot be (CommitOutcomeUnknown)."""
        try:
            self._abandon(conn, commit_id, count, interruption)
        except CommitOutcomeUnknown as unknown:
            raise unknown from interruption
        except StoreError:
            pass  # learnt for certain that nothing was written: the interruption stands

    def _resolve(
        self, commit_id: str, count: int, pid: int | None, cause: BaseException
    ) -> list[int]:
        """Learn for certain whether commit ``commit_id`` is stored.

        The old backend is terminated (and waited for), so its transaction has
        ended for good; then pt_commits answers, on a fresh connection. Returns
        the positions if it was committed, raises a StoreError saying nothing
        was written if not, and CommitOutcomeUnknown if the server cannot be asked.
        """
        try:
            with psycopg.connect(self._conninfo, **self._connect_kwargs) as conn:
                if pid is not None:
                    row = conn.execute(self._sql(q.TERMINATE), (pid,)).fetchone()
                    if row is not None and not row[0]:
                        raise StoreError(f"backend {pid} did not end within 10 s")
                row = conn.execute(self._sql(q.SHARED.COMMIT_POSITIONS), (commit_id,)).fetchone()
        except (psycopg.Error, StoreError) as exc:
            text = self._clean(exc) if isinstance(exc, psycopg.Error) else str(exc)
            raise CommitOutcomeUnknown(
                f"the connection to {self._where} failed during commit {commit_id} "
                f"({self._clean(cause)}) and whether it was written cannot be learnt now "
                f"({text}); engine.was_committed({commit_id!r}) answers once the server is "
                "reachable",
                commit_id,
            ) from cause
        if row is None:
            raise StoreError(
                f"append to {self._where} (schema {self.schema!r}) failed, nothing was "
                f"written (checked after the failure): {self._clean(cause)}"
            ) from cause
        first, last = int(row[0]), int(row[1])
        if last - first + 1 != count:  # pragma: no cover - a commit id is unique
            raise StoreError(f"commit {commit_id} holds {last - first + 1} events, not {count}")
        return list(range(first, last + 1))

    def _raise_duplicate(self, keys: Sequence[str], error: psycopg.Error) -> None:
        if error.diag.constraint_name not in q.DUPLICATE_CONSTRAINTS:
            return
        with self.reader() as reader:
            taken = reader.event_keys(keys)
        if taken:
            key, position = next(iter(taken.items()))
            raise DuplicateEvent(duplicate_message(key, position), key, position) from None


def _append_params(
    events: Sequence[NewEvent],
    expected: Mapping[StateKey, int | None],
    values: Mapping[StateKey, str | HeadValue],
) -> dict[str, Any]:
    """The arrays the append statement takes (see ``q.APPEND`` for the modes)."""
    last_touch: dict[StateKey, int] = {}
    lt: list[str] = []
    li: list[str] = []
    ln: list[int] = []
    lg: list[int] = []
    for n, e in enumerate(events, 1):
        for key, group in e.links:
            lt.append(key.type)
            li.append(key.id)
            ln.append(n)
            lg.append(group)
            last_touch[key] = n
    want = [*expected, *(k for k in last_touch if k not in expected)]
    modes = []
    for key in want:
        if key not in expected:
            modes.append("f")
        elif expected[key] is not None:
            modes.append("u")
        else:
            modes.append("i" if key in last_touch else "n")
    given = [None if values.get(k) is None else head_value(values[k]) for k in want]
    return {
        "wt": [k.type for k in want],
        "wi": [k.id for k in want],
        "we": [expected.get(k) for k in want],
        "wn": [last_touch.get(k) for k in want],
        "wm": modes,
        "wv": [v.data if v else None for v in given],
        "wvv": [v.version if v else 1 for v in given],
        "wvf": [v.fingerprint if v else None for v in given],
        "et": [e.type for e in events],
        "ed": [e.data for e in events],
        "ec": [e.caused_by for e in events],
        "ef": [e.fired_at for e in events],
        "ev": [e.version for e in events],
        "em": [e.metadata for e in events],
        "eo": [e.correlation for e in events],
        "lt": lt,
        "li": li,
        "ln": ln,
        "lg": lg,
    }


def _payload_bytes(params: Mapping[str, Any]) -> int:
    """About how many bytes the batch's event data takes on the wire."""
    return sum(len(d) for d in params["ed"])


def _backend_pid(conn: Conn) -> int | None:
    try:
        return int(conn.info.backend_pid) or None
    except psycopg.Error:
        return None


def _stale_message(detail: str | None) -> str:
    stale = json.loads(detail or "[]")
    return stale_message([(StateKey(t, i), want, have) for t, i, want, have in stale])


def _stale_error(detail: str | None) -> ConcurrencyError:
    """What pt_refuse's report means: stale states, or a forget since the engine loaded."""
    stale = json.loads(detail or "[]")
    if any(t == "$forget_epoch" for t, *_ in stale):
        return StaleForgetError(stale_forget_message())
    return ConcurrencyError(_stale_message(detail))
