"""Shared benchmark harness: median wall time of repeats, peak memory, Markdown result tables.

Peak memory: on CUDA, torch.cuda.max_memory_allocated beyond what was allocated before the call;
on CPU, the peak of the running sum of allocations recorded by torch.profiler (profile_memory=True)
during one extra call, i.e. the extra memory the call needs on top of its inputs.
Ratios between implementations must come from cases measured in the same run (noisy machines).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_extra_bytes(fn: Callable[[], object], device: torch.device) -> int:
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = fn()
        _sync(device)
        del out
        return int(torch.cuda.max_memory_allocated(device) - base)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
        del out
    # op events carry what the op itself allocated net of frees; "[memory]" events are the
    # allocations and frees outside any op (e.g. a tensor released by Python)
    running = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        running += e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        peak = max(peak, running)
    return int(peak)


def measure(fn: Callable[[], object], *, repeats: int = 15, warmup: int = 3,
            device: torch.device | str = "cpu") -> dict:
    """Median / min milliseconds over `repeats` calls after `warmup` calls, and the peak extra memory."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times),
            "peak_bytes": peak_extra_bytes(fn, device)}


CLOCK = time.perf_counter  # parse_bench_args(--clock cpu) swaps in the process CPU time


def interleaved(cases: dict[str, Callable[[], object]], *, rounds: int = 5, repeats: int = 5,
                warmup: int = 2, device: torch.device | str = "cpu") -> dict[str, dict]:
    """Measures several implementations of the same thing round-robin so that machine noise hits all
    of them alike; reports per case the median over all rounds and the peak extra memory."""
    device = torch.device(device)
    clock = CLOCK if device.type == "cpu" else time.perf_counter
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            for _ in range(repeats):
                _sync(device)
                t0 = clock()
                fn()
                _sync(device)
                samples[name].append((clock() - t0) * 1e3)
    return {name: {"median_ms": statistics.median(ts), "min_ms": min(ts),
                   "peak_bytes": peak_extra_bytes(cases[name], device)} for name, ts in samples.items()}


def parse_bench_args(argv, default_out: Path, description: str) -> argparse.Namespace:
    """The command line every benchmark shares; applies --threads and resolves --devices to those
    present (`args.devices` becomes a list, `args.rounds` the number of round-robin rounds)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="one round (smoke run)")
    p.add_argument("--out", default=str(default_out), help="Markdown table to write")
    p.add_argument("--devices", default="cpu,cuda", help="comma list; cuda is skipped without a GPU")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: time CPU cases by process CPU time (with --threads 1 on a machine shared with "
                        "other jobs, it leaves out the time the process waits to be scheduled)")
    args = p.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    args.rounds = 1 if args.quick else 5
    args.devices = [d for d in args.devices.split(",") if d == "cpu" or (d == "cuda" and torch.cuda.is_available())]
    return args


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    return (f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads ({cpu}), "
            f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
            + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))


def write_table(path: str | Path, title: str, rows: Sequence[dict], columns: Sequence[str],
                notes: str = "") -> Path:
    """Writes one Markdown table (plus the machine line and notes) to `path` and returns it."""
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    clock = "process CPU time" if CLOCK is time.process_time else "wall time"
    lines = [f"# {title}", "", f"Measured {time.strftime('%Y-%m-%d')} on {machine_line()}; CPU cases timed by "
             f"{clock}.", ""]
    if notes:
        lines += [notes, ""]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "---|" * len(columns))
    for row in rows:
        lines.append("| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |")
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path
