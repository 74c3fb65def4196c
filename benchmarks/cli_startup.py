"""Start-up time of the `betavae` command line beside `python -c pass`, in one run.

Times `betavae --help`, `--version`, `plugins` and `datasets` as whole processes (what a
user waits for), each repeated, the order rotated every round so that machine noise
falls on every command alike. Prints the median and the spread (min-max) of each, its
ratio to the interpreter's own start-up, and the goals of issue 12 (`--help` <= 0.5 s,
`plugins` <= 1.0 s on the 2-core development machine).

    python benchmarks/cli_startup.py [--repeats 9] [--json out.json]

To measure another checkout with the same interpreter, put it first on PYTHONPATH
(e.g. `PYTHONPATH=/tmp/old:/tmp/old/plugins python benchmarks/cli_startup.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BETAVAE = [sys.executable, "-c", "import sys; from betavae_core.cli import main; "
           "sys.argv[0] = 'betavae'; main()"]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "betavae --help": [*BETAVAE, "--help"],
    "betavae --version": [*BETAVAE, "--version"],
    "betavae plugins": [*BETAVAE, "plugins"],
    "betavae datasets": [*BETAVAE, "datasets"],
}
GOALS = {"betavae --help": 0.5, "betavae plugins": 1.0}


def time_once(argv: list[str]) -> float:
    """Wall seconds of one process, its output discarded; a failure stops the benchmark."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode()[-500:]}")
    return elapsed


def measure(repeats: int) -> dict[str, list[float]]:
    """Each command `repeats` times, the order rotated by one every round."""
    names = list(COMMANDS)
    times: dict[str, list[float]] = {n: [] for n in names}
    for name in names:  # one untimed warm-up each: file-system caches, .pyc files
        time_once(COMMANDS[name])
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(time_once(COMMANDS[name]))
    return times


def table(times: dict[str, list[float]]) -> list[dict[str, float | str]]:
    base = statistics.median(times["python -c pass"])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        goal = GOALS.get(name)
        rows.append({"command": name, "median_s": median, "min_s": min(values),
                     "max_s": max(values), "ratio_to_python": median / base,
                     "goal_s": goal if goal is not None else "",
                     "verdict": "" if goal is None else ("PASS" if median <= goal else "MISS")})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows here.")
    args = parser.parse_args()
    rows = table(measure(args.repeats))
    print(f"{'command':<20} {'median s':>9} {'min-max s':>13} {'x python':>9} {'goal':>6}")
    for r in rows:
        goal = f"{r['goal_s']:.1f} {r['verdict']}" if r["goal_s"] != "" else ""
        print(f"{r['command']:<20} {r['median_s']:>9.3f} "
              f"{r['min_s']:>6.3f}-{r['max_s']:<6.3f} {r['ratio_to_python']:>9.1f} {goal:>6}")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
