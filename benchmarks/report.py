"""Turn the raw results (bench.py's JSON) into the markdown tables and a Pillow bar chart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.engines import CALIBRATION_IMAGES, ENGINES, LABELS, ONNX_FILES, QUANTIZED, SEED_MODELS

MB = 1e6
Getter = Callable[[dict, str], float | None]  # (model entry, engine) -> value


def _get(entry: dict, *keys: str) -> float | None:
    """entry[k0][k1]...; None where a level is missing or a child process failed."""
    for key in keys:
        if not isinstance(entry, dict) or key not in entry:
            return None
        entry = entry[key]
    return entry if isinstance(entry, (int, float)) else None


def _rows(threads: list[int]) -> list[tuple[str, Getter, bool]]:
    """(label, getter, higher is better) for every line of a model's table."""
    rows: list[tuple[str, Getter, bool]] = []
    for t in threads:
        s, n = str(t), f"{t} thread" + ("s" if t > 1 else "")
        rows += [
            (f"batch-1 latency, median, {n} (ms)", lambda m, e, s=s: _get(m, "speed", s, "latency", e, "median_ms"), False),
            (f"batch-1 latency, p99, {n} (ms)", lambda m, e, s=s: _get(m, "speed", s, "latency", e, "p99_ms"), False),
            (f"batch-64 throughput, {n} (img/s)", lambda m, e, s=s: _get(m, "speed", s, "throughput", e, "img_per_s"), True)]
    rows += [
        ("load time, median (ms)", lambda m, e: _get(m, "load_ms", e), False),
        ("cold start, warm compile cache (s)", lambda m, e: _get(m, "cold", e, "total_s"), False),
        ("cold start, empty compile cache (s)",
         lambda m, e: _get(m, "cold", "pdinfer_empty_cache" if e == "pdinfer" else e, "total_s"), False),
        ("resident memory per loaded model (MB)", lambda m, e: _scaled(_get(m, "memory", e, "per_model_bytes")), False),
        ("peak memory, load + batch-64 (MB)", lambda m, e: _scaled(_get(m, "peak", e, "peak_bytes")), False)]
    return rows


def _scaled(value: float | None) -> float | None:
    return None if value is None else value / MB


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    for limit, digits in ((100, 0), (10, 1), (1, 2)):
        if abs(value) >= limit:
            return f"{value:.{digits}f}"
    return f"{value:.3f}"


def _ratio(pdinfer: float | None, other: float | None, higher_is_better: bool) -> str:
    """How many times better pdinfer is: other/pdinfer for times and memory, pdinfer/other for throughput."""
    if not pdinfer or not other:
        return "n/a"
    return f"{(pdinfer / other if higher_is_better else other / pdinfer):.2f}×"


# The ratio columns: pdinfer float32 against the peers' float32, pdinfer int8 against the peers' int8.
VERSUS = (("pdinfer", "torch"), ("pdinfer", "ort"), ("pdinfer", "openvino"), ("pdinfer_int8", "ort_int8"),
          ("pdinfer_int8", "openvino_int8"))


def _model_table(entry: dict, threads: list[int]) -> list[str]:
    """The model's main table (none when no section of it was measured)."""
    engines = [e for e in ENGINES if e in entry["engines"]]
    versus = [(ours, theirs) for ours, theirs in VERSUS if ours in engines and theirs in engines]
    lines = ["| measure | " + " | ".join(LABELS[e] for e in engines) + "".join(
        f" | {LABELS[ours]} vs {LABELS[theirs]}" for ours, theirs in versus) + " |",
        "|---" * (1 + len(engines) + len(versus)) + "|"]
    for label, get, higher in _rows(threads):
        values = {e: get(entry, e) for e in engines}
        if all(v is None for v in values.values()):
            continue
        cells = [_fmt(values[e]) for e in engines] + [_ratio(values[ours], values[theirs], higher)
                                                      for ours, theirs in versus]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines if len(lines) > 2 else []


def _cold_table(entry: dict) -> list[str]:
    lines = ["| cold start (median s) | import | load | first inference | total | compiled kernels ready | process wall |",
             "|---|---|---|---|---|---|---|"]
    for key, result in entry.get("cold", {}).items():
        name = "pdinfer, empty compile cache" if key == "pdinfer_empty_cache" else (
            "pdinfer, warm compile cache" if key == "pdinfer" else LABELS[key])
        if "error" in result:
            lines.append(f"| {name} | error: {result['error']} | | | | | |")
            continue
        lines.append(f"| {name} | " + " | ".join(_fmt(result[k]) if k in result else "-" for k in (
            "import_s", "load_s", "first_inference_s", "total_s", "compiled_s", "process_wall_s")) + " |")
    return lines


def peak_text(peaks: dict[str, float]) -> str:
    """'X GFLOP/s on 1 core, Y on 2' from {"1": X, "2": Y} (benchmarks/peak.py)."""
    (n, first), *more = sorted(peaks.items(), key=lambda item: int(item[0]))
    return f"{_fmt(first)} GFLOP/s on {n} core{'s' if n != '1' else ''}" + "".join(
        f", {_fmt(gflops)} on {m}" for m, gflops in more)


