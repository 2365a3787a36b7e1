"""`clgemm fleet`: `clgemm tune` over many devices and compile workers (Dask distributed)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

from . import args as a

_HELP = """\
Tune several shapes on every device of a Dask cluster into one tuning database: one worker per
device measures, compile workers build, the driver (this process) alone writes the database.
Work is leased: a worker killed mid-measurement loses nothing and repeats nothing, a device
joining late gets its own searches, an identical card shares its twin's. Each (device, shape)
search is `clgemm tune`'s: with the same --seed and --batch equal to tune's --workers it
proposes the same schedules.

Without --cluster a cluster is started here: one worker per --local-devices entry, plus
--compile-workers. A cluster of your own:
    dask scheduler
    DASK_DISTRIBUTED__WORKER__DAEMON=False dask worker tcp://HOST:8786 --name ocl:0 --nthreads 1 --resources measure=1
    dask worker tcp://HOST:8786 --name compile-0 --nthreads 1 --resources compile=1
(needs the extra: pip install 'clgemm[fleet]')."""


def register(sub) -> None:
    from ..engine import STRATEGIES

    p = sub.add_parser("fleet", help="tune on many devices at once (Dask), one tuning DB",
                       description=_HELP, formatter_class=_raw())
    p.add_argument("--size", "--shape", dest="shapes", action="append", required=True,
                   type=a.shape, help="N (square) or MxNxK; repeat for several shapes")
    p.add_argument("--cluster", type=a.dask_address,
                   help="a running Dask scheduler (tcp://HOST:PORT); default: start one here")
    p.add_argument("--local-devices", type=a.fleet_devices, default=None,
                   help="device workers to start here: `gpus` (one per GPU), `gpus:N` (the "
                        "first N GPUs), or a comma list "
                        "of ocl:SPEC[@TAG] / sim:SPACE.json[@TAG] (default: ocl:<the default "
                        "device>)")
    p.add_argument("--compile-workers", type=a.count, default=None,
                   help="compile workers to start here (default: CPU cores - device workers, "
                        "at least 1; 0: device workers compile for themselves)")
    p.add_argument("--strategy", default="auto", choices=["auto", *STRATEGIES])
    p.add_argument("--budget", type=a.positive_int, default=100,
                   help="evaluations per (device, shape) in the database")
    p.add_argument("--time-limit", type=a.positive, default=None,
                   help="stop proposing after this many seconds (in-flight work finishes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=a.positive_int, default=4,
                   help="schedules proposed at once per search (= `clgemm tune --workers`)")
    p.add_argument("--repeats", type=a.positive_int, default=5)
    p.add_argument("--lease", type=a.positive, default=300.0,
                   help="seconds a measurement may take before it is issued again")
    p.add_argument("--wait-devices", type=a.positive, default=120.0,
                   help="give up when no device worker is in the fleet for this many seconds")
    p.add_argument("--db", type=a.database(),
                   help="tuning database (default: $CLGEMM_TUNE_DB or user data dir)")
    p.add_argument("--distill", type=a.output_dir, default=None,
                   help="then distill each OpenCL device's table into this folder")
    p.add_argument("--kill", type=a.kill_spec, action="append", default=[],
                   help="fault drill: kill -9 the local worker WORKER once N results are in "
                        "(WORKER@N, e.g. compile-0@10); its nanny restarts it")
    p.add_argument("--json", type=a.output_file, help="write the run summary here")
    p.set_defaults(func=_fleet)


def _raw():
    import argparse

    return argparse.RawDescriptionHelpFormatter


def _local_devices(given: tuple[str, ...] | None) -> list[str]:
    from ..device import devices, get_device
    from ..errors import NoDeviceError

    if given is None:
        return [f"ocl:{get_device().index}"]
    if given[0].startswith("gpus"):
        gpus = [d for d in devices() if d.type == "GPU"]
        if not gpus:
            raise NoDeviceError(f"--local-devices {given[0]}: this host has no OpenCL GPU; "
                                "name devices instead (see `clgemm devices`)")
        count = int(given[0][5:]) if given[0] != "gpus" else len(gpus)
        return [f"ocl:{d.index}" for d in gpus[:count]]
    return list(given)


class _Killer:
    """The --kill drill: kill -9 a local worker process once the driver holds N results."""

    def __init__(self, client, driver, plan: list[tuple[str, int]], log) -> None:
        self.client, self.driver, self.plan, self.log = client, driver, list(plan), log
        self.done: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="clgemm-fleet-kill",
                                        daemon=True)

    def __enter__(self) -> "_Killer":
        if self.plan:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        while self.plan and not self._stop.wait(0.05):
            results = self.driver.book.counts.accepted
            for name, after in [p for p in self.plan if p[1] <= results]:
                self.plan.remove((name, after))
                workers = self.client.scheduler_info(n_workers=-1)["workers"]
                address = [ad for ad, w in workers.items() if str(w.get("name")) == name]
                if not address:
                    print(f"fleet: --kill {name}: no such worker now", file=self.log)
                    continue
                pid = self.client.run(os.getpid, workers=address)[address[0]]
                os.kill(pid, signal.SIGKILL)
                self.done.append({"worker": name, "pid": pid, "after_results": results})
                print(f"fleet: killed worker {name} (pid {pid}, kill -9) after {results} "
                      "results", file=self.log, flush=True)


def _counts(db, searches) -> dict:
    """Lost and duplicated results of this run, counted in the database against the
    proposals: a proposal without a row is lost, a row written twice a duplicate."""
    proposed = written = rows = 0
    for s in searches:
        proposed += s.proposed
        written += s.written
        rows += db.run_rows(s.run_id)
    return {"proposed": proposed, "written": written, "rows": rows,
            "lost": proposed - rows, "duplicated": written - rows}


def _fleet(args) -> int:
    from ..fleet.cluster import connect, local_cluster
    from ..fleet.driver import fleet_config
    from ..tune.db import TuningDB
    from ..tune.measure import Problem

    log = sys.stderr
    if args.kill and args.cluster:
        from ..errors import UsageError

        raise UsageError("--kill drills workers started here: leave out --cluster")
    config = fleet_config([Problem(*s) for s in args.shapes], strategy=args.strategy,
                          budget_evals=args.budget, budget_seconds=args.time_limit,
                          seed=args.seed, batch=args.batch, repeats=args.repeats,
                          lease_s=args.lease, wait_devices_s=args.wait_devices)
    start = time.monotonic()
    with TuningDB(args.db) as db:
        if args.cluster:
            with connect(args.cluster) as client:
                result, kills = _run(client, config, db, [], log)
            workers = {"cluster": args.cluster}
        else:
            names = _local_devices(args.local_devices)
            compile_workers = (args.compile_workers if args.compile_workers is not None
                               else max(1, (os.cpu_count() or 2) - len(names)))
            print(f"fleet: starting {len(names)} device worker(s) ({', '.join(names)}) and "
                  f"{compile_workers} compile worker(s) here", file=log, flush=True)
            with local_cluster(names, compile_workers) as (client, _):
                print(f"fleet: cluster up in {time.monotonic() - start:.1f} s", file=log)
                result, kills = _run(client, config, db, args.kill, log)
            workers = {"devices": names, "compile": compile_workers}
        counts = _counts(db, result.searches)
        for s in result.searches:
            gf = f"{s.best_gflops:,.1f} GFLOPS" if s.best_gflops else "nothing valid"
            print(f"{s.device_name} {s.problem.m}x{s.problem.n}x{s.problem.k} ({s.strategy}): "
                  f"best {gf} ({s.best or '-'}), {s.written} measured now ({s.failures} failed), "
                  f"{s.resumed} resumed, {s.status}")
        lc = result.leases
        print(f"fleet: {counts['proposed']} proposed, {counts['rows']} rows: {counts['lost']} "
              f"lost, {counts['duplicated']} duplicated; leases {lc.issued} issued "
              f"({lc.reissued} again: {lc.expired} expired, {lc.failed} failed), "
              f"{lc.duplicates} duplicate answers dropped; {result.wall_s:.1f} s tuning, "
              f"{time.monotonic() - start:.1f} s in all")
        tables = _distill(db, result, args.distill, log) if args.distill else {}
    if args.json:
        from ..atomic import write_text

        summary = {
            "schema": "clgemm.fleet/1", "workers": workers, "seed": args.seed,
            "batch": args.batch, "budget": args.budget, "time_limit_s": args.time_limit,
            "counts": counts, "leases": lc.as_dict(), "kills": kills,
            "wall_s": result.wall_s, "total_s": time.monotonic() - start,
            "workers_seen": result.workers_seen, "workers_lost": result.workers_lost,
            "measured_by": result.measured_by, "compiled_by": result.compiled_by,
            "db": str(db.path), "tables": tables,
            "searches": [{"device": s.device_name, "device_fp": s.device_fp,
                          "shape": [s.problem.m, s.problem.n, s.problem.k],
                          "strategy": s.strategy, "run_id": s.run_id, "proposed": s.proposed,
                          "written": s.written, "resumed": s.resumed, "failures": s.failures,
                          "best": s.best, "best_time_s": s.best_time_s,
                          "best_gflops": s.best_gflops, "status": s.status}
                         for s in result.searches],
        }
        write_text(args.json, json.dumps(summary, indent=1))
    return 0 if counts["lost"] == 0 and counts["duplicated"] == 0 else 1


def _run(client, config, db, kill, log) -> tuple:
    """(the driver's result, the --kill drills done)."""
    from ..fleet.cluster import DaskPool
    from ..fleet.driver import FleetDriver

    driver = FleetDriver(config, db, DaskPool(client), log=log)
    with _Killer(client, driver, kill, log) as killer:
        result = driver.run()
    return result, killer.done


def _distill(db, result, folder: str, log) -> dict[str, str]:
    """One table per OpenCL device of this run (recorded spaces have none to replay)."""
    from pathlib import Path

    from ..device import get_device
    from ..tune.distill import distill, write_table

    tables = {}
    for fp in sorted({s.device_fp for s in result.searches if not s.device_fp.startswith("sim-")}):
        info = get_device(fp)
        table = distill(db, fp, log=log)
        path = Path(folder) / f"{info.slug}.json"
        write_table(table, path)
        tables[info.name] = str(path)
        print(f"fleet: {info.name}: table -> {path}", file=log)
    return tables
