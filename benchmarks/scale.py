"""Cost of many resident models: 100 and 1000 distinct PDLight-sized models in one process.

    python -m benchmarks.scale [--counts 100 1000] [--kinds f32 int8] [--requests 1000] [--out DIR]

The models are made from weights/pd_light.pdw and pd_light.int8.pdw with pdinfer's own writer, each
with its weights multiplied by seeded random factors in [0.9, 1.1] (int8: each value moved by -1,
0 or +1), so no two share a packed copy; no torch is imported. Each (kind, count) runs in a fresh
child process, which loads the models through a pdinfer.ModelStore (one model loaded and run first,
so that runtime set-up and compiled kernels are paid) and reports:
- RSS growth per model (VmRSS after loading and running each model once, minus before) against
  its packed weight bytes (pdinfer.plan.packed_bytes), and what is behind the difference: the Python
  objects a model keeps (counted by walking them) and the rest (allocator slack);
- load time per model (ModelStore.get of a new name: read, check, pack);
- batch-1 latency p50/p99 of `--requests` requests per thread, each to a random model of all of
  them ("spread") or all to one model ("hot"), on 1 and 2 request threads (set_num_threads(1)).
Writes RESULTS/scale.md and scale.json (docs/BENCHMARKS.md, "Many resident models").
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.child import rss_bytes

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = {"f32": REPO / "weights" / "pd_light.pdw", "int8": REPO / "weights" / "pd_light.int8.pdw"}
FORMAT_KEYS = ("format", "format_version", "layers", "input_shape", "classes", "producer", "file_sha256",
               "data_sha256")


def write_distinct(template: Path, directory: Path, count: int) -> None:
    """`count` files m0.pdw ... in `directory`: the template's model with seeded random weights."""
    from pdinfer.format import read_weights, write_weights
    container, layers = read_weights(template)
    meta = container.metadata
    extra = {k: v for k, v in meta.items() if k not in FORMAT_KEYS}
    for i in range(count):
        rng = np.random.default_rng(i)
        tensors = {}
        for name, t in container.tensors.items():
            if t.dtype == np.int8:
                tensors[name] = np.clip(t.astype(np.int16) + rng.integers(-1, 2, t.shape), -127, 127).astype(np.int8)
            else:
                tensors[name] = (t * rng.uniform(0.9, 1.1, t.shape)).astype(np.float32)
        write_weights(directory / f"m{i}.pdw", layers, tensors, input_shape=json.loads(meta["input_shape"]),
                      classes=json.loads(meta["classes"]), producer="benchmarks.scale", metadata=extra)


def reachable(root: object) -> dict[int, object]:
    """The objects reachable from `root` (gc.get_referents), classes, modules and functions left out."""
    stop = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
    seen, todo = {}, [root]
    while todo:
        obj = todo.pop()
        if id(obj) not in seen and not isinstance(obj, stop):
            seen[id(obj)] = obj
            todo.extend(gc.get_referents(obj))
    return seen


def object_bytes(model: object, shared: dict[int, object]) -> int:
    """Bytes of the Python objects reachable from `model` and not from another model (`shared`):
    sys.getsizeof, an array view's object only (its data is in the packed bytes)."""
    return sum(sys.getsizeof(obj) for key, obj in reachable(model).items()
               if key not in shared and not (isinstance(obj, np.ndarray) and obj.base is None))


def percentiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"p50_ms": statistics.median(ordered) * 1e3,
            "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3}


def latency(store, names: list[str], requests: int, threads: int) -> dict[str, float]:
    """Batch-1 request times over `threads` threads, each request to a random one of `names`."""
    x = np.random.default_rng(1).random((1, 60, 120), dtype=np.float32)
    times: list[float] = []
    barrier = threading.Barrier(threads)

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        picks = rng.integers(len(names), size=requests)
        mine = []
        barrier.wait()
        for i in picks:
            start = time.perf_counter()
            store.get(names[i])(x)
            mine.append(time.perf_counter() - start)
        times.extend(mine)
    pool = [threading.Thread(target=worker, args=(s,)) for s in range(threads)]
    gc.disable()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    gc.enable()
    return percentiles(times)