def _peak_line(machine: dict) -> list[str]:
    """The measured-peak line put above every table (none for results from before it was measured)."""
    peaks = machine.get("fma_peak_gflops")
    if not peaks:
        return []
    short = [n for n, gflops in peaks.items() if gflops < 0.75 * int(n) * peaks["1"]]
    busy = "".join(f" — the {n}-core figure is under 75% of {n} × the 1-core one: other work was running"
                   for n in short)
    return [f"machine peak (FMA loop): {peak_text(peaks)}{busy}", ""]


def _spinning_text(spinning: dict | None) -> str:
    """Where the engines ran and how their spin-waiting threads were set (bench.configure_spinning)."""
    if spinning is None:
        return "engines shared one process (results from before each ran in its own); spinning not recorded"
    policy = spinning["OMP_WAIT_POLICY"] or "unset"
    late = (" — torch was imported before the benchmark set it, so it had no effect"
            if spinning["torch_imported_before"] and not spinning["spinning"] else "")
    where = "each engine in its own process for latency and throughput"
    if spinning["spinning"]:
        return (f"{where}; spinning at the libraries' defaults, as users run them: ONNX Runtime "
                f"allow_spinning at its default (1), OMP_WAIT_POLICY={policy}")
    return (f"{where}; spinning off (`--no-spinning`): ONNX Runtime allow_spinning=0 (intra- and inter-op), "
            f"OMP_WAIT_POLICY={policy} (torch's GNU OpenMP){late}; pdinfer's pool threads block when idle, its helper spins only during a call")


def _passes_text(steps: list[dict]) -> str:
    """How many times each step's kernel ran in one call (a step's time is the sum over them)."""
    calls = sorted({row["kernel_calls"] for row in steps if "kernel_calls" in row})
    if not calls or calls == [1]:
        return ""
    counts = str(calls[0]) if len(calls) == 1 else f"{calls[0]} to {calls[-1]}"
    return f" Each step's kernel ran {counts} times per call (passes over parts of the batch); its time is the sum."


