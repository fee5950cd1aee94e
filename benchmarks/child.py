"""One measurement in a fresh process; prints one JSON object on its last line of stdout.

    python -m benchmarks.child cold   ENGINE ARTIFACTS.json
    python -m benchmarks.child memory ENGINE ARTIFACTS.json COPIES
    python -m benchmarks.child peak   ENGINE ARTIFACTS.json
    python -m benchmarks.child speed  ENGINE ARTIFACTS.json THREADS RUNS BATCH_RUNS SPINNING

cold:   seconds for import, load and the first batch-1 inference, from this file's first line, and
        until pdinfer's compiled kernels are ready (its first calls answer with NumPy until then).
memory: resident-set growth per loaded model: one model is loaded and run first (runtime set-up,
        compiled code, thread pools), then COPIES more, each run once; (RSS after - RSS before) / COPIES.
        pdinfer's copies do not share their packed weights (copies of one file would), so each
        costs what a distinct model costs.
peak:   the peak resident set (VmHWM) after import + load + one batch-64 inference. Not ru_maxrss:
        Linux carries the parent's peak over fork + exec into the child's ru_maxrss.
speed:  on THREADS threads, after a warm-up: RUNS batch-1 calls and BATCH_RUNS batch-64 calls, each
        timed (median, p99, mean); SPINNING 1 leaves the engine's spin-waiting threads at its
        library's default (ONNX Runtime spins), 0 turns them off.
Every engine runs on one thread in the other tasks.
"""

import time

START = time.perf_counter()

import gc  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks import engines  # noqa: E402  (imports no engine library)


def rss_bytes(field: str = "VmRSS") -> int:
    """This process's current (VmRSS) or peak (VmHWM) resident set size, from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def timed(run: Any, x: Any, calls: int) -> list[float]:
    """Seconds of each of `calls` calls of run(x), the garbage collector off."""
    samples = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(calls):
            start = time.perf_counter()
            run(x)
            samples.append(time.perf_counter() - start)
    finally:
        gc.enable()
    return samples


def speed(engine: str, artifacts: dict, threads: int, runs: int, batch_runs: int, spinning: bool) -> dict:
    """Batch-1 latency and batch-64 throughput of one engine, alone in this process."""
    from benchmarks.bench import inputs, percentile
    x1, x64 = inputs()
    run = engines.load(engine, artifacts, threads, spinning)
    for _ in range(5):  # warm-up (torch.jit optimises on its first calls)
        run(x1)
    run(x64)
    latency, batch = timed(run, x1, runs), timed(run, x64, batch_runs)
    return {"median_ms": 1e3 * statistics.median(latency), "p99_ms": 1e3 * percentile(latency, 99),
            "mean_ms": 1e3 * statistics.fmean(latency), "batch_median_ms": 1e3 * statistics.median(batch)}


def main(task: str, engine: str, artifacts_path: str, *numbers: int) -> dict:
    with open(artifacts_path) as f:
        artifacts = json.load(f)
    if task == "speed":
        return speed(engine, artifacts, *numbers[:3], spinning=bool(numbers[3]))
    copies = numbers[0] if numbers else 0
    engines.import_runtime(engine)
    imported = time.perf_counter()
    import numpy as np
    rng = np.random.default_rng(0)
    if task == "cold":
        run = engines.load(engine, artifacts, threads=1, compiled=False)
        loaded = time.perf_counter()
        run(rng.random((1, 1, 60, 120), dtype=np.float32))
        done = time.perf_counter()
        while not getattr(run, "compiled", True):  # pdinfer: its kernels compile (or load) in the background
            time.sleep(0.005)
        return {"import_s": imported - START, "load_s": loaded - imported, "first_inference_s": done - loaded,
                "total_s": done - START, "compiled_s": time.perf_counter() - START}
    if task == "memory":
        x = rng.random((1, 1, 60, 120), dtype=np.float32)
        kept = [engines.load(engine, artifacts, threads=1)]
        kept[0](x)
        gc.collect()
        before = rss_bytes()
        for _ in range(copies):
            if engine.startswith("pdinfer"):  # each copy packs its own weights, as distinct models do
                from pdinfer import model as pdinfer_model  # (identical files would share one packed copy)
                pdinfer_model._plans.clear()
            kept.append(engines.load(engine, artifacts, threads=1))
            kept[-1](x)
        gc.collect()
        after = rss_bytes()
        return {"rss_before": before, "rss_after": after, "copies": copies,
                "per_model_bytes": (after - before) / copies}
    assert task == "peak", task
    after_import = rss_bytes()
    engines.load(engine, artifacts, threads=1)(rng.random((64, 1, 60, 120), dtype=np.float32))
    return {"rss_after_import": after_import, "peak_bytes": rss_bytes("VmHWM")}


if __name__ == "__main__":
    task_name, engine_name, path = sys.argv[1:4]
    print(json.dumps(main(task_name, engine_name, path, *map(int, sys.argv[4:]))))
