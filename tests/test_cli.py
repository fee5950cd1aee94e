"""The `pdinfer` command on the shipped weights and samples, and on small test models."""

import gc
import json
import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import pdinfer
from pdinfer import cli, golden as golden_module, progress as progress_module
from pdinfer.cli import COMMAND_EXIT_CODES, COMPILING, EXIT_CODES, main
from pdinfer.builder import LayerList, conv2d_params
from small_model import sample_images, small_layers, write_small_model
from terminal import Terminal

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "weights" / "samples"
WEIGHTS = ["pd_light.pdw", "pd_model.pdw"]
LIGHT = str(ROOT / "weights" / "pd_light.pdw")


@pytest.fixture
def bar_at_once(monkeypatch):
    """Progress bars draw from the first step and on every step."""
    monkeypatch.setattr(progress_module, "DELAY", 0)
    monkeypatch.setattr(progress_module, "REDRAW_INTERVAL", 0)


def small_model_ending_in(tmp_path, last: str | None) -> str:
    """The small model with its Softmax replaced by `last` (a layer type) or dropped (None)."""
    layers = small_layers()  # ends in Softmax
    if last is None:
        layers.pop()
    elif last != "Softmax":
        layers[-1]["type"] = last
        layers[-1]["params"] = {}
    return str(write_small_model(tmp_path / f"ends_in_{last}.pdw", layers))


