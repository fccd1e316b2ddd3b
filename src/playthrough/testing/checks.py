"""Checks of a user's domain against the reference semantics (no Hypothesis needed).

:func:`play_history` fires events into an engine, committing each and skipping
the rejected ones; :func:`assert_reconstitutes` then places snapshots and
checks that every load — fresh, from any mix of snapshots, at any position —
equals :func:`~playthrough.testing.reference.reference_states` over the stored
log, that the live states equal it too, and that replay is deterministic.
:func:`playthrough.testing.strategies.check_reconstitution` drives both with
Hypothesis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .._engine import Engine
from .._errors import EventRejected
from .._model import Event, State, StateKey, decode_id, registry
from .._personal import unsealing
from .._serialization import blank_state, decode_event, encode_state
from .._stores import Store
from .._verify import field_diffs
from .reference import reference_states


def play_history(
    engine: Engine,
    events: Iterable[Event],
    *,
    rejections: tuple[type[BaseException], ...] = (EventRejected,),
) -> list[Event]:
    """Fire and commit each event in order; skip those whose validation raises ``rejections``.

    Returns the committed events, including those fired by ``handle`` hooks.
    """
    committed: list[Event] = []
    for event in events:
        try:
            engine.fire(event)
        except rejections:
            continue
        committed.extend(engine.commit())
    return committed


def stored_events(store: Store, chunk: int = 1_000) -> list[Event]:
    """Every event of the log, decoded, in order."""
    pages = store.read_log(chunk=chunk, view=unsealing)
    return [decode_event(stored) for page in pages for stored, _ in page]


def ref_of(key: StateKey) -> tuple[type[State], Any]:
    """``(StateClass, id)`` for a stored key (``id`` is None for a singleton)."""
    return registry.state_class(key.type), decode_id(key.id)


def _problem(what: str, want: State, got: State, plan: str = "") -> str:
    lines = [f"{what}:"]
    for d in field_diffs(encode_state(want), encode_state(got)):
        lines.append(f"    {d.field}: reference {d.expected!r}, got {d.found!r}")
    if want.last_event_id != got.last_event_id:
        lines.append(f"    last_event_id: reference {want.last_event_id}, got {got.last_event_id}")
    if plan:
        lines.append("    " + plan.replace("\n", "\n    "))
    return "\n".join(lines)


def _same(a: State, b: State) -> bool:
    return encode_state(a) == encode_state(b) and a.last_event_id == b.last_event_id


def assert_reconstitutes(
    engine: Engine,
    *,
    snapshots: Iterable[tuple[int, Iterable[StateKey]]] = (),
    positions: Sequence[int] | None = None,
) -> None:
    """Loads equal the reference replay over the stored log, for any snapshot placement.

    - ``snapshots``: ``(position, keys)`` sets to write first (positions past
      the head are clamped to it);
    - ``positions``: where to time-travel (default: every position of the log).

    Checks, raising AssertionError with a field-by-field diff (and the load's
    plan) on the first problems found: the engine's live states equal the
    reference at the head; a fresh engine's loads at the head and ``load(at=)``
    at each position equal the reference there; :func:`playthrough._verify.verify`
    finds every stored snapshot equal to the log and two replays identical.
    """
    log = stored_events(engine.store)
    head = engine.head()
    for at, keys in snapshots:
        refs = [ref_of(k) for k in dict.fromkeys(keys)]
        if refs:
            engine.admin.snapshot(refs, at=max(0, min(at, head)))
    problems: list[str] = []
    final = reference_states(log)
    for key, live in engine.repository.items():
        want = final.get(key)
        if want is not None and not _same(want, live):
            problems.append(_problem(f"live {key} after the history", want, live))
    fresh = Engine(engine.store)  # shares the store; a repository of its own
    keys = sorted(final)
    for key in keys:
        cls, state_id = ref_of(key)
        got = fresh.load(cls, state_id)
        if not _same(final[key], got):
            plan = fresh.explain(cls, state_id).explain()
            problems.append(
                _problem(f"fresh load of {key} at the head ({head})", final[key], got, plan)
            )
    for at in range(head + 1) if positions is None else positions:
        expected = reference_states(log, upto=at)
        for key in keys:
            cls, state_id = ref_of(key)
            want = expected.get(key)
            if want is None:
                want = blank_state(cls, state_id)
            got = engine.load(cls, state_id, at=at)
            if not _same(want, got):
                plan = engine.explain(cls, state_id, at=at).explain()
                problems.append(_problem(f"load of {key} at position {at}", want, got, plan))
        if problems:
            break
    if problems:
        raise AssertionError(
            "reconstitution differs from the reference replay\n" + "\n".join(problems[:5])
        )
    report = engine.admin.verify(subprocess_replay=False)
    if not (report.snapshots.ok and report.determinism.ok and not report.errors):
        raise AssertionError("verify() found a problem\n" + report.to_text())
