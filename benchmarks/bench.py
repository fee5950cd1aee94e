"""Benchmark pdinfer against torch (eager and torch.jit frozen), ONNX Runtime and OpenVINO (float32 and
int8), side by side.

    python -m benchmarks [--quick] [--models pd_light pd_model] [--engines ...] [--only ...] [--profile] [--no-spinning]
    python benchmarks/bench.py ...          (the same)

Each engine runs alone in its own process, as users run it: latency and throughput in `rounds`
fresh processes per engine and thread count (benchmarks/child.py `speed`), the engine that goes
first rotating from round to round so that slow drifts of a shared machine hit all engines alike;
the figures are medians over the rounds. Spin-waiting threads stay at each library's default
(ONNX Runtime spins; torch's OpenMP as OMP_WAIT_POLICY says) unless --no-spinning turns them off.
Every engine's output is checked against pdinfer's on the same inputs first.
The machine's float32 FMA peak is measured once per run (benchmarks/peak.py).
Cold start, memory and peak memory are measured in fresh child processes too.
Writes RESULTS/latest.md (the tables), latest.json (raw numbers) and latest.png (a bar chart);
--quick writes quick.* instead. docs/BENCHMARKS.md explains every number.
"""

from __future__ import annotations

import argparse
import compileall
import gc
import hashlib
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: import the package from the repo root
    sys.path[0] = str(REPO)

from benchmarks import engines, peak, report  # noqa: E402
from benchmarks.engines import ENGINES, SEED_MODELS, Runner  # noqa: E402

SECTIONS = ("latency", "throughput", "load", "cold", "memory", "peak", "profile")
TOLERANCE = 1e-4  # the most any engine's output may differ from pdinfer's
APPROXIMATE_TOLERANCE = 0.05  # ... for pdinfer on compressed weights (rounded weights; see weights/README.md)
#                               and for the peers' int8 models
BATCH = 64
FULL = {"runs": 1000, "batch_runs": 20, "rounds": 3, "load_runs": 20, "cold_reps": 3, "copies": 50, "profile_runs": 50}
QUICK = {"runs": 100, "batch_runs": 4, "rounds": 1, "load_runs": 5, "cold_reps": 1, "copies": 10, "profile_runs": 20}


def log(message: str) -> None:
    print(message, flush=True)


def inputs() -> tuple[Any, Any]:
    """One synthetic PD image (1, 1, 60, 120) and a batch of BATCH (BATCH, 1, 60, 120), float32."""
    from exporter.synthetic import generate
    images, _ = generate(-(-BATCH // 6), seed=0)
    return images[:1].copy(), images[:BATCH].copy()


def max_abs_diff(a: Any, b: Any) -> float:
    """Largest |a - b| over all values, in plain Python (no numpy in the check itself)."""
    a_values, b_values = a.reshape(-1).tolist(), b.reshape(-1).tolist()
    if len(a_values) != len(b_values):
        return float("inf")
    return max(abs(p - q) for p, q in zip(a_values, b_values))


def check_agreement(runners: dict[str, Runner], batches: list[Any]) -> dict[str, float]:
    """Every engine's largest difference from the first one (pdinfer) on the same inputs; exits if > TOLERANCE."""
    reference, *others = runners
    diffs = {name: max(max_abs_diff(runners[reference](x), runners[name](x)) for x in batches)
             for name in others}
    bad = {name: d for name, d in diffs.items()
           if not d <= (APPROXIMATE_TOLERANCE if name in engines.COMPRESSED or name in engines.QUANTIZED else TOLERANCE)}
    if bad:
        raise SystemExit(f"engines disagree with {reference} by more than {TOLERANCE} "
                         f"({APPROXIMATE_TOLERANCE} for compressed weights and int8 models): {bad}")
    return diffs


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * q / 100) - 1)]


