"""The stage graph on Dask (real clusters on 127.0.0.1, no mocks): `--workers 2` gives the sequential
run's rows and weights, a cluster started from the command line runs stages on both of its workers, a
worker killed mid-stage costs only a rerun of that stage, a real error stops the study with today's
message; the executor pieces (graph order, the cross-process stage lock, the critical path) on their own."""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import PACKAGE_ROOT, lsmia
from lsmia_ext.executor import Node, SequentialExecutor, check_graph
from lsmia_ext.experiment.report import critical_path
from lsmia_ext.runio import exclusive

ARGS = ["experiment", "--config", "experiment-digits", "--preset", "quick", "--seeds", "2"]
ENV = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}


def _weights_sha(path: Path) -> str:
    state = torch.load(path, weights_only=True)["model"]
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].contiguous().numpy().tobytes())
    return h.hexdigest()


def _stage_records(out: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(out)): json.loads(p.read_text()) for p in out.rglob("stage.json")}


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    out = tmp_path_factory.mktemp("sequential")
    code, _, err = lsmia(*ARGS, "--out", str(out))
    assert code == 0, err
    return out


def _same_study(a: Path, b: Path) -> None:
    rows_a, rows_b = (json.loads((d / "results.json").read_text())["rows"] for d in (a, b))
    assert rows_a == rows_b and len(rows_a) == 6  # the executor changes no number
    weights = sorted(p.relative_to(a) for p in a.glob("targets/*/model.pt")) + [Path("eval_model/model.pt")]
    assert len(weights) == 7
    for rel in weights:
        assert _weights_sha(a / rel) == _weights_sha(b / rel), rel


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_workers_2_equals_sequential(sequential, tmp_path):
    pytest.importorskip("distributed")
    code, out, err = lsmia(*ARGS, "--workers", "2", "--out", str(tmp_path))
    assert code == 0, err
    _same_study(sequential, tmp_path)
    workers = {r["worker"] for r in _stage_records(tmp_path).values()}
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers), workers
    assert "20 of 20 done" in out
    assert (tmp_path / "logs" / "target_hard_seed0.log").read_text().startswith("epoch 1/2")  # worker prints
    md = (tmp_path / "report.md").read_text()
    assert "core-seconds in all; critical path" in md
    stages = _results(tmp_path)["timings"]["stages"]
    assert stages["evaluation:hard_seed1"]["after"] == ["eval_model", "attack:hard_seed1"]


def test_sequential_records_where_it_ran(sequential):
    records = _stage_records(sequential)
    assert len(records) == 20
    assert {r["worker"] for r in records.values()} == {records["prior"]["worker"]}
    assert records["prior"]["worker"].startswith("pid ") and records["prior"]["host"]


def test_real_error_stops_with_todays_message(tmp_path):
    pytest.importorskip("distributed")
    errors = []
    for how, out in (([], tmp_path / "seq"), (["--workers", "2"], tmp_path / "dask")):
        (out / "targets" / "hard_seed0").mkdir(parents=True)
        (out / "targets" / "hard_seed0" / "stray.txt").write_text("not a stage")
        code, _, err = lsmia(*ARGS, *how, "--out", str(out))
        assert code == 2 and not (out / "results.json").exists()
        errors.append(err.strip().splitlines()[-1].replace(str(out), "OUT"))
        # whatever ran finished cleanly: every stage record there is finished, so a rerun reuses it
        assert all(r["finished"] for r in _stage_records(out).values())
    assert errors[0] == errors[1]
    assert errors[0].startswith("lsmia experiment: error: OUT/targets/hard_seed0 exists but has no stage.json")


def test_missing_resource_is_refused_before_anything_runs(tmp_path):
    pytest.importorskip("distributed")
    code, _, err = lsmia(*ARGS, "--workers", "1", "--set", "target.set.device=cuda", "--out", str(tmp_path))
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert code == 2 and "needs the Dask resources threads=1, GPU=1" in err and "--resources" in err
    assert not list(tmp_path.rglob("stage.json"))


def test_graph_order_and_sequential_executor():
    seen = []
    nodes = [Node("a", _record_call, ("a", seen)), Node("b", _record_call, ("b", seen), ("a",))]
    assert SequentialExecutor().run(nodes, log=print) == {"a": {"node": "a"}, "b": {"node": "b"}}
    assert seen == ["a", "b"]
    with pytest.raises(ValueError, match="'b' is repeated or comes before its dependencies"):
        check_graph(nodes[::-1])


def _record_call(name, seen, log):
    seen.append(name)
    return {"node": name}


def _hold(path, started, seconds):
    with exclusive(path, log=lambda *_: None):
        started.set()
        time.sleep(seconds)
        (Path(path).parent / "first_done").write_text("x")


