"""Stage graphs and the executors that run them: in this process, one node after another (the default),
or on Dask distributed (`pip install .[dask]`): a local cluster of worker processes (`--workers N`) or an
existing cluster (`--scheduler tcp://HOST:PORT`).

A node is {key, fn, args, deps, resources, threads}: `fn` is a module-level function called as
`fn(*args, log=...)` after `torch.set_num_threads(threads)`; it returns a small JSON-able dict (a stage's
outcome). Artifacts never travel through the executor: stages read and write the shared run directory,
so a cluster needs a file system that every worker and the driver see at the same path. Every stage seeds
itself and runs with the same thread count wherever it runs, so results do not depend on the executor.

Dask runs what is ready (the driver submits a node once its dependencies are done), places it on a
worker whose resources fit (`threads`, and `GPU: 1` for stages on CUDA), and reruns a node whose worker
died (a stage resumes from its checkpoint). A node that raises stops the study: nothing new starts, the
nodes already running finish, and the first error is raised again, unchanged.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

from .errors import UserInputError

NEEDS_DASK = "pip install '.[dask]' (or pip install 'dask[distributed]')"
CONNECT_TIMEOUT = "10s"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class Node:
    key: str
    fn: Callable[..., dict]
    args: tuple = ()
    deps: tuple[str, ...] = ()
    resources: Mapping[str, float] = field(default_factory=dict)
    threads: Optional[int] = None
    output: Optional[str] = None  # on a Dask worker the node's stdout/stderr (prints, progress bars) go here


def check_graph(nodes: Sequence[Node]) -> None:
    """Keys are distinct and every node comes after its dependencies (the sequential order)."""
    seen: set[str] = set()
    for n in nodes:
        missing = [d for d in n.deps if d not in seen]
        if n.key in seen or missing:
            raise ValueError(f"stage graph: node {n.key!r} is repeated or comes before its dependencies {missing}")
        seen.add(n.key)


def where() -> dict:
    """Where this code runs: the host and the Dask worker's address (or this process)."""
    worker = f"pid {os.getpid()}"
    if "distributed" in sys.modules:
        from distributed import get_worker

        try:
            worker = get_worker().address
        except ValueError:  # not inside a Dask worker
            pass
    return {"host": socket.gethostname(), "worker": worker}


def quiet(*_args) -> None:
    """The log of a stage on a Dask worker: the driver reports progress, not the workers."""


def run_node(fn: Callable[..., dict], args: tuple, threads: Optional[int], log=print, stop: Optional[str] = None,
             output: Optional[str] = None):
    """Runs one node here (a Dask task runs this on its worker, one task per worker process at a time).
    `stop` names a Dask Event set when the study stops: a node that has not started by then returns None
    without running. `output`: a file that receives the node's stdout and stderr."""
    import torch

    if stop is not None:
        from distributed import Event

        if Event(stop).is_set():
            return None
    if threads:
        torch.set_num_threads(threads)
    if output is None:
        return fn(*args, log=log)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        return fn(*args, log=log)


class SequentialExecutor:
    """Runs every node in this process, in the graph's order (the order of the list)."""

    def run(self, nodes: Sequence[Node], log=print) -> dict[str, dict]:
        check_graph(nodes)
        return {n.key: run_node(n.fn, n.args, n.threads, log) for n in nodes}


def _need_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise UserInputError(f"--workers / --scheduler run stages on Dask, which is not installed: {NEEDS_DASK}") from None


class DaskExecutor:
    """Runs the graph on Dask: `workers` starts a local cluster (one process per worker, every socket on
    127.0.0.1), `scheduler` joins an existing one (tcp://HOST:PORT or a scheduler JSON file)."""

    def __init__(self, workers: Optional[int] = None, scheduler: Optional[str] = None, threads: int = 1,
                 gpus: Optional[int] = None, progress_stream=None):
        if (workers is None) == (scheduler is None):
            raise UserInputError("give either --workers N or --scheduler ADDRESS")
        if workers is not None and workers < 1:
            raise UserInputError(f"--workers must be >= 1, got {workers}")
        _need_distributed()
        self.workers, self.scheduler, self.threads, self.gpus = workers, scheduler, threads, gpus
        self.stream = progress_stream or sys.stderr

    def _connect(self):
        from distributed import Client

        if self.scheduler is not None:
            where = {"scheduler_file": self.scheduler} if self.scheduler.endswith(".json") else \
                {"address": self.scheduler}
            if "scheduler_file" in where and not os.path.isfile(self.scheduler):  # Dask would wait for it forever
                raise UserInputError(f"--scheduler {self.scheduler}: no such scheduler file; give tcp://HOST:PORT of "
                                     "a running `dask scheduler` or the JSON file of its --scheduler-file")
            try:
                return Client(**where, timeout=CONNECT_TIMEOUT), None
            except (OSError, ValueError) as e:  # refused, timed out, not an address, no such file
                raise UserInputError(f"--scheduler {self.scheduler}: no Dask scheduler answers there within "
                                     f"{CONNECT_TIMEOUT} ({type(e).__name__}: {e}); give tcp://HOST:PORT of a "
                                     "running `dask scheduler` or its --scheduler-file JSON") from None
        cluster = local_cluster(self.workers, self.threads, self.gpus)
        return Client(cluster), cluster

    def run(self, nodes: Sequence[Node], log=print) -> dict[str, dict]:
        check_graph(nodes)
        client, cluster = self._connect()
        try:
            return _drive(client, nodes, Progress(log, self.stream))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def local_cluster(workers: int, threads: int, gpus: Optional[int] = None):
    """`workers` processes on 127.0.0.1 (no dashboard), one task at a time each, advertising
    {threads}; with GPUs, worker i sees GPU i (CUDA_VISIBLE_DEVICES) and advertises {GPU: 1}, and the
    workers beyond the GPUs see none. The workers get the driver's thread variables (not Dask's
    OMP_NUM_THREADS=1), so every library runs with the thread counts of a sequential run."""
    import dask
    from distributed import Nanny, Scheduler, SpecCluster

    if gpus is None:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    env = {k: os.environ[k] for k in THREAD_VARS if k in os.environ}  # not Dask's OMP_NUM_THREADS=1
    spec = {}
    for i in range(workers):
        resources = {"threads": threads, **({"GPU": 1} if i < gpus else {})}
        cuda = {"CUDA_VISIBLE_DEVICES": str(i) if i < gpus else ""} if gpus else {}
        spec[i] = {"cls": Nanny, "options": {"nthreads": 1, "host": "127.0.0.1", "resources": resources,
                                             "env": cuda, "dashboard": False, "silence_logs": logging.WARNING}}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        return SpecCluster(workers=spec, silence_logs=logging.WARNING, scheduler={"cls": Scheduler, "options": {
            "host": "127.0.0.1", "dashboard": False, "dashboard_address": "127.0.0.1:0"}})


