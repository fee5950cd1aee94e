"""One measurement in a fresh process; prints one JSON object on its last line of stdout.

    python -m benchmarks.child cold   ENGINE ARTIFACTS.json
    python -m benchmarks.child memory ENGINE ARTIFACTS.json COPIES
    python -m benchmarks.child peak   ENGINE ARTIFACTS.json

cold:   seconds for import, load and the first batch-1 inference, from this file's first line.
memory: resident-set growth per loaded model: one model is loaded and run first (runtime set-up,
        compiled code, thread pools), then COPIES more, each run once; (RSS after - RSS before) / COPIES.
peak:   the peak resident set (VmHWM) after import + load + one batch-64 inference. Not ru_maxrss:
        Linux carries the parent's peak over fork + exec into the child's ru_maxrss.
Every engine runs on one thread here.
"""

import time

START = time.perf_counter()

import gc  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

from benchmarks import engines  # noqa: E402  (imports no engine library)


def rss_bytes(field: str = "VmRSS") -> int:
    """This process's current (VmRSS) or peak (VmHWM) resident set size, from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def main(task: str, engine: str, artifacts_path: str, copies: int = 0) -> dict:
    with open(artifacts_path) as f:
        artifacts = json.load(f)
    engines.import_runtime(engine)
    imported = time.perf_counter()
    import numpy as np
    rng = np.random.default_rng(0)
    if task == "cold":
        run = engines.load(engine, artifacts, threads=1)
        loaded = time.perf_counter()
        run(rng.random((1, 1, 60, 120), dtype=np.float32))
        done = time.perf_counter()
        return {"import_s": imported - START, "load_s": loaded - imported,
                "first_inference_s": done - loaded, "total_s": done - START}
    if task == "memory":
        x = rng.random((1, 1, 60, 120), dtype=np.float32)
        kept = [engines.load(engine, artifacts, threads=1)]
        kept[0](x)
        gc.collect()
        before = rss_bytes()
        for _ in range(copies):
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