def child(kind: str, count: int, requests: int) -> dict:
    """One (kind, count) cell, in this fresh process."""
    os.environ["PDINFER_COLD_START"] = "compile"  # the steady state: every model on its compiled kernels
    import pdinfer
    from pdinfer.plan import packed_bytes
    with tempfile.TemporaryDirectory(prefix="pdinfer-scale-") as tmp:
        directory = Path(tmp)
        write_distinct(TEMPLATES[kind], directory, count + 1)
        store = pdinfer.ModelStore(directory)
        x = np.random.default_rng(0).random((1, 60, 120), dtype=np.float32)
        store.get("m0")(x)  # runtime set-up and compiled kernels, paid once
        names = [f"m{i}" for i in range(1, count + 1)]
        gc.collect()
        before = rss_bytes()
        loads = []
        for name in names:
            start = time.perf_counter()
            store.get(name)
            loads.append(time.perf_counter() - start)
            store.get(name)(x)
        gc.collect()
        after = rss_bytes()
        packed = packed_bytes(store.get("m1")._plan)
        shared = reachable(store.get("m0"))
        objects = statistics.median(object_bytes(store.get(n), shared) for n in names[:20])
        per_model = (after - before) / count
        result = {
            "kind": kind, "models": count, "packed_bytes": packed, "rss_per_model_bytes": per_model,
            "rss_over_packed": per_model / packed, "objects_per_model_bytes": objects,
            "rest_per_model_bytes": per_model - packed - objects,
            "load_ms": statistics.median(loads) * 1e3,
            "latency": {f"{where}_{threads}t": latency(store, names if where == "spread" else ["m1"], requests, threads)
                        for threads in (1, 2) for where in ("spread", "hot")},
        }
    return result


def report(results: list[dict], meta: dict) -> str:
    lines = ["# Many resident models (benchmarks/scale.py)", "",
             f"{meta['date']}, {meta['cpus']} CPUs, load average {meta['load_before']} before, "
             f"{meta['load_after']} after; {meta['requests']} requests per thread and cell. "
             "Batch-1 PDLight models, distinct weights; KB = 1000 bytes.", "",
             "| weights | models | packed KB | RSS per model KB | RSS / packed | Python objects KB | rest KB "
             "| load ms | spread 1t p50/p99 ms | hot 1t p50/p99 ms | spread 2t p50/p99 ms | hot 2t p50/p99 ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lat = r["latency"]
        cells = [f"{lat[k]['p50_ms']:.2f} / {lat[k]['p99_ms']:.2f}" for k in ("spread_1t", "hot_1t", "spread_2t", "hot_2t")]
        lines.append(f"| {r['kind']} | {r['models']} | {r['packed_bytes'] / 1e3:.0f} | {r['rss_per_model_bytes'] / 1e3:.0f} "
                     f"| {r['rss_over_packed']:.2f}x | {r['objects_per_model_bytes'] / 1e3:.0f} "
                     f"| {r['rest_per_model_bytes'] / 1e3:.0f} | {r['load_ms']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--kinds", nargs="+", choices=sorted(TEMPLATES), default=["f32", "int8"])
    parser.add_argument("--requests", type=int, default=1000, help="requests per thread and cell (default 1000)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.requests)))
        return 0
    meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpus": os.cpu_count(),
            "load_before": round(os.getloadavg()[0], 2), "requests": args.requests}
    results = []
    for kind in args.kinds:
        for count in args.counts:
            print(f"{kind}, {count} models ...", flush=True)
            out = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--child", kind, str(count),
                                  "--requests", str(args.requests)], cwd=REPO, capture_output=True, text=True,
                                 check=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    meta["load_after"] = round(os.getloadavg()[0], 2)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps({"machine": meta, "results": results}, indent=1) + "\n")
    text = report(results, meta)
    (args.out / "scale.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
