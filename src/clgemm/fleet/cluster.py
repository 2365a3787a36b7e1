"""The fleet on Dask distributed (the optional extra `clgemm[fleet]`).

A cluster is any Dask scheduler whose workers are named and resourced as `fleet.tasks` says:
    dask scheduler
    DASK_DISTRIBUTED__WORKER__DAEMON=False dask worker tcp://HOST:8786 --name ocl:0 --nthreads 1 --resources measure=1
    dask worker tcp://HOST:8786 --name compile-1 --nthreads 1 --resources compile=1
or one started here (`local_cluster`): one process per worker, each under a nanny that starts
it again when it dies (kill -9 included), under the same name and a new address.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Iterator

from ..errors import ClgemmError
from .lease import ItemKey
from .tasks import COMPILE, MEASURE, SimTiming, compile_item, describe, measure_item


class FleetMissingError(ClgemmError, RuntimeError):
    pass


def _distributed():
    # Dask reads its logging levels on import, in this process and in each worker it spawns:
    # its INFO lines (every worker start and stop) would drown the run's own.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    try:
        import distributed
    except ImportError as exc:
        raise FleetMissingError(
            f"fleet tuning runs on Dask distributed, which is not installed ({exc}); "
            "install it with `pip install 'clgemm[fleet]'` (offline: `pip install --no-index "
            "--find-links WHEELS distributed`)") from None
    return distributed


class DaskPool:
    """`driver.Pool` over a Dask client."""

    def __init__(self, client) -> None:
        self.client = client
        self._workers: dict[str, dict] = {}
        self._seen = 0.0

    def _info(self) -> dict[str, dict]:
        now = time.monotonic()
        if now - self._seen > 0.5:  # one scheduler round trip per half second at most
            self._workers = self.client.scheduler_info(n_workers=-1)["workers"]
            self._seen = now
        return self._workers

    def device_workers(self) -> dict[str, str]:
        return {a: str(w.get("name")) for a, w in self._info().items()
                if (w.get("resources") or {}).get(MEASURE)}

    def compile_workers(self) -> int:
        return sum(1 for w in self._info().values() if (w.get("resources") or {}).get(COMPILE))

    def describe(self, address: str):
        return self.client.submit(describe, workers=[address], allow_other_workers=False,
                                  pure=False)

    def submit(self, item: ItemKey, kind: str, addresses: list[str], compile: bool,
               repeats: int, seed: int, sim: SimTiming, space_path: str | None):
        built = None
        if compile:
            built = self.client.submit(compile_item, kind, item.device_fp, item.problem,
                                       item.schedule, sim, space_path, resources={COMPILE: 1},
                                       pure=False)
        return self.client.submit(measure_item, item.problem, item.schedule, repeats, seed,
                                  built, sim, workers=addresses, allow_other_workers=False,
                                  pure=False)

    def wait(self, handles: list, timeout: float) -> None:
        if not handles:
            time.sleep(timeout)
            return
        try:
            _distributed().wait(handles, timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            pass


@contextmanager
def local_cluster(devices: list[str], compile_workers: int) -> Iterator[tuple[object, dict]]:
    """A scheduler and one worker process per device worker name (`ocl:0@a`, `sim:PATH`) and
    per compile worker, on this machine; yields (the client, name -> nanny)."""
    _distributed()
    import dask
    from distributed import Client, Nanny, Scheduler, SpecCluster

    workers = {}
    for name in devices:
        workers[name] = {"cls": Nanny, "options": {"nthreads": 1, "name": name,
                                                   "resources": {MEASURE: 1},
                                                   "memory_limit": 0, "dashboard": False}}
    for i in range(compile_workers):
        workers[f"compile-{i}"] = {"cls": Nanny, "options": {"nthreads": 1,
                                                             "name": f"compile-{i}",
                                                             "resources": {COMPILE: 1},
                                                             "memory_limit": 0, "dashboard": False}}
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": None}}
    # a task whose workers keep dying is the lease's business, not an error (default: 3);
    # workers start a child process for their OpenCL work (fleet.tasks), so not daemonic
    with dask.config.set({"distributed.scheduler.allowed-failures": 10,
                          "distributed.worker.daemon": False}):
        cluster = SpecCluster(workers=workers, scheduler=scheduler, silence_logs=40)
        try:
            with Client(cluster) as client:
                client.wait_for_workers(len(workers), timeout=120)
                yield client, cluster
        finally:
            cluster.close(timeout=30)


def connect(address: str):
    _distributed()
    from distributed import Client

    return Client(address)