def _holder(tmp_path, seconds):
    """Another process that holds the lock of tmp_path/stage for `seconds` (started and holding on return)."""
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Event()
    p = ctx.Process(target=_hold, args=(str(tmp_path / "stage"), started, seconds))
    p.start()
    assert started.wait(60)
    return p


def test_stage_lock_holds_across_processes(tmp_path):
    p = _holder(tmp_path, 1.5)
    said = []
    with exclusive(tmp_path / "stage", log=said.append):
        assert (tmp_path / "first_done").exists()  # waited for the other process
    p.join()
    assert said and "is being written by" in said[0] and f"pid {p.pid}" in said[0]


def test_lock_dies_with_its_process(tmp_path):
    p = _holder(tmp_path, 600)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    t0 = time.monotonic()
    with exclusive(tmp_path / "stage", log=lambda *_: None):
        assert time.monotonic() - t0 < 5


def test_critical_path_follows_dependencies():
    stages = {"prior": {"wall_s": 5.0, "after": []}, "eval_model": {"wall_s": 1.0, "after": []},
              "target:t": {"wall_s": 2.0, "after": []}, "attack:t": {"wall_s": 1.0, "after": ["prior", "target:t"]},
              "reference": {"wall_s": 9.0, "part_of": "evaluation:t"},
              "evaluation:t": {"wall_s": 3.0, "after": ["eval_model", "attack:t"]}}
    assert critical_path(stages) == (9.0, ["prior", "attack:t", "evaluation:t"])


# ---- a cluster started from the command line, as a user would (slow: starts three processes) ----

def _dask(*argv, log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(Path(sys.executable).parent / "dask"), *argv], env=ENV, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


@pytest.fixture
def cli_cluster(tmp_path):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1, stopped at the end."""
    pytest.importorskip("distributed")
    from distributed import Client

    sched_file = tmp_path / "scheduler.json"
    procs = [_dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
                   str(sched_file), log=tmp_path / "scheduler.log")]
    try:
        for _ in range(600):
            if sched_file.exists():
                break
            time.sleep(0.1)
        for i in range(2):
            procs.append(_dask("worker", "--scheduler-file", str(sched_file), "--host", "127.0.0.1", "--nthreads",
                               "1", "--resources", "threads=1", "--no-nanny", "--no-dashboard", "--name", f"w{i}",
                               log=tmp_path / f"worker{i}.log"))
        with Client(scheduler_file=str(sched_file)) as client:
            client.wait_for_workers(2, timeout=120)
            # --no-nanny: the process started here is the worker itself
            workers = {addr: procs[1 + int(w["name"][1:])].pid
                       for addr, w in client.scheduler_info()["workers"].items()}
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        yield address, workers
    finally:
        for p in procs[::-1]:
            if p.poll() is None:
                p.terminate()
        for p in procs[::-1]:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.slow
def test_cli_cluster_runs_stages_on_both_workers(cli_cluster, sequential, tmp_path):
    address, workers = cli_cluster
    code, _, err = lsmia(*ARGS, "--scheduler", address, "--out", str(tmp_path / "out"))
    assert code == 0, err
    ran_on = {r["worker"] for r in _stage_records(tmp_path / "out").values()}
    assert ran_on == set(workers) and all(w.startswith("tcp://127.0.0.1:") for w in workers)
    _same_study(sequential, tmp_path / "out")


@pytest.mark.slow
def test_worker_killed_mid_stage_then_completion(cli_cluster, tmp_path):
    address, workers = cli_cluster
    out = tmp_path / "out"
    # a prior of many steps with frequent checkpoints: long enough to be killed in the middle
    argv = [*ARGS, "--seeds", "1", "--set", "prior.set.train.steps=600", "--set", "prior.set.train.checkpoint_every=20",
            "--scheduler", address, "--out", str(out)]
    study = subprocess.Popen([sys.executable, "-m", "lsmia_ext.cli", *argv], env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        record, deadline = out / "prior" / "stage.json", time.monotonic() + 300
        while not ((out / "prior" / "checkpoint.pt").exists() and record.exists()):
            assert study.poll() is None and time.monotonic() < deadline, "the prior never started"
            time.sleep(0.2)
        first = json.loads(record.read_text())
        assert not first["finished"]
        os.kill(workers[first["worker"]], signal.SIGKILL)
        output, _ = study.communicate(timeout=600)
    finally:
        if study.poll() is None:
            study.kill()
    assert study.returncode == 0, output
    prior = json.loads(record.read_text())
    assert prior["finished"] and prior["worker"] != first["worker"]  # rerun on the surviving worker
    # the prior's progress bar (in logs/prior.log) starts once per attempt: the rerun started at a checkpoint
    starts = {int(s) for s in re.findall(r"\| *(\d+)/600 \[00:00<\?, \?it/s", (out / "logs" / "prior.log").read_text())}
    assert len(starts - {0}) == 1, starts
    assert len(_results(out)["rows"]) == 3