def measure_speed(artifacts: dict, artifacts_json: str, names: list[str], threads: int, x1: Any, x64: Any,
                  counts: dict, spinning: bool) -> dict:
    """Batch-1 latency and batch-64 throughput of every engine on `threads` threads, each engine
    alone in a fresh process per round (child.py `speed`); medians over the rounds."""
    runners = {name: engines.load(name, artifacts, threads, spinning) for name in names}
    result: dict[str, Any] = {"max_abs_diff": check_agreement(runners, [x1, x64])}
    del runners
    gc.collect()
    rounds = counts["rounds"]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for round_index in range(rounds):
        first = round_index % len(names)
        for name in names[first:] + names[:first]:
            runs[name].append(run_child("speed", name, artifacts_json, str(threads), str(-(-counts["runs"] // rounds)),
                                        str(-(-counts["batch_runs"] // rounds)), str(int(spinning))))
    speeds = {name: median_fields(r) for name, r in runs.items()}
    failed = {name: s["error"] for name, s in speeds.items() if "error" in s}
    if failed:
        raise SystemExit(f"speed measurement failed: {failed}")
    result["latency"] = {name: {"median_ms": s["median_ms"], "p99_ms": s["p99_ms"], "mean_ms": s["mean_ms"],
                                "runs": -(-counts["runs"] // rounds) * rounds} for name, s in speeds.items()}
    result["throughput"] = {name: {"median_ms": s["batch_median_ms"], "img_per_s": len(x64) / (s["batch_median_ms"] / 1e3),
                                   "runs": -(-counts["batch_runs"] // rounds) * rounds} for name, s in speeds.items()}
    result["rounds"] = rounds
    return result


def measure_load(artifacts: dict, names: list[str], runs: int) -> dict[str, float]:
    """Median milliseconds of engines.load (one thread), interleaved like the timed runs."""
    samples: dict[str, list[float]] = {name: [] for name in names}
    engines.load(names[0], artifacts, 1)  # the first load of a process pays one-time set-up
    for round_index in range(runs):
        first = round_index % len(names)
        for name in names[first:] + names[:first]:
            start = time.perf_counter()
            engines.load(name, artifacts, 1, compiled=False)  # the file read, checked and packed
            samples[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(s) for name, s in samples.items()}


def run_child(task: str, engine: str, artifacts_json: str, *extra: str,
              numba_cache: str | None = None) -> dict:
    """Run benchmarks/child.py in a fresh interpreter; its JSON result plus the parent-side wall time."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    if numba_cache:
        env["NUMBA_CACHE_DIR"] = numba_cache
    command = [sys.executable, "-m", "benchmarks.child", task, engine, artifacts_json, *extra]
    start = time.perf_counter()
    done = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_wall_s": wall}


def median_fields(results: list[dict]) -> dict:
    """Field-wise medians of child results (or the first error)."""
    errors = [r for r in results if "error" in r]
    if errors:
        return errors[0]
    return {key: statistics.median(r[key] for r in results) for key in results[0]} | {"reps": len(results)}


def measure_cold(artifacts_json: str, names: list[str], reps: int, scratch: str) -> dict:
    """Median cold starts; pdinfer with a warm and with an empty Numba cache (NUMBA_CACHE_DIR).

    The source tree's Python files are compiled to bytecode first, as pip does for an installed
    package (the libraries of the other engines come compiled from site-packages): without it,
    and with PYTHONDONTWRITEBYTECODE set, every child would compile pdinfer's sources (~40 ms).
    """
    for package in ("pdinfer", "benchmarks"):
        compileall.compile_dir(REPO / package, quiet=1)
    variants = [(name, name) for name in names]
    warm_cache = tempfile.mkdtemp(prefix="numba-warm-", dir=scratch)
    if "pdinfer" in names:
        variants.append(("pdinfer_empty_cache", "pdinfer"))
    for name in names:
        if name.startswith("pdinfer"):  # fills the warm cache with the kernels of every pdinfer engine
            run_child("cold", name, artifacts_json, numba_cache=warm_cache)
    runs: dict[str, list[dict]] = {key: [] for key, _ in variants}
    for rep in range(reps):
        first = rep % len(variants)
        for key, engine in variants[first:] + variants[:first]:
            cache = tempfile.mkdtemp(prefix="numba-empty-", dir=scratch) if key == "pdinfer_empty_cache" else warm_cache
            runs[key].append(run_child("cold", engine, artifacts_json, numba_cache=cache))
    return {key: median_fields(r) for key, r in runs.items()}


def measure_profile(artifacts: dict, x1: Any, x64: Any, runs: int) -> dict:
    """Per-step times of pdinfer next to torch eager's per-module times (one thread), batch 1 and 64."""
    from benchmarks.layer_profile import profile
    model = engines.load("pdinfer", artifacts, 1)
    import torch
    torch.set_num_threads(1)
    module = engines.torch_module(artifacts)
    return {str(len(x)): profile(model, module, x, runs if len(x) == 1 else max(3, runs // 10)) for x in (x1, x64)}


def configure_spinning(spinning: bool = True) -> dict:
    """Unless `spinning`, make torch's OpenMP threads sleep when idle; returns the settings, for the report.

    torch's wheel links GNU libgomp, which reads OMP_WAIT_POLICY once, when torch is first
    imported (engines.py imports it lazily, after this). setdefault: a value the user set stays.
    Children inherit the environment. ONNX Runtime's setting is per session (engines.load).
    """
    torch_was_imported = "torch" in sys.modules
    if not spinning:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return {"spinning": spinning, "ort_allow_spinning": None if spinning else 0,
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"), "torch_imported_before": torch_was_imported}


def machine_info() -> dict:
    """CPU, cores, library versions, git commit and the environment variables that matter."""
    from importlib import metadata
    info: dict[str, str] = {}
    with open("/proc/cpuinfo") as f:
        for line in f:  # the first processor's entry
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    cpu = (f"{info.get('model name', 'unknown')} (family {info.get('cpu family')}, model {info.get('model')}, "
           f"cache {info.get('cache size')}, {info.get('cpu MHz')} MHz)")
    flags = set(info.get("flags", "").split())
    versions = {"python": sys.version.split()[0]}
    for package in ("pdinfer", "numpy", "numba", "llvmlite", "torch", "onnxruntime", "onnx", "openvino",
                    "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    if versions["pdinfer"] is None:  # run from the source tree
        import pdinfer
        versions["pdinfer"] = pdinfer.__version__
    git = subprocess.run(["git", "describe", "--always", "--dirty"], check=False, cwd=REPO, capture_output=True, text=True)
    sources = hashlib.sha256()  # pins the pdinfer code measured when the work tree is dirty
    for path in sorted((REPO / "pdinfer").rglob("*.py")):
        sources.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
            "simd": sorted(flags & {"avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"}),
            "versions": versions, "git": git.stdout.strip() or None,
            "pdinfer_sources_sha256": sources.hexdigest()[:16],
            "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                                                    "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS",
                                                    "NUMBA_NUM_THREADS", "NUMBA_CACHE_DIR",
                                                    "PYTHONDONTWRITEBYTECODE")}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few runs, for development (writes quick.*)")
    parser.add_argument("--models", nargs="+", choices=sorted(SEED_MODELS), default=sorted(SEED_MODELS))
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                        help=f"measure only these: {', '.join(SECTIONS)} (default: all but profile)")
    parser.add_argument("--profile", action="store_true", help="also time every pdinfer plan step")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--no-spinning", dest="spinning", action="store_false",
                        help="turn torch's OpenMP and ONNX Runtime's thread spinning off (default: the libraries' "
                             "defaults, as users run them)")
    for name, full in FULL.items():
        parser.add_argument("--" + name.replace("_", "-"), type=int, help=f"default {full} ({QUICK[name]} with --quick)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="output directory")
    args = parser.parse_args(argv)
    args.sections = args.only or [s for s in SECTIONS if s != "profile" or args.profile]
    if args.profile and "profile" not in args.sections:
        args.sections.append("profile")
    args.counts = {name: getattr(args, name) or (QUICK if args.quick else FULL)[name] for name in FULL}
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spinning = configure_spinning(args.spinning)  # before anything imports torch
    sections = args.sections
    results: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)]),
        "load_average_before": os.getloadavg(), "machine": machine_info(), "counts": args.counts,
        "sections": sections, "threads": args.threads, "tolerance": TOLERANCE, "spinning": spinning, "models": {}}
    results["machine"]["fma_peak_gflops"] = peak.fma_peak(tuple(sorted({1, *args.threads})))
    log("machine peak (FMA loop): " + report.peak_text(results["machine"]["fma_peak_gflops"]))
    names = [e for e in ENGINES if e in args.engines]  # pdinfer first: the agreement reference
    results["pdinfer_thread_setting"] = engines.pdinfer_has_threads() if "pdinfer" in names else None
    x1, x64 = inputs()
    with tempfile.TemporaryDirectory(prefix="pdinfer-bench-") as scratch:
        for model in args.models:
            log(f"== {model}: exporting")
            artifacts, problems = engines.make_artifacts(model, scratch)
            artifacts_json = os.path.join(scratch, model + ".artifacts.json")
            with open(artifacts_json, "w") as f:
                json.dump(artifacts, f)
            active = [n for n in names if n not in problems]
            entry: dict[str, Any] = {"problems": {n: p for n, p in problems.items() if n in names},
                                     "engines": active, "jit_via": artifacts.get("jit_via"),
                                     "onnx_via": artifacts.get("onnx_via"), "speed": {}}
            results["models"][model] = entry
            if {"latency", "throughput"} & set(sections):
                for threads in args.threads:
                    log(f"   latency/throughput, {threads} thread(s), each engine in its own process")
                    entry["speed"][str(threads)] = measure_speed(artifacts, artifacts_json, active, threads, x1, x64,
                                                                 args.counts, args.spinning)
            if "load" in sections:
                log("   load time")
                entry["load_ms"] = measure_load(artifacts, active, args.counts["load_runs"])
            if "cold" in sections:
                log("   cold starts")
                entry["cold"] = measure_cold(artifacts_json, active, args.counts["cold_reps"], scratch)
            if "memory" in sections:
                log("   resident memory per model")
                entry["memory"] = {n: run_child("memory", n, artifacts_json, str(args.counts["copies"]))
                                   for n in active}
            if "peak" in sections:
                log("   peak memory")
                entry["peak"] = {n: run_child("peak", n, artifacts_json) for n in active}
            if "profile" in sections and "pdinfer" in active:
                log("   per-step profile")
                entry["profile"] = measure_profile(artifacts, x1, x64, args.counts["profile_runs"])
    results["load_average_after"] = os.getloadavg()
    stem = "quick" if args.quick else "latest"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(report.markdown(results))
    report.chart(results, args.out / f"{stem}.png")
    log(f"wrote {args.out / stem}.md, .json, .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
