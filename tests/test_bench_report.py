"""The benchmark's honesty settings and report lines: the spinning mode, the machine peak, % of peak."""

import pytest

from benchmarks import bench, peak, report


def results(spinning: dict, peaks: dict) -> dict:
    """A bench.py result with one model and a batch-1 profile of one 0.01 s step of 1.2 MMAC."""
    step = {"layers": ["conv"], "what": "conv 3x3/1 1->8", "output_shape": [1, 8, 60, 120], "macs": 1_200_000,
            "pdinfer_s": 0.01, "kernel_calls": 1, "torch_s": 0.02}
    machine = {"cpu": "test CPU", "logical_cpus": 2, "usable_cpus": 2, "simd": ["avx2"], "versions": {"numpy": "2"},
               "git": "abc", "env": {"OMP_WAIT_POLICY": spinning["OMP_WAIT_POLICY"]}, "fma_peak_gflops": peaks}
    profile = {"batch": 1, "steps": [step], "pdinfer_total_s": 0.011, "pdinfer_outside_steps_s": 0.001,
               "torch_total_s": 0.02}
    return {"date": "2026-12-01", "command": "python -m benchmarks", "load_average_before": [0, 0, 0],
            "load_average_after": [0, 0, 0], "machine": machine, "counts": {"runs": 1}, "tolerance": 1e-4,
            "pdinfer_thread_setting": True, "threads": [1, 2], "spinning": spinning,
            "models": {"pd_light": {"engines": ["pdinfer"], "problems": {}, "speed": {},
                                    "load_ms": {"pdinfer": 5.0}, "profile": {"1": profile}}}}


def test_spinning_is_at_the_libraries_defaults_unless_turned_off(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    on = bench.configure_spinning()
    assert on["spinning"] and on["OMP_WAIT_POLICY"] is None and on["ort_allow_spinning"] is None
    assert bench.parse_args([]).spinning and not bench.parse_args(["--no-spinning"]).spinning
    assert bench.configure_spinning(False)["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert bench.configure_spinning(False)["OMP_WAIT_POLICY"] == "ACTIVE"  # a user's setting is kept


@pytest.mark.parametrize("spinning", [False, True])
def test_the_report_says_which_spinning_mode_was_used(spinning):
    settings = {"spinning": spinning, "ort_allow_spinning": None if spinning else 0,
                "OMP_WAIT_POLICY": None if spinning else "PASSIVE", "torch_imported_before": False}
    text = report.markdown(results(settings, {"1": 200.0, "2": 400.0}))
    environment = next(line for line in text.splitlines() if line.startswith("- environment:"))
    assert "each engine in its own process" in environment
    if spinning:
        assert "libraries' defaults" in environment and "OMP_WAIT_POLICY=unset" in environment
    else:
        assert "spinning off (`--no-spinning`): ONNX Runtime allow_spinning=0" in environment
        assert "OMP_WAIT_POLICY=PASSIVE" in environment


def test_peak_line_and_percent_of_the_one_core_peak():
    settings = {"spinning": False, "ort_allow_spinning": 0, "OMP_WAIT_POLICY": "PASSIVE", "torch_imported_before": False}
    text = report.markdown(results(settings, {"2": 400.0, "1": 200.0})).splitlines()
    assert text.count("machine peak (FMA loop): 200 GFLOP/s on 1 core, 400 on 2") == 2  # model table, profile
    header = next(line for line in text if line.startswith("| # | step"))
    row = next(line for line in text if line.startswith("| 0 | conv"))
    cells = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in row.split("|")]))
    assert cells["GFLOP/s"] == "0.240"  # 2 * 1.2e6 / 0.01 s
    assert cells["% of peak"] == "0.120"  # of the 1-core 200 GFLOP/s


def test_fma_peak_is_measured_and_physically_possible():
    rates = peak.fma_peak((1, 2), seconds=0.02, repeats=1)
    assert set(rates) == {"1", "2"}
    # 16 lanes x 2 FLOPs x 2 FMA ports x 6 GHz = 384 GFLOP/s per core: more means the loop was cut.
    assert 1 < rates["1"] < 400 and 1 < rates["2"] < 800


def test_a_multi_core_peak_far_below_n_times_one_core_is_flagged():
    settings = {"spinning": False, "ort_allow_spinning": 0, "OMP_WAIT_POLICY": "PASSIVE", "torch_imported_before": False}
    text = report.markdown(results(settings, {"1": 200.0, "2": 250.0}))
    assert "machine peak (FMA loop): 200 GFLOP/s on 1 core, 250 on 2 — the 2-core figure is under 75%" in text