@pytest.mark.parametrize("weights", WEIGHTS)
def test_every_shipped_sample_is_classified_as_its_name(weights, capsys):
    assert main(["run", "--json", str(ROOT / "weights" / weights), str(SAMPLES)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == len(list(SAMPLES.glob("*.png"))) + len(list(SAMPLES.glob("*.npy"))) >= 12
    for record in records:
        assert record["class"] == Path(record["input"]).name.split("_")[0], record


def test_run_table_reports_bad_inputs_and_goes_on(tmp_path, capsys):
    bad = tmp_path / "a_bad.npy"
    bad.write_bytes(b"not a numpy file")
    good = SAMPLES / "void_1.npy"
    assert main(["run", LIGHT, str(bad), str(good)]) == 1
    out, err = capsys.readouterr()
    assert str(bad) in err and "cannot read image" in err
    assert out.splitlines()[0].split()[:3] == ["input", "class", "probability"]
    assert out.splitlines()[1].split()[:2] == [str(good), "void"]


@pytest.mark.parametrize("last, kind, plural", [("Softmax", "probability", "probabilities"),
                                                ("Sigmoid", "score", "scores"), (None, "logit", "logits")])
def test_the_value_column_is_named_from_the_last_layer(tmp_path, capsys, last, kind, plural):
    weights = small_model_ending_in(tmp_path, last)
    np.save(tmp_path / "one.npy", sample_images(1)[0])
    model = pdinfer.load(weights)
    assert model.output_kind == kind
    expected = model(sample_images(1)[0])
    assert main(["run", weights, str(tmp_path / "one.npy")]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["input", "class", kind, "corona", "void", "surface"]
    assert row.split()[2:] == [f"{v:.4f}" for v in (expected.max(), *expected)]
    assert main(["run", "--json", weights, str(tmp_path / "one.npy")]) == 0
    record = json.loads(capsys.readouterr().out)
    assert set(record) == {"input", "class", kind, plural}
    assert record[kind] == float(expected.max())
    assert record[plural] == dict(zip(model.classes, map(float, expected)))


def test_batch_rows_keep_the_table_aligned(tmp_path, capsys):
    np.save(tmp_path / "batch.npy", sample_images(12))
    np.save(tmp_path / "b.npy", sample_images(1)[0])
    logits = small_model_ending_in(tmp_path, None)  # negative values are wider
    assert main(["run", logits, str(tmp_path / "b.npy"), str(tmp_path / "batch.npy")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 1 + 12 and lines[-1].startswith(f"{tmp_path / 'batch.npy'}[11] ")
    assert len({len(line) for line in lines}) == 1, lines
    header = lines[0]
    class_start = header.index("class")
    number_ends = [header.index(f" {word}") + 1 + len(word) for word in ("logit", "corona", "void", "surface")]
    for line in lines[1:]:
        assert line[class_start - 2:class_start] == "  " and line[class_start] != " ", line
        for end in number_ends:  # numbers end under the end of their titles
            assert line[end - 1].isdigit() and line[end:end + 1] in ("", " "), line


def test_directories_report_subdirectories_or_walk_them(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.load(SAMPLES / "void_1.npy"))
    (tmp_path / "more").mkdir()
    np.save(tmp_path / "more" / "b.npy", np.load(SAMPLES / "corona_1.npy"))
    assert main(["run", "--json", LIGHT, str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["input"] for line in out.splitlines()] == [str(tmp_path / "a.npy")]
    assert f"warning: {tmp_path / 'more'}: subdirectory not read (use --recursive)" in err
    assert main(["run", "--json", "--recursive", LIGHT, str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["class"] for line in out.splitlines()] == ["void", "corona"]
    assert err == ""


def test_progress_goes_to_a_terminal_stderr_and_never_into_rows(monkeypatch, bar_at_once):
    term = Terminal()  # stdout and stderr on one terminal, as in an interactive shell
    monkeypatch.setattr(sys, "stdout", term)
    monkeypatch.setattr(sys, "stderr", term)
    for args in (["run", "--json", LIGHT, str(SAMPLES)], ["run", LIGHT, str(SAMPLES)]):
        term.seek(0)
        term.truncate()
        assert main(args) == 0
        assert "run [" in term.getvalue()  # the bar was drawn ...
        lines = term.screen()
        assert lines[-1] == ""  # ... and erased: the rows alone are left on the screen
        rows = lines[:-1] if "--json" in args else lines[1:-1]
        assert len(rows) == 36 and all("run [" not in line for line in lines)
        if "--json" in args:
            assert all(json.loads(line)["class"] == Path(json.loads(line)["input"]).name.split("_")[0]
                       for line in rows)


def test_no_progress_when_stderr_is_not_a_terminal(monkeypatch, capsys, bar_at_once):
    assert main(["run", LIGHT, str(SAMPLES)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "\r" not in out


def test_version_and_help_give_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == f"pdinfer {pdinfer.__version__}\n"
    for args in (["--help"], ["run", "--help"]):
        with pytest.raises(SystemExit):
            main(args)
        assert EXIT_CODES in capsys.readouterr().out
    for command in ("info", "warmup", "golden", "compress"):  # run's "some inputs failed" is not theirs
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        assert out.endswith(COMMAND_EXIT_CODES + "\n") and "some inputs failed" not in out
    assert EXIT_CODES in (ROOT / "README.md").read_text()


def test_a_bare_pdinfer_lists_the_commands(capsys):
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: pdinfer")
    for command in ("run", "info", "warmup", "golden", "compress"):
        assert f"\n    {command} " in err, command


def test_exit_codes(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"x")
    assert main(["run", LIGHT, str(SAMPLES / "void_1.npy")]) == 0
    assert main(["run", LIGHT, str(SAMPLES / "void_1.npy"), str(bad)]) == 1
    assert main(["run", LIGHT, str(tmp_path / "empty")]) == 1  # a missing input is a failed input
    (tmp_path / "empty").mkdir()
    assert main(["run", LIGHT, str(tmp_path / "empty")]) == 2
    assert main(["run", str(SAMPLES / "void_1.png"), str(SAMPLES / "void_1.npy")]) == 2  # not weights
    with pytest.raises(SystemExit) as exit_info:
        main(["run", LIGHT])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: no .png or .npy inputs found in {tmp_path / 'empty'}\n" in err and "Traceback" not in err


@pytest.mark.parametrize("first, what", [(SAMPLES / "void_1.png", "a PNG image"),
                                         (SAMPLES / "void_1.npy", "a NumPy .npy array")])
def test_swapped_arguments_say_what_the_file_is_and_the_usage(capsys, first, what):
    assert main(["run", str(first), LIGHT]) == 2
    assert capsys.readouterr().err == (f"error: {first}: not a pdinfer weight file (it is {what})\n"
                                       "usage: pdinfer run WEIGHTS INPUT... (the weight file comes first)\n")


def test_a_missing_image_is_named_once(tmp_path, capsys):
    missing = tmp_path / "missing.png"
    assert main(["run", LIGHT, str(missing)]) == 1
    assert capsys.readouterr().err == f"error: {missing}: cannot read image: No such file or directory\n"


def test_a_file_given_alone_and_through_its_directory_is_run_once(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.load(SAMPLES / "void_1.npy"))
    np.save(tmp_path / "b.npy", np.load(SAMPLES / "corona_1.npy"))
    assert main(["run", "--json", LIGHT, str(tmp_path / "b.npy"), str(tmp_path), f"{tmp_path}/./a.npy"]) == 0
    inputs = [json.loads(line)["input"] for line in capsys.readouterr().out.splitlines()]
    assert inputs == [str(tmp_path / "b.npy"), str(tmp_path / "a.npy")]


def test_corrupt_weights_exit_2_with_message(tmp_path, capsys):
    broken = tmp_path / "broken.pdw"
    broken.write_bytes((ROOT / "weights" / "pd_light.pdw").read_bytes()[:1000])
    assert main(["run", str(broken), str(SAMPLES)]) == 2
    assert "broken.pdw" in capsys.readouterr().err


def test_interrupt_exits_130_and_clears_the_bar(monkeypatch, bar_at_once):
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    calls = []

    def interrupted(model, path):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return model(np.zeros(model.input_shape, np.float32))

    monkeypatch.setattr(cli, "run", interrupted)
    assert main(["run", "--json", LIGHT, str(SAMPLES)]) == 130
    assert term.screen()[-2:] == ["interrupted", ""]


def test_info_lists_layers_shapes_and_macs(capsys):
    assert main(["info", str(ROOT / "weights" / "pd_model.pdw")]) == 0
    out = capsys.readouterr().out
    assert "conv.0" in out and "32x60x120" in out and "MACs per image: 99,7" in out
    assert "corona, floating, particle, void, surface, noise" in out
    assert "resident:" in out and "bytes of weights, packed" in out
    assert "format version 2)" in out and "checksum:   the whole file (header and data) verified" in out
    assert "computes:   in float32" in out


def test_info_shows_each_layers_weight_storage(capsys):
    assert main(["info", str(ROOT / "weights" / "pd_light.int8.pdw")]) == 0
    out = capsys.readouterr().out
    assert "computes:   in int8: its values are quantized" in out
    rows = {line.split()[0]: line.split()[5] for line in out.splitlines()[1:] if line.count("  ") > 3}
    assert rows["extractor.0.0"] == "I8" and rows["classifier.0"] == "I8" and rows["classifier.1"] == "-"
    assert not any(line.split()[1] == "BatchNorm2d" for line in out.splitlines()[1:] if line.strip())


def test_info_is_compact_unless_wide(capsys):
    weights = str(ROOT / "weights" / "pd_model.pdw")
    assert main(["info", weights]) == 0
    compact = capsys.readouterr().out.splitlines()
    assert main(["info", "--wide", weights]) == 0
    wide = capsys.readouterr().out.splitlines()
    assert max(map(len, compact)) <= 120 < max(map(len, wide))
    conv = next(line for line in compact if line.startswith("conv.0 "))
    assert conv.endswith("  kernel_size=3 stride=1 padding=1 bias=True")  # channels: in the shapes
    assert "in_channels=1, out_channels=32, kernel_size=[3, 3]" in next(line for line in wide if line.startswith("conv.0 "))


def test_info_resident_is_what_a_loaded_model_keeps(tmp_path, capsys):
    """A PReLU's weight is copied out of the file's buffer (a view would keep the whole file in
    memory) and counted: the bytes a loaded model holds are within 64 KiB of `resident:`."""
    layers = LayerList((64, 8, 8), seed=0)
    layers.add("Conv2d", **conv2d_params(64, 256, 3, padding=1))
    layers.add("PReLU", num_parameters=256)
    layers.add("GlobalAvgPool", keepdim=False)
    path = layers.write(tmp_path / "prelu.pdw")
    assert main(["info", str(path)]) == 0
    resident = int(re.search(r"^resident: +([\d,]+) bytes", capsys.readouterr().out, re.M).group(1).replace(",", ""))
    pdinfer.load(path)  # imports and caches warm
    gc.collect()
    tracemalloc.start()
    try:
        model = pdinfer.load(path)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert model.output_shape == (256,) and path.stat().st_size > 500_000
    assert resident <= kept <= resident + 65536, (resident, kept)


def test_info_flags_a_version_1_file(capsys):
    assert main(["info", str(ROOT / "tests" / "data" / "tiny_v1.pdw")]) == 0
    out = capsys.readouterr().out
    assert "format version 1)" in out and "data section only (version 1)" in out and "whole file" not in out


def test_warmup_shows_a_bar_on_a_terminal(monkeypatch, capsys, bar_at_once):
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["warmup"]) == 0
    assert "kernels compiled or loaded from the cache in" in capsys.readouterr().out
    # only the compile notice stays on screen, when this process compiled (tests/test_warmup.py pins it)
    assert " 6/6 " in term.getvalue() and term.screen() in ([""], [COMPILING, ""])


# ----------------------------------------------------------------------------- golden

@pytest.fixture
def fake_write_golden(monkeypatch, tmp_path):
    """Records write_golden's arguments; reports progress on 3 inputs if asked to."""
    calls = []

    def write_golden(weights, out_dir, **options):
        calls.append((weights, out_dir, options))
        for done in range(1, 4):
            if "progress" in options:
                options["progress"](done, 3)
        path = Path(out_dir) / "x.golden.pdw"
        path.write_bytes(b"bundle")
        return path

    monkeypatch.setattr(golden_module, "write_golden", write_golden)
    return calls


def test_golden_passes_only_what_was_asked_for(tmp_path, capsys, fake_write_golden):
    assert main(["golden", LIGHT, "--out", str(tmp_path)]) == 0
    assert fake_write_golden == [(LIGHT, tmp_path, {"count": 2, "seed": 0})]
    assert "reference outputs only" in capsys.readouterr().out


def test_golden_layers_and_progress(tmp_path, monkeypatch, capsys, fake_write_golden, bar_at_once):
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["golden", LIGHT, "--out", str(tmp_path), "--count", "5", "--seed", "7",
                 "--layers", "classifier.1, classifier.3"]) == 0
    [(_, _, options)] = fake_write_golden
    assert options.pop("layers") == ["classifier.1", "classifier.3"]
    assert isinstance(options.pop("progress"), progress_module.Progress)
    assert options == {"count": 5, "seed": 7}
    assert "golden [" in term.getvalue() and " 3/3 " in term.getvalue() and term.screen() == [""]


@pytest.mark.parametrize("args, message", [
    (["--layers", "a,,b"], "--layers 'a,,b': empty layer name"),
    (["--count", "-1"], None),
])
def test_golden_usage_errors(tmp_path, capsys, fake_write_golden, args, message):
    if message is None:
        with pytest.raises(SystemExit) as exit_info:
            main(["golden", LIGHT, "--out", str(tmp_path), *args])
        assert exit_info.value.code == 2 and "must be >= 0" in capsys.readouterr().err
    else:
        assert main(["golden", LIGHT, "--out", str(tmp_path), *args]) == 2
        assert f"error: {message}" in capsys.readouterr().err
    assert fake_write_golden == []


def test_golden_out_must_not_be_a_file(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    assert main(["golden", LIGHT, "--out", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --out {tmp_path / 'taken'}: exists and is not a directory\n"
    assert (tmp_path / "taken").read_text() == "a file"


def test_golden_says_what_it_wrote_and_keeps_an_existing_bundle(tmp_path, capsys):
    weights = write_small_model(tmp_path / "small.pdw")
    out = tmp_path / "out"
    assert main(["golden", str(weights), "--out", str(out), "--count", "3"]) == 0
    bundle = out / "small.golden.pdw"
    assert capsys.readouterr().out.startswith(
        f"wrote {bundle}: {bundle.stat().st_size:,} bytes, 7 inputs (3 random, 4 edge cases: zeros, ones, large, "
        "negative); reference outputs only")
    written = bundle.read_bytes()
    assert main(["golden", str(weights), "--out", str(out), "--count", "1"]) == 2
    assert capsys.readouterr().err == f"error: {bundle} exists (give --force to overwrite it)\n"
    assert bundle.read_bytes() == written
    assert main(["golden", str(weights), "--out", str(out), "--count", "1", "--force"]) == 0
    assert len(golden_module.read_golden(bundle)) == 5
    with pytest.raises(SystemExit):
        main(["golden", "--help"])
    assert "4 edge-case inputs (zeros, ones, large, negative) are always added" in " ".join(capsys.readouterr().out.split())


def test_info_reads_a_golden_bundle(tmp_path, capsys):
    weights = write_small_model(tmp_path / "small.pdw")
    bundle = golden_module.write_golden(weights, tmp_path, count=1, layers=["conv0", "softmax"])
    assert main(["info", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert f"golden bundle: {bundle} ({bundle.stat().st_size:,} bytes, whole file verified)" in out
    assert f"weights:       small.pdw (SHA-256 {golden_module.file_sha256(weights)})" in out
    assert "inputs:        5: uniform, zeros, ones, large, negative (seed 0)" in out
    assert "layers:        2 (a subset): conv0, softmax" in out and "outputs:       reference only" in out


# ----------------------------------------------------------------------------- compress

def test_compress_writes_what_the_shipped_int8_file_is(tmp_path, capsys):
    out = tmp_path / "light.int8.pdw"
    assert main(["compress", LIGHT, "--weights", "int8", "--activations", "int8", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out} (int8 weights, int8 activations, {out.stat().st_size:,} bytes)\n"
    assert out.read_bytes() == (ROOT / "weights" / "pd_light.int8.pdw").read_bytes()
    assert main(["compress", LIGHT, "--weights", "f16", "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"error: {out} exists (give --force to overwrite it)\n"
    assert main(["compress", LIGHT, "--weights", "f16", "--out", str(out), "--force"]) == 0
    assert out.read_bytes() == (ROOT / "weights" / "pd_light.f16.pdw").read_bytes()
    assert main(["compress", str(out), "--weights", "int8", "--out", str(tmp_path / "again.pdw")]) == 2
    assert "already compressed" in capsys.readouterr().err and not (tmp_path / "again.pdw").exists()


def test_golden_writes_a_reference_bundle_without_torch_or_the_exporter(tmp_path):
    weights = write_small_model(tmp_path / "small.pdw")
    script = ("import sys; sys.modules['torch'] = None; sys.modules['exporter'] = None\n"
              "from pdinfer.cli import main\n"
              f"code = main(['golden', {str(weights)!r}, '--out', {str(tmp_path / 'out')!r}, '--count', '1'])\n"
              "assert not any(m.split('.')[0] in ('torch', 'exporter') for m in sys.modules if sys.modules[m])\n"
              "sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert "reference outputs only" in result.stdout
    bundle = golden_module.read_golden(tmp_path / "out" / "small.golden.pdw")
    assert not bundle.has_torch and len(bundle) == 1 + len(golden_module.EDGE_KINDS)
