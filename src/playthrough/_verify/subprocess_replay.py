"""The determinism check's second replay, run in a subprocess with another ``PYTHONHASHSEED``.

Hooks that depend on the iteration order of sets or dicts of strings give the
same result on every replay in one process; only a process hashing with
another seed shows them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path

from .._model import StateKey
from .._reconstitution import StateReconstitutor
from .._stores import open_store
from .rebuild import Progress, replay_encodings


class SubprocessFailed(Exception):
    """The subprocess exited with an error; the message is its last line of stderr."""


def other_hash_seed() -> str:
    """A PYTHONHASHSEED that differs from this process's."""
    current = os.environ.get("PYTHONHASHSEED", "")
    if current.isdigit():
        return str((int(current) + 1) % 4_294_967_296)
    return "0"  # this process hashes with a random seed (or one it was not told)


def replay_in_subprocess(
    url: str,
    apps: Sequence[str],
    seed: str,
    keys: list[StateKey] | None,
    start: int,
    end: int,
    *,
    timeout: float | None = None,
    progress: Progress | None = None,
) -> dict[StateKey, str]:
    """``replay_encodings`` of the store at ``url``, in a subprocess importing ``apps``.

    Raises :class:`SubprocessFailed` when the subprocess fails and
    ``subprocess.TimeoutExpired`` after ``timeout`` seconds.
    """
    with SubprocessReplay(url, apps, seed, keys, start, end, progress=progress) as running:
        return running.result(timeout)


class SubprocessReplay:
    """:func:`replay_in_subprocess` started now and collected later (:meth:`result`), so
    the caller works meanwhile; leaving the ``with`` block ends a subprocess still running
    and removes its files."""

    def __init__(
        self,
        url: str,
        apps: Sequence[str],
        seed: str,
        keys: list[StateKey] | None,
        start: int,
        end: int,
        *,
        progress: Progress | None = None,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="playthrough-verify-")
        tmp = Path(self._tmp.name)
        spec = tmp / "spec.json"
        self._out = tmp / "states.jsonl"
        self._end = end
        self._progress = progress
        spec.write_text(
            json.dumps(
                {
                    "url": url,
                    "apps": list(apps),
                    "start": start,
                    "end": end,
                    "keys": None if keys is None else [list(k) for k in keys],
                    "out": str(self._out),
                }
            ),
            encoding="utf-8",
        )
        env = dict(os.environ)
        env["PYTHONHASHSEED"] = seed
        paths = [p or os.getcwd() for p in sys.path]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        if progress is not None:
            progress("determinism", 0, end)
        self._stderr = (tmp / "stderr.txt").open("w+", encoding="utf-8")
        self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(spec)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def __enter__(self) -> SubprocessReplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()  # the subprocess this object started, and only it
            process.wait()
        self._stderr.close()
        self._tmp.cleanup()

    def result(self, timeout: float | None = None) -> dict[StateKey, str]:
        """Wait for the subprocess (``subprocess.TimeoutExpired`` after ``timeout``
        seconds; it is then ended) and read the states it wrote."""
        process = self._process
        if process is None:
            raise RuntimeError("this subprocess replay was closed")
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise
        if code != 0:
            self._stderr.seek(0)
            lines = self._stderr.read().strip().splitlines()
            raise SubprocessFailed((lines[-1:] or [f"exit {code}"])[0])
        found: dict[StateKey, str] = {}
        with self._out.open(encoding="utf-8") as lines_in:
            for line in lines_in:
                row = json.loads(line)
                found[StateKey(row["type"], row["id"])] = row["data"]
        if self._progress is not None:
            self._progress("determinism", self._end, self._end)
        return found


_CHILD = (
    "import sys; from playthrough._verify.subprocess_replay import child_main; "
    "sys.exit(child_main(sys.argv[1]))"
)


def child_main(spec_path: str) -> int:
    """Entry point of the subprocess that runs the second replay."""
    import importlib

    try:
        spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
        for module in spec["apps"]:
            importlib.import_module(module)
        keys = None if spec["keys"] is None else [StateKey(t, i) for t, i in spec["keys"]]
        store = open_store(spec["url"], create=False)  # a reader: never creates or migrates
        try:
            found = replay_encodings(
                store, StateReconstitutor(), start=spec["start"], end=spec["end"], keys=keys
            )
        finally:
            store.close()
        with open(spec["out"], "w", encoding="utf-8") as out:
            for key, data in found.items():
                out.write(json.dumps({"type": key.type, "id": key.id, "data": data}) + "\n")
    except Exception:  # noqa: BLE001 - the parent reports the last line
        traceback.print_exc()
        return 3
    return 0