def _drive(client, nodes: Sequence[Node], progress: "Progress") -> dict[str, dict]:
    from distributed import Event, wait

    _check_resources(client, nodes, progress.log)
    token = uuid.uuid4().hex[:8]
    stop = Event(f"lsmia-stop-{token}", client=client)
    waiting = {n.key: n for n in nodes}
    running: dict = {}  # future -> node
    done: dict[str, dict] = {}
    failure: Optional[tuple[Node, BaseException]] = None

    def submit_ready():
        for key, n in list(waiting.items()):
            if all(d in done for d in n.deps):
                fut = client.submit(run_node, n.fn, n.args, n.threads, quiet, stop.name, n.output, key=f"{key}-{token}",
                                    resources=dict(n.resources) or None, pure=False)
                running[fut] = n
                del waiting[key]

    submit_ready()
    while running:
        try:
            finished = wait(list(running), timeout=1.0, return_when="FIRST_COMPLETED").done
        except TimeoutError:  # nothing finished this second: redraw the progress
            finished = set()
        for fut in finished:
            n = running.pop(fut)
            try:
                value = fut.result()
            except Exception as e:  # noqa: BLE001 -- the first real error stops the study, raised below
                if failure is None:
                    failure = (n, e)
                    stop.set()
                progress.failed(n.key, e)
                continue
            if value is not None:
                done[n.key] = value
                progress.finished(n.key, value, f"{len(done)} of {len(nodes)} done")
        if failure is None:
            submit_ready()
        progress.update(len(done), len(waiting) + len(running), _processing(client, running))
    progress.close()
    if failure is not None:
        raise failure[1]
    return done


def _check_resources(client, nodes: Sequence[Node], log) -> None:
    """A node whose resources no worker offers would wait forever: refuse the graph now instead."""
    if not client.scheduler_info()["workers"]:
        log("[experiment] waiting for a Dask worker to join the cluster")
        client.wait_for_workers(1)
    offers = [w.get("resources", {}) for w in client.scheduler_info()["workers"].values()]
    for n in nodes:
        if not any(all(o.get(r, 0) >= v for r, v in n.resources.items()) for o in offers):
            need = ", ".join(f"{r}={v:g}" for r, v in n.resources.items())
            raise UserInputError(f"stage {n.key} needs the Dask resources {need}, which no worker of the cluster "
                                 f"offers ({offers}): start workers with `dask worker --resources \"{need}\"`")


def _processing(client, running) -> dict[str, str]:
    """Node key -> worker address of the nodes a worker holds now."""
    keys = {fut.key: n.key for fut, n in running.items()}
    try:
        held = client.processing()
    except OSError:
        return {}
    return {keys[k]: w for w, ks in held.items() for k in ks if k in keys}


class Progress:
    """One live line per running stage and the counts of done / running / waiting on a terminal; plain
    log lines (one per finished stage) otherwise."""

    def __init__(self, log, stream):
        self.log, self.stream = log, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.started: dict[str, float] = {}
        self.drawn = 0

    def _say(self, line: str) -> None:
        self._erase()
        self.log(line)

    def finished(self, key: str, value: dict, count: str) -> None:
        how = "reused" if value.get("reused") else f"done in {value.get('wall_s', 0.0):.1f} s"
        self.started.pop(key, None)
        self._say(f"[experiment] {key}: {how} on {value.get('worker')} ({value.get('host')}); {count}")

    def failed(self, key: str, error: BaseException) -> None:
        self._say(f"[experiment] {key}: failed ({type(error).__name__}); waiting for the running stages")

    def update(self, done: int, left: int, on: dict[str, str]) -> None:
        """`on`: node key -> worker of the nodes a worker holds now; `left`: nodes not done."""
        if not self.tty:
            return
        now = time.monotonic()
        for key in on:
            self.started.setdefault(key, now)
        counts = f"done {done} / running {len(on)} / waiting {left - len(on)}"
        lines = [f"  {key:<28} {w:<26} {now - self.started[key]:6.0f} s" for key, w in sorted(on.items())]
        self._erase()
        self.stream.write("\n".join([*lines, counts]) + "\n")
        self.stream.flush()
        self.drawn = len(lines) + 1

    def _erase(self) -> None:
        if self.tty and self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.stream.flush()
        self.drawn = 0

    def close(self) -> None:
        self._erase()
