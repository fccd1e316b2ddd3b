"""Build the example databases and check them with ``playthrough verify``.

    python examples/verify_examples.py [--junit-dir DIR]

- ``bank`` and ``game``: built by ``playthrough demo --db PATH``; must verify (exit 0);
- ``shop``: the shop example with a snapshot set; must verify (exit 0);
- ``shop_flawed``: the same story with a wall-clock ``apply``; must FAIL (exit 1);
- ``bank_tampered``: the bank database with one snapshot rewritten; must FAIL (exit 1);
- ``game_out_of_sync``: the game with two coupled snapshots on either side of the
  event that couples them: a warning (a load rewinds, slower but not wrong), so
  exit 0; with ``--strict-sync`` it must FAIL (exit 1).

Every command runs with this interpreter, so run the script with the project's
Python (``.venv/bin/python examples/verify_examples.py``). The script exits 1
when any outcome differs from the expected one; with ``--junit-dir`` each
verification also writes ``DIR/NAME.xml``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

CLI = [sys.executable, "-m", "playthrough._cli"]


def run(args: list[str]) -> int:
    print("$ playthrough " + " ".join(args), flush=True)
    return subprocess.run([*CLI, *args], check=False).returncode


def build_shop(path: Path, module: str) -> None:
    """Fire a shop story into a new SQLite file and write a snapshot set."""
    import importlib

    from playthrough import Engine

    story = importlib.import_module(module).story
    with Engine.open(f"sqlite:///{path}") as engine:
        story(engine)
        engine.admin.snapshot()


def tamper_bank(path: Path) -> None:
    from playthrough import Engine
    from playthrough.examples import bank
    from playthrough.examples.tamper import corrupt_snapshot

    with Engine.open(f"sqlite:///{path}") as engine:
        corrupt_snapshot(engine, bank.Account, 2, changes={"balance": 9_999})


def unsync_game(path: Path) -> None:
    """The game story with player 1 snapshotted after event 5 and game 7 before it."""
    from playthrough import Engine
    from playthrough.examples import game

    # Without heads values: a current value would make both loads need no rewind.
    with Engine.open(f"sqlite:///{path}", head_values=False) as engine:
        game.story(engine)
        engine.admin.snapshot([(game.PlayerState, 1)], at=6)
        engine.admin.snapshot([(game.GameState, 7)], at=4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--junit-dir", type=Path, default=None)
    options = parser.parse_args()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="playthrough-examples-") as tmp:
        work = Path(tmp)
        cases: list[tuple[str, str, int, list[str]]] = []
        for example in ("bank", "game"):
            db = work / f"{example}.db"
            if run(["demo", "--example", example, "--db", str(db)]) != 0:
                failures.append(f"demo {example} failed")
                continue
            cases.append((example, f"playthrough.examples.{example}", 0, []))
        build_shop(work / "shop.db", "playthrough.examples.shop")
        cases.append(("shop", "playthrough.examples.shop", 0, []))
        build_shop(work / "shop_flawed.db", "playthrough.examples.shop_flawed")
        cases.append(("shop_flawed", "playthrough.examples.shop_flawed", 1, []))
        unsync_game(work / "game_out_of_sync.db")
        cases.append(("game_out_of_sync", "playthrough.examples.game", 0, []))
        cases.append(("game_out_of_sync", "playthrough.examples.game", 1, ["--strict-sync"]))
        if (work / "bank.db").exists():
            tampered = work / "bank_tampered.db"
            for suffix in ("", "-wal"):  # a WAL file only remains if not checkpointed
                source = work / f"bank.db{suffix}"
                if source.exists():
                    Path(f"{tampered}{suffix}").write_bytes(source.read_bytes())
            tamper_bank(tampered)
            cases.append(("bank_tampered", "playthrough.examples.bank", 1, []))
        for name, app, expected, extra in cases:
            label = " ".join([name, *extra])
            args = ["verify", f"sqlite:///{work / name}.db", "--app", app, "--no-progress", *extra]
            if options.junit_dir is not None:
                report = name + "".join(f"_{x.strip('-').replace('-', '_')}" for x in extra)
                args += ["--junit-xml", str(options.junit_dir / f"{report}.xml")]
            code = run(args)
            verdict = "as expected" if code == expected else f"EXPECTED EXIT {expected}"
            print(f"--> {label}: exit {code} ({verdict})\n", flush=True)
            if code != expected:
                failures.append(f"{label}: exit {code}, expected {expected}")
    if failures:
        print("verify_examples FAILED: " + "; ".join(failures))
        return 1
    print(f"verify_examples: all {len(cases)} outcomes as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