def _profile_table(result: dict, peak_gflops: float | None) -> list[str]:
    n = result["batch"]
    lines = [(f"Batch {n}, one thread. pdinfer call {_fmt(1e3 * result['pdinfer_total_s'])} ms, of which "
              f"{_fmt(1e3 * result['pdinfer_outside_steps_s'])} ms outside the steps (input check, layout "
              f"changes); torch eager call {_fmt(1e3 * result['torch_total_s'])} ms (without hooks)."
              + _passes_text(result["steps"])), "",
             ("| # | step | output (NCHW) | MMAC | pdinfer ms | GFLOP/s | % of peak | torch ms | pdinfer/torch time "
              "| % of pdinfer |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    total = sum(row["pdinfer_s"] for row in result["steps"])
    for i, row in enumerate(result["steps"]):
        ms, torch_ms = 1e3 * row["pdinfer_s"], row["torch_s"] and 1e3 * row["torch_s"]
        gflops = 2 * row["macs"] / row["pdinfer_s"] / 1e9 if row["macs"] else None
        of_peak = 100 * gflops / peak_gflops if gflops and peak_gflops else None
        slower = f"{ms / torch_ms:.2f}" if torch_ms else "n/a"
        lines.append(f"| {i} | {row['what']} | {'x'.join(map(str, row['output_shape']))} | "
                     f"{_fmt(row['macs'] / 1e6) if row['macs'] else '-'} | {_fmt(ms)} | {_fmt(gflops)} | "
                     f"{_fmt(of_peak)} | "
                     f"{_fmt(torch_ms)} | {slower} | {100 * row['pdinfer_s'] / total:.1f} |")
    return lines


def markdown(results: dict) -> str:
    """The whole report: machine, how to read it, one table per model, cold-start and profile details."""
    machine, threads = results["machine"], results["threads"]
    before, after = results["load_average_before"], results["load_average_after"]
    busy = max(before[0], after[0]) > 0.5 * machine["usable_cpus"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    env = ", ".join(f"{k}={v}" for k, v in machine["env"].items() if v is not None) or "none set"
    pdinfer_threads = results["pdinfer_thread_setting"]
    lines = [
        "# pdinfer benchmarks", "",
        f"- date: {results['date']}; command: `{results['command']}`",
        (f"- machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs ({machine['usable_cpus']} usable), "
         f"SIMD: {', '.join(machine['simd']) or 'none'}"),
        f"- versions: {versions}; git {machine['git']}"
        + (f" (pdinfer/*.py sha256 {machine['pdinfer_sources_sha256']})" if "pdinfer_sources_sha256" in machine else ""),
        f"- environment: {env} (torch uses its own MKL/oneDNN, not OpenBLAS); "
        + _spinning_text(results.get("spinning")),
        f"- load average (1, 5, 15 min) before: {', '.join(f'{v:.2f}' for v in before)}; "
        f"after: {', '.join(f'{v:.2f}' for v in after)}"
        + (" — **the machine was busy: the numbers are noisy**" if busy else ""),
        (f"- runs: {', '.join(f'{k}={v}' for k, v in results['counts'].items())}; engines agree within "
         f"{results['tolerance']} (max |difference| from pdinfer, checked before timing)"),
        "- pdinfer thread setting: " + ("`pdinfer.set_num_threads` used" if pdinfer_threads else
                                        "n/a (no `pdinfer.set_num_threads`): pdinfer runs on one thread in every row"),
        "",
        ("How to read the ratio columns: **how many times better pdinfer is** than the other engine. For times "
         "and memory that is other / pdinfer (speedup = torch_time / pdinfer_time); for throughput pdinfer / other. "
         "Above 1.00× pdinfer wins, below it loses. Latency is per call of one image; throughput is 64 / the median "
         "time of one batch-64 call. Cold start is a fresh process: import + load + first inference. "
         "torch, ONNX Runtime and OpenVINO keep no compile cache on disk, so both cold-start rows show the same process "
         "for them. The int8 columns are compared with pdinfer int8 (int8 computation, calibrated on the same images)."),
    ]
    for model, entry in results["models"].items():
        lines += ["", f"## {model} ({SEED_MODELS[model]}(6))", ""]
        active = entry["engines"]
        notes = [f"torch.jit via {entry['jit_via']} + torch.jit.freeze" if "torch_jit" in active else None,
                 f"ONNX via {entry['onnx_via']}" if set(active) & set(ONNX_FILES) else None,
                 (f"int8 ONNX: onnxruntime.quantization.quantize_static, QDQ, int8 weights per channel, uint8 "
                  f"activations calibrated (MinMax) on {CALIBRATION_IMAGES} synthetic images; OpenVINO runs the same "
                  f"file") if set(active) & set(QUANTIZED) else None,
                 "OpenVINO with INFERENCE_PRECISION_HINT f32" if any(e.startswith("openvino") for e in active) else None,
                 *(f"{LABELS[e]} not run: {why}" for e, why in entry["problems"].items())]
        notes += [f"{section} of {LABELS[e]} failed: {r['error']}" for section in ("memory", "peak")
                  for e, r in entry.get(section, {}).items() if "error" in r]
        diffs = {e: d for speed in entry["speed"].values() for e, d in speed["max_abs_diff"].items()}
        if diffs:
            notes.append("max |difference| from pdinfer: " + ", ".join(f"{LABELS[e]} {d:.1e}" for e, d in diffs.items()))
        table = _model_table(entry, threads)
        lines += [f"- {n}" for n in notes if n] + ([""] + _peak_line(machine) + table if table else [])
        if entry.get("cold"):
            lines += [""] + _cold_table(entry)
        peak_1 = machine.get("fma_peak_gflops", {}).get("1")
        for result in entry.get("profile", {}).values():
            lines += (["", f"### {model}: pdinfer per plan step vs torch eager per module", ""] + _peak_line(machine)
                      + _profile_table(result, peak_1))
    return "\n".join(lines) + "\n"


COLORS = {"pdinfer": (214, 84, 38), "pdinfer_f16": (230, 130, 80), "pdinfer_bf16": (240, 160, 110),
          "pdinfer_int8": (245, 190, 140), "torch": (55, 105, 190), "torch_jit": (120, 160, 225), "ort": (70, 150, 80),
          "ort_int8": (140, 200, 140), "openvino": (130, 60, 160), "openvino_int8": (190, 150, 210)}


def chart(results: dict, path: Path) -> None:
    """Horizontal bar chart (Pillow): batch-1 latency, batch-64 throughput, memory per model."""
    from PIL import Image, ImageDraw, ImageFont
    t = str(results["threads"][0])
    panels = [(f"batch-1 latency, median ms, {t} thread (lower is better)", lambda m, e: _get(m, "speed", t, "latency", e, "median_ms")),
              (f"batch-64 throughput, img/s, {t} thread (higher is better)", lambda m, e: _get(m, "speed", t, "throughput", e, "img_per_s")),
              ("resident memory per loaded model, MB (lower is better)", lambda m, e: _scaled(_get(m, "memory", e, "per_model_bytes")))]
    bars = [(title, [(f"{model} {LABELS[e]}", value, COLORS[e]) for model, entry in results["models"].items()
                     for e in ENGINES if (value := get(entry, e)) is not None]) for title, get in panels]
    bars = [(title, rows) for title, rows in bars if rows]
    row_h, left, width = 20, 220, 900
    height = 20 + sum(40 + row_h * len(rows) for _, rows in bars)
    image = Image.new("RGB", (width, max(height, 60)), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    y = 10
    for title, rows in bars:
        draw.text((10, y), title, fill="black", font=font)
        y += 26
        top = max(v for _, v, _ in rows)
        for label, value, color in rows:
            length = int((width - left - 90) * value / top)
            draw.text((10, y + 2), label, fill="black", font=font)
            draw.rectangle((left, y + 2, left + max(length, 1), y + row_h - 3), fill=color)
            draw.text((left + length + 6, y + 2), _fmt(value), fill="black", font=font)
            y += row_h
        y += 14
    image.save(path)
