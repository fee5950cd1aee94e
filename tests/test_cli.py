"""The `pdinfer` command on the shipped weights and samples."""

import json
from pathlib import Path

import pytest

from pdinfer.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "weights" / "samples"
WEIGHTS = ["pd_light.pdw", "pd_model.pdw"]


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
    assert main(["run", str(ROOT / "weights" / "pd_light.pdw"), str(bad), str(good)]) == 1
    out, err = capsys.readouterr()
    assert str(bad) in err and "cannot read image" in err
    assert out.splitlines()[0].split()[:3] == ["input", "class", "prob"]
    assert out.splitlines()[1].split()[:2] == [str(good), "void"]


def test_info_lists_layers_shapes_and_macs(capsys):
    assert main(["info", str(ROOT / "weights" / "pd_model.pdw")]) == 0
    out = capsys.readouterr().out
    assert "conv.0" in out and "32x60x120" in out and "MACs per image: 99,7" in out
    assert "corona, floating, particle, void, surface, noise" in out


def test_corrupt_weights_exit_2_with_message(tmp_path, capsys):
    broken = tmp_path / "broken.pdw"
    broken.write_bytes((ROOT / "weights" / "pd_light.pdw").read_bytes()[:1000])
    assert main(["run", str(broken), str(SAMPLES)]) == 2
    assert "broken.pdw" in capsys.readouterr().err
