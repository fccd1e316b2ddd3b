"""What verification found: the report types and their text, JSON and JUnit XML forms.

The JSON form is the report unstructured by the project's cattrs converter
(a copy of it, with hooks for state keys and the computed ``ok`` flags), so a
field added to a report class shows up in the JSON without extra code.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree

import attrs
from cattrs.gen import make_dict_unstructure_fn, override

from .._model import StateKey, decode_id
from .._serialization import converter
from .._snapshots import SyncReport

MISSING = "<missing>"
"""The JSON value shown for a field one side lacks."""

LAST_EVENT = "(last_event_id)"
"""The pseudo-field naming a snapshot whose ``last_event_id`` differs from the log's."""

SYNC = "snapshot sync"
HEADS = "heads and snapshot metadata vs links"
SNAPSHOTS = "snapshots vs log"
LINKS = "links vs payloads"
DETERMINISM = "determinism"


class VerifyInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped ``verify``; ``report`` holds what it found until then.

    A ``KeyboardInterrupt``: code that does not look for it stops as on any
    Ctrl-C; ``playthrough verify`` prints the partial report and exits 130.
    """

    def __init__(self, report: VerifyReport) -> None:
        super().__init__("verify was interrupted")
        self.report = report


@attrs.frozen
class FieldDiff:
    """One top-level field whose canonical JSON differs between two versions of a state.

    ``expected`` is the reference side, ``found`` the side being checked (JSON
    values, ``"<missing>"`` when a side lacks the field). Each check names its
    sides (``SnapshotCheck.sides``, ``DeterminismCheck.sides``): for a snapshot,
    the log is expected and the snapshot found; for determinism, the first
    replay is expected and the second found.
    """

    field: str
    expected: Any
    found: Any
    # Which side the deprecated ``a`` was: the snapshot check put the snapshot
    # (``found``) first, every other user the reference (``expected``).
    _a_is_found: bool = attrs.field(default=False, eq=False, repr=False, kw_only=True)

    @property
    def a(self) -> Any:
        """Deprecated: ``found`` for snapshot mismatches, ``expected`` otherwise."""
        warnings.warn(
            "FieldDiff.a is deprecated (removed in 0.3.0): use .expected / .found",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.found if self._a_is_found else self.expected

    @property
    def b(self) -> Any:
        """Deprecated: ``expected`` for snapshot mismatches, ``found`` otherwise."""
        warnings.warn(
            "FieldDiff.b is deprecated (removed in 0.3.0): use .expected / .found",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.expected if self._a_is_found else self.found


def field_diffs(expected: str, found: str) -> tuple[FieldDiff, ...]:
    """The top-level fields whose canonical JSON differs between two encoded states."""
    try:
        de, df = json.loads(expected), json.loads(found)
    except (ValueError, RecursionError):
        return (FieldDiff("(data)", expected, found),)
    if not (isinstance(de, dict) and isinstance(df, dict)):
        return () if canon(de) == canon(df) else (FieldDiff("(data)", de, df),)
    out = []
    for name in sorted(set(de) | set(df)):
        ve, vf = de.get(name, MISSING), df.get(name, MISSING)
        if canon(ve) != canon(vf):
            out.append(FieldDiff(name, ve, vf))
    return tuple(out)


def canon(value: Any) -> str:
    """Canonical JSON of a decoded value (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@attrs.frozen
class SnapshotMismatch:
    """A stored snapshot that is not the state the log gives at its position.

    In ``diffs``, ``expected`` is the log's value and ``found`` the snapshot's.
    ``first_event`` is the position found by ``locate_divergence`` (None when
    the log never moves the differing fields off their blank values, when the
    snapshot cannot be decoded, or when the time budget ran out first:
    ``located`` says whether the search ran). ``nondeterministic``: the log
    itself does not reproduce the differing fields from ``first_event`` on
    (an ``apply`` is not deterministic), rather than the snapshot being wrong.
    """

    state: StateKey
    position: int
    diffs: tuple[FieldDiff, ...]
    error: str | None = None
    located: bool = False
    first_event: int | None = None
    first_event_type: str | None = None
    nondeterministic: bool = False
    rebuilds: int = 0
    source: str = "snapshot"
    """What was compared: a stored ``"snapshot"`` or a ``"heads value"`` (a heads row's value)."""

    def describe(self) -> str:
        head = f"{self.state}, {self.source} at {self.position}: "
        if self.error is not None:
            head += f"cannot be decoded ({self.error})"
        elif not self.located:
            head += "differs from the log (event not located: out of time)"
        elif self.first_event is None:
            head += "differs from the log, which never moves those fields off their blank values"
        elif self.nondeterministic:
            head += (
                f"differs from the log, which does not reproduce "
                f"{', '.join(d.field for d in self.diffs)} from event {self.first_event} "
                f"({self.first_event_type}) on: each replay of it gives other values "
                "(an apply hook is not deterministic)"
            )
        else:
            head += (
                f"differs from the log since event {self.first_event} "
                f"({self.first_event_type}), which settled "
                f"{', '.join(d.field for d in self.diffs)} to the value(s) the "
                f"{self.source} contradicts"
            )
        lines = [head]
        for d in self.diffs:
            lines.append(
                f"    {d.field}: {self.source} {_short(d.found)} != log {_short(d.expected)}"
            )
        return "\n".join(lines)


@attrs.frozen
class LinkMismatch:
    """An event whose stored links are not the states its payload names.

    The store links each event to the states it touches when it is fired,
    derived from its payload; loads read a state's events through its links.
    ``missing``: states the payload names without a link (their loads skip
    the event); ``extra``: linked states the payload does not name.
    """

    position: int
    event_type: str
    missing: tuple[StateKey, ...]
    extra: tuple[StateKey, ...]

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(
                f"no link to {', '.join(map(str, self.missing))}, which its payload names "
                "(loads of it skip the event)"
            )
        if self.extra:
            parts.append(
                f"linked to {', '.join(map(str, self.extra))}, which its payload does not name"
            )
        return f"event {self.position} ({self.event_type}): {'; '.join(parts)}"


@attrs.frozen
class LinkCheck:
    """``checked`` events whose stored links were compared with the states their payloads name.

    Events upcast from an older version are not compared (``upcast`` counts
    them): an upcaster may drop a field that named a state.
    """

    ran: bool
    checked: int
    mismatches: tuple[LinkMismatch, ...]
    upcast: int = 0

    @property
    def ok(self) -> bool:
        return not self.mismatches


@attrs.frozen
class DeterminismMismatch:
    """A state whose canonical JSON differs between the two replays from blank.

    In ``diffs``, ``expected`` is the first replay's value and ``found`` the second's.
    """

    state: StateKey
    diffs: tuple[FieldDiff, ...]

    def describe(self) -> str:
        lines = [f"{self.state}: the two replays disagree"]
        for d in self.diffs:
            lines.append(f"    {d.field}: first {_short(d.expected)} != second {_short(d.found)}")
        return "\n".join(lines)


@attrs.frozen
class SnapshotCheck:
    """``checked`` stored snapshots of ``states`` compared with the log."""

    ran: bool
    checked: int
    states: tuple[StateKey, ...]
    mismatches: tuple[SnapshotMismatch, ...]
    sides: tuple[str, str] = ("log", "snapshot")
    """What ``FieldDiff.expected`` and ``FieldDiff.found`` are in this check."""

    @property
    def ok(self) -> bool:
        return not self.mismatches


@attrs.frozen
class DeterminismCheck:
    """``states`` replayed twice from blank; ``digest`` hashes the first replay.

    ``mode`` says where the second replay ran (a subprocess with another
    ``PYTHONHASHSEED``, or this process, and why).
    """

    ran: bool
    mode: str
    states: tuple[StateKey, ...]
    mismatches: tuple[DeterminismMismatch, ...]
    digest: str | None
    sides: tuple[str, str] = ("first replay", "second replay")
    """What ``FieldDiff.expected`` and ``FieldDiff.found`` are in this check."""

    @property
    def ok(self) -> bool:
        return not self.mismatches


@attrs.frozen
class VerifyReport:
    """What ``verify`` found.

    ``ok``: no snapshot is wrong, the log replays deterministically and nothing
    failed. Coupled snapshots out of sync cost a rewind on load, not a wrong
    result: they are ``warnings`` and only fail the run when ``strict_sync``.
    ``complete`` is False when a time budget stopped the run; ``not_checked``
    then says what was skipped (a run that is not complete can still be ok).
    """

    url: str
    head: int
    start: int
    end: int
    sample: tuple[int, int, int] | None  # (sampled states, of how many, seed)
    snapshots: SnapshotCheck
    determinism: DeterminismCheck
    sync: SyncReport | None
    not_checked: tuple[str, ...]
    errors: tuple[str, ...]
    elapsed: float
    strict_sync: bool = False
    # Snapshots loads do not use (an old version without an upcaster, a class changed
    # without a version bump): slower loads, not wrong ones, so warnings.
    unused_snapshots: tuple[str, ...] = ()
    links: LinkCheck = LinkCheck(False, 0, ())
    interrupted: bool = False
    """Ctrl-C stopped the run (``not_checked`` says what was left)."""

    @property
    def sync_ok(self) -> bool:
        """The sync check did not run or found every coupled pair in sync."""
        return self.sync is None or self.sync.in_sync

    @property
    def warnings(self) -> tuple[str, ...]:
        """Findings that do not make a result wrong: coupled snapshots out of sync
        (unless ``strict_sync``) and snapshots loads do not use."""
        if self.strict_sync or self.sync is None:
            return self.unused_snapshots
        return (
            *(f"snapshot sync: {pair} (a load rewinds past it)" for pair in self.sync.out_of_sync),
            *self.unused_snapshots,
        )

    @property
    def ok(self) -> bool:
        return (
            self.snapshots.ok
            and self.links.ok
            and self.determinism.ok
            and (self.sync_ok or not self.strict_sync)
            and not self.errors
        )

    @property
    def complete(self) -> bool:
        return not self.not_checked

    @property
    def replay(self) -> DeterminismCheck:
        """Deprecated alias of ``determinism``."""
        warnings.warn(
            "VerifyReport.replay is deprecated (removed in 0.3.0): use .determinism",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.determinism

    # ------------------------------------------------------------------ text

    def to_text(self) -> str:
        def mark(ok: bool, ran: bool = True) -> str:
            return "SKIP " if not ran else ("ok   " if ok else "FAIL ")

        scope = f"positions {self.start}..{self.end} of {self.head}"
        if self.sample is not None:
            n, of, seed = self.sample
            scope += f", a sample of {n} of {of} state(s) (seed {seed})"
        lines = [f"playthrough verify {self.url} ({scope})"]
        s = self.snapshots
        lines.append(
            f"{mark(s.ok, s.ran)}{SNAPSHOTS}: {s.checked} snapshot(s) of "
            f"{len(s.states)} state(s) checked, {len(s.mismatches)} mismatch(es)"
        )
        lines.extend("  " + m.describe().replace("\n", "\n  ") for m in s.mismatches)
        k = self.links
        upcast = f" ({k.upcast} upcast event(s) not compared)" if k.upcast else ""
        lines.append(
            f"{mark(k.ok, k.ran)}{LINKS}: {k.checked} event(s) checked{upcast}, "
            f"{len(k.mismatches)} mismatch(es)"
            + ("" if k.ran else " (not checked with a sample)" if self.sample else "")
        )
        lines.extend("  " + m.describe() for m in k.mismatches)
        d = self.determinism
        lines.append(
            f"{mark(d.ok, d.ran)}{DETERMINISM}: {len(d.states)} state(s) replayed twice "
            f"from blank ({d.mode}), {len(d.mismatches)} differ"
            + (f"; digest {d.digest[:16]}" if d.digest and d.ok else "")
        )
        lines.extend("  " + m.describe().replace("\n", "\n  ") for m in d.mismatches)
        if self.sync is None:
            lines.append(f"{mark(True, False)}{SYNC}: not checked")
        else:
            if self.sync_ok:
                sync_mark = mark(True)
            else:
                sync_mark = "FAIL " if self.strict_sync else "WARN "
            detail = str(self.sync).replace("\n", "\n  ")
            if not self.sync_ok:
                detail += (
                    "\n  (--strict-sync: a failure)"
                    if self.strict_sync
                    else "\n  (a load rewinds past them: slower, not wrong; --strict-sync fails)"
                )
            lines.append(f"{sync_mark}{SYNC}: {detail}")
        for error in self.errors:
            lines.append(f"ERROR {error}")
        for unused in self.unused_snapshots:
            lines.append(f"WARN  {unused}")
        for item in self.not_checked:
            lines.append(f"not checked: {item}")
        verdict = "OK" if self.ok else "FAILED"
        if self.warnings:
            verdict += f" with {len(self.warnings)} warning(s)"
        if self.interrupted:
            verdict += " (incomplete: interrupted)"
        elif not self.complete:
            verdict += " (incomplete: time budget reached)"
        lines.append(f"{verdict} in {self.elapsed:.2f}s")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    # ------------------------------------------------------------------ json

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``json.dumps(report.to_dict())``)."""
        found: dict[str, Any] = _json.unstructure(self)
        return found

    # ------------------------------------------------------------------ junit

    def to_junit_xml(self) -> str:
        """JUnit XML for CI systems: one testcase per check and state."""
        suite = ElementTree.Element("testsuite", name="playthrough.verify")
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

        def case(classname: str, name: str) -> ElementTree.Element:
            counts["tests"] += 1
            return ElementTree.SubElement(suite, "testcase", classname=classname, name=name)

        def fail(el: ElementTree.Element, message: str, text: str) -> None:
            counts["failures"] += 1
            node = ElementTree.SubElement(el, "failure", message=message)
            node.text = text

        if self.warnings:
            props = ElementTree.SubElement(suite, "properties")
            count = str(len(self.warnings))
            ElementTree.SubElement(props, "property", name="warnings", value=count)
        by_state: dict[StateKey, list[SnapshotMismatch]] = {}
        for m in self.snapshots.mismatches:
            by_state.setdefault(m.state, []).append(m)
        for key in self.snapshots.states:
            el = case("playthrough.verify.snapshots", str(key))
            mismatches = by_state.get(key)
            if mismatches:
                fail(
                    el,
                    f"{len(mismatches)} snapshot(s) of {key} differ from the log",
                    "\n".join(m.describe() for m in mismatches),
                )
        if self.links.ran:
            el = case("playthrough.verify", LINKS)
            if self.links.mismatches:
                fail(
                    el,
                    f"{len(self.links.mismatches)} event(s) whose links differ from their payloads",
                    "\n".join(m.describe() for m in self.links.mismatches),
                )
        unstable = {m.state: m for m in self.determinism.mismatches}
        for key in self.determinism.states:
            el = case("playthrough.verify.determinism", str(key))
            bad = unstable.get(key)
            if bad is not None:
                fail(el, f"replays of {key} are not deterministic", bad.describe())
        if self.sync is not None:
            el = case("playthrough.verify", SYNC)
            if not self.sync_ok:
                message = f"{len(self.sync.out_of_sync)} coupled pair(s) out of sync"
                if self.strict_sync:
                    fail(el, message, str(self.sync))
                else:
                    props = ElementTree.SubElement(el, "properties")
                    ElementTree.SubElement(props, "property", name="warning", value=message)
                    out = ElementTree.SubElement(el, "system-out")
                    out.text = "WARNING " + "\nWARNING ".join(self.warnings)
        for item in self.not_checked:
            el = case("playthrough.verify", f"not checked: {item}")
            counts["skipped"] += 1
            ElementTree.SubElement(el, "skipped", message=item)
        for error in self.errors:
            el = case("playthrough.verify", "error")
            counts["errors"] += 1
            node = ElementTree.SubElement(el, "error", message=error.splitlines()[0])
            node.text = error
        for name, value in counts.items():
            suite.set(name, str(value))
        suite.set("time", f"{self.elapsed:.3f}")
        root = ElementTree.Element("testsuites")
        root.append(suite)
        ElementTree.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(
            root, encoding="unicode"
        )


# --------------------------------------------------------------------------- JSON


def _key_dict(key: StateKey) -> dict[str, Any]:
    value = decode_id(key.id)
    return {"type": key.type, "id": str(value) if value is not None else None, "name": str(key)}


_json = converter.copy()
"""The project's converter plus the report's hooks (kept off the domain's converter:
a user's state may hold a ``StateKey`` and must encode as before)."""

_json.register_unstructure_hook(StateKey, _key_dict)


def _hook(cls: type[Any], computed: dict[str, Callable[[Any], Any]], **overrides: Any) -> None:
    """Unstructure ``cls`` field by field, then add the ``computed`` (property) values first."""
    fields = make_dict_unstructure_fn(cls, _json, **overrides)

    def unstructure(value: Any) -> dict[str, Any]:
        out = {name: get(value) for name, get in computed.items()}
        out.update(fields(value))
        return out

    _json.register_unstructure_hook(cls, unstructure)


def _sample_dict(sample: tuple[int, int, int] | None) -> dict[str, int] | None:
    return None if sample is None else dict(zip(("size", "of", "seed"), sample, strict=True))


_count = override(unstruct_hook=len)
_hook(FieldDiff, {}, _a_is_found=override(omit=True))
_hook(SnapshotCheck, {"ok": lambda c: c.ok}, states=_count)
_hook(DeterminismCheck, {"ok": lambda c: c.ok}, states=_count)
_hook(LinkCheck, {"ok": lambda c: c.ok})
_hook(SyncReport, {"ok": lambda s: s.in_sync})
_hook(
    VerifyReport,
    {
        "ok": lambda r: r.ok,
        "complete": lambda r: r.complete,
        "warnings": lambda r: list(r.warnings),
    },
    sample=override(unstruct_hook=_sample_dict),
    elapsed=override(unstruct_hook=lambda t: round(t, 3)),
)
