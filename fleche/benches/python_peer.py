"""The Python reference library, fleche 0.22.2, on the workloads of this crate's benches.

Measures the median time of one memoized call, in microseconds, for two results -- a small int
(`f(x: int) -> int`) and a 1M-element float64 numpy array -- on a hit and on a miss, with three
caches: in memory, cloudpickle files on disk, and SQLite call records with cloudpickle value
files. A miss passes a fresh argument every time; a hit repeats one argument already stored. Each
row gets a new cache, the disk ones in a fresh temporary directory.

Run with `bash fleche/benches/python_peer.sh`, which sets up the Python packages. Prints the
versions on `#` lines, then one line per row:

    python-fleche <value> <op> <backend> <median_us>

with value in {small-int, f64x1M}, op in {hit, miss}, backend in {memory, files, sqlite+files}.
The repetitions and spread of each row go to stderr.
"""

import gc
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import numpy as np

import fleche
from fleche.caches import Cache
from fleche.metadata import Runtime
from fleche.storage import CallMemory, CallPickleFile, Sql, ValueMemory, ValuePickleFile

# Signing is off by default; with a key set, every file read would also be HMAC-checked.
os.environ.pop("FLECHE_SECRET_KEY", None)

ARRAY_LEN = 1 << 20
BASE = np.arange(ARRAY_LEN, dtype=np.float64)


# How often a body ran: a hit must not run it, a miss must.
body_runs = 0


@fleche.fleche
def small_int(x: int) -> int:
    global body_runs
    body_runs += 1
    return x * 3 + 1


# The array for a miss is built before the clock starts, so the body only hands it over and a
# miss times the cache (digesting and storing 8 MB), not numpy.
_staged: dict[int, np.ndarray] = {}


@fleche.fleche
def f64x1m(i: int) -> np.ndarray:
    global body_runs
    body_runs += 1
    return _staged.pop(i)


def stage_array(i: int) -> None:
    _staged[i] = BASE + i


@dataclass(frozen=True)
class Value:
    name: str
    func: Callable[[int], object]
    stage: Callable[[int], None]
    max_reps: int
    warm_gib: int = 0  # see warm_memory


VALUES = [
    Value("small-int", small_int, lambda i: None, max_reps=3000),
    # Every stored miss stays in its cache (8 MB each, in memory or on disk): keep them few.
    Value("f64x1M", f64x1m, stage_array, max_reps=40, warm_gib=1),
]


def memory_cache(root: Path) -> Cache:
    return Cache(ValueMemory({}), CallMemory({}))


def files_cache(root: Path) -> Cache:
    # The same as Cache.from_config({"template": "cloudpickle", "root": root}).
    return Cache(
        ValuePickleFile.with_cloudpickle(root=root / "values"),
        CallPickleFile.with_cloudpickle(root=root / "calls"),
    )


def sqlite_files_cache(root: Path) -> Cache:
    # The same as Cache.from_config({"template": "sql", "root": root, "values": "cloudpickle"}).
    return Cache(
        ValuePickleFile.with_cloudpickle(root=root / "values"),
        Sql(url=f"sqlite:///{root / 'calls.db'}"),
    )


BACKENDS = {
    "memory": memory_cache,
    "files": files_cache,
    "sqlite+files": sqlite_files_cache,
}

MIN_REPS = 15
BUDGET_S = 4.0  # per row, once MIN_REPS are in
WARMUP = 3

# Arguments never repeat within a run, so every miss is a real one.
fresh = itertools.count(1)


def measure(value: Value, op: str) -> list[int]:
    """Nanoseconds of each timed call of `value.func` on the active cache."""
    runs_before = body_runs
    if op == "hit":
        arg = next(fresh)
        value.stage(arg)
        value.func(arg)  # stores it
        args = itertools.repeat(arg)
    else:
        args = fresh

    def once() -> int:
        arg = next(args)
        if op == "miss":
            value.stage(arg)
        start = time.perf_counter_ns()
        value.func(arg)
        return time.perf_counter_ns() - start

    for _ in range(WARMUP):
        once()
    samples: list[int] = []
    deadline = time.perf_counter() + BUDGET_S
    while len(samples) < value.max_reps and (
        len(samples) < MIN_REPS or time.perf_counter() < deadline
    ):
        samples.append(once())

    ran, expected = body_runs - runs_before, (1 if op == "hit" else WARMUP + len(samples))
    if ran != expected:
        raise RuntimeError(f"{value.name} {op}: the body ran {ran} times, not {expected}")
    return samples


def warm_memory(gib: int) -> None:
    """Touch and free `gib` GiB right before a row that grows the heap or the page cache.

    On a virtual machine the first write to a page of guest memory can cost far more than the
    copy itself (here about 3 s per GiB, against 0.15 s once touched), and memory left free for
    a few seconds goes cold again. Without this, an array row would partly time the machine.
    """
    if gib:
        np.ones((gib << 30) // 8)


def main() -> None:
    print(
        f"# fleche {version('fleche')}, numpy {np.__version__}, "
        f"cloudpickle {version('cloudpickle')}, sqlalchemy {version('sqlalchemy')}, "
        f"python {platform.python_version()}"
    )
    print("# python-fleche <value> <op> <backend> <median_us>")
    sys.stdout.flush()
    for value in VALUES:
        for op in ("hit", "miss"):
            for backend, open_cache in BACKENDS.items():
                with tempfile.TemporaryDirectory(prefix="fleche-python-peer-") as root:
                    # Runtime is the reference's default metadata; set here so that no
                    # fleche.toml on the way up from the working directory changes it.
                    with fleche.cache(open_cache(Path(root))), fleche.meta(Runtime()):
                        gc.collect()
                        warm_memory(value.warm_gib)
                        samples = measure(value, op)
                median_us = statistics.median(samples) / 1000
                q = statistics.quantiles(samples, n=10)
                print(f"python-fleche {value.name} {op} {backend} {median_us:.2f}", flush=True)
                print(
                    f"  {value.name} {op} {backend}: {len(samples)} calls, "
                    f"p10 {q[0] / 1000:.2f} us, p90 {q[-1] / 1000:.2f} us",
                    file=sys.stderr,
                    flush=True,
                )
                _staged.clear()


if __name__ == "__main__":
    main()
