"""kill -9 of `clgemm tune` at random points, then resume: no orphan, nothing lost or repeated.

Each run starts `clgemm tune` (64^3, random strategy, one compile worker, the space narrowed to
small kernels so compiles are quick) on a fresh database, waits for a random number of
measurements plus a random delay (so the kill lands in a compile, a measurement or a write),
sends SIGKILL to the tuner process alone (not its group: its worker and multiprocessing's
resource tracker must go by themselves), and checks:

- orphans: every process the tuner had started is gone within 10 s of the kill;
- resume: the same command again reports the rows already there, finishes the budget,
  measures no schedule twice and leaves the first run's rows untouched;
- state: the killed run is marked 'interrupted', the resumed one 'budget'.

    PYTHONPATH=src python3 benchmarks/errors/kill_tuner.py --runs 20 \\
        -o records/cpu-pocl-amd-epyc/2026-12-06-fault-campaign/kill_tuner.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# `clgemm tune`'s own main with PoCL's space narrowed to small kernels (quick compiles).
TIGHT_CLI = (
    "import sys\n"
    "from clgemm import plan\n"
    "from clgemm.schedule import DeviceLimits, SearchSpace\n"
    "tight = SearchSpace(DeviceLimits(max_work_group_size=64, local_mem_bytes=4096, "
    "max_accumulators=24))\n"
    "plan.search_space = lambda rt: tight\n"
    "from clgemm.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _rows(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT schedule, time_s, run_id, created FROM measurements "
                           "ORDER BY created").fetchall()
    finally:
        con.close()


def _runs(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT run_id, status FROM runs ORDER BY started").fetchall()
    finally:
        con.close()


def _children() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    out[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return out


def descendants(pid: int) -> set[int]:
    tree = _children()
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for child, parent in tree.items():
            if parent == p and child not in found:
                found.add(child)
                todo.append(child)
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has exited; only its exit status waits)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_once(db: Path, seed: int, budget: int = 10, env: dict | None = None,
              timeout_s: float = 180.0) -> dict:
    """One kill-and-resume run; returns what was seen (see the module docstring). A tuner
    that finished its budget before the kill landed is no kill: `killed` is False then."""
    rng = random.Random(seed)
    cmd = [sys.executable, "-c", TIGHT_CLI, "tune", "--size", "64", "--strategy", "random",
           "--seed", str(seed), "--budget", str(budget), "--workers", "1", "--repeats", "2",
           "--db", str(db)]
    env = env or os.environ.copy()
    at_rows = rng.randrange(0, budget // 2)
    delay = rng.uniform(0.0, 0.6)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    result: dict = {"seed": seed, "budget": budget, "kill_after_rows": at_rows,
                    "extra_delay_s": round(delay, 3)}
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("tune exited before the kill: "
                                   + proc.stderr.read().decode()[-1500:])
            try:
                if db.exists() and len(_rows(db)) >= at_rows and descendants(proc.pid):
                    break
            except sqlite3.Error:
                pass  # schema not there yet
            time.sleep(0.02)
        else:
            raise RuntimeError(f"no {at_rows} rows within {timeout_s} s")
        time.sleep(delay)
        family = descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # the tuner alone
        proc.wait()
        result["killed"] = proc.returncode == -signal.SIGKILL
        if not result["killed"]:
            return result  # it had finished: nothing was killed, nothing to check
        gone_by = time.monotonic() + 10.0
        while time.monotonic() < gone_by and any(running(p) for p in family):
            time.sleep(0.05)
        orphans = sorted(p for p in family if running(p))
        result["processes_started"] = len(family)
        result["orphans"] = len(orphans)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # clean up whatever stayed (counted above)
        except ProcessLookupError:
            pass
        if proc.poll() is None:
            proc.wait()
    before = _rows(db)
    killed = _runs(db)
    result["rows_at_kill"] = len(before)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    after = _rows(db)
    by_key = {r[0]: r for r in after}
    statuses = dict(_runs(db))
    result.update({
        "resume_exit": done.returncode,
        "resume_saw_rows": f"{len(before)} results already in" in done.stderr,
        "rows_after": len(after),
        "repeated": len(after) - len(by_key),
        "lost_or_changed": sum(by_key.get(r[0]) != r for r in before),
        "killed_run_status": [statuses[r[0]] for r in killed],
        "resumed_run_status": [s for rid, s in statuses.items() if rid not in dict(killed)],
    })
    result["ok"] = (result["orphans"] == 0 and done.returncode == 0 and result["resume_saw_rows"]
                    and len(after) == budget and result["repeated"] == 0
                    and result["lost_or_changed"] == 0
                    and result["killed_run_status"] == ["interrupted"]
                    and result["resumed_run_status"] == ["budget"])
    if not result["ok"]:
        result["resume_stderr_tail"] = done.stderr[-800:]
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--budget", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", help="JSON result")
    args = p.parse_args()
    results = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clgemm-kill-") as tmp:
        env = os.environ.copy()
        env.setdefault("CLGEMM_DEVICE", "Portable Computing Language")
        env["CLGEMM_CACHE_DIR"] = str(Path(tmp) / "cache")  # every compile a real one
        missed = 0
        for i in range(args.runs * 3):
            if len(results) == args.runs:
                break
            r = kill_once(Path(tmp) / f"run{i}.sqlite", args.seed + i, args.budget, env)
            if not r["killed"]:
                missed += 1
                print(f"seed {args.seed + i}: the tuner finished before the kill; not counted",
                      flush=True)
                continue
            results.append(r)
            print(f"run {len(results) - 1} (seed {args.seed + i}): killed after "
                  f"{r['rows_at_kill']} rows (+{r['extra_delay_s']} s), "
                  f"{r['processes_started']} child process(es), {r['orphans']} orphan(s), "
                  f"resume {r['rows_after']}/{args.budget} rows, {r['repeated']} repeated, "
                  f"{r['lost_or_changed']} lost, killed run {r['killed_run_status']}: "
                  f"{'ok' if r['ok'] else 'FAIL'}", flush=True)
    summary = {"runs": len(results), "finished_before_kill": missed,
               "ok": sum(r["ok"] for r in results),
               "orphans": sum(r["orphans"] for r in results),
               "repeated": sum(r["repeated"] for r in results),
               "lost_or_changed": sum(r["lost_or_changed"] for r in results),
               "wall_s": round(time.monotonic() - t0, 1)}
    print(json.dumps(summary))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"summary": summary, "runs": results}, indent=1))
    return 0 if summary["ok"] == summary["runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
