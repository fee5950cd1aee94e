"""Occlusion maps: pdinfer.occlusion_map, its picture (pdinfer.explain.map_image) and `pdinfer explain`."""

import sys
from pathlib import Path

import numpy as np
import pytest

import pdinfer
from exporter.synthetic import CLASSES, generate_one, histogram, pulses
from pdinfer import explain
from pdinfer.cli import main
from small_model import sample_images, write_small_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "weights" / "samples"
LIGHT = str(ROOT / "weights" / "pd_light.pdw")


@pytest.fixture(scope="module")
def light():
    return pdinfer.load(LIGHT)


@pytest.fixture
def small(tmp_path):
    return pdinfer.load(write_small_model(tmp_path / "small.pdw"))


def test_the_map_weighs_the_rendered_discharges_not_the_empty_background(light):
    ratios = {}
    for cls, name in enumerate(CLASSES):
        for index in range(2):
            image = generate_one(cls, index, seed=2022)
            pulsed = histogram(*pulses(cls, index, seed=2022)[:2]) > 0  # pixels holding pulses
            weight = np.abs(pdinfer.occlusion_map(light, image))
            ratios[name, index] = weight[pulsed].mean() / weight[~pulsed].mean()
    # Particle pulses lie at every phase (docs/SYNTHETIC.md), so its empty background is small and scattered.
    assert all(ratio > (1.5 if name == "particle" else 3) for (name, _), ratio in ratios.items()), ratios
    assert np.median(list(ratios.values())) > 5, ratios


def test_the_map_is_the_mean_drop_over_the_patches_covering_each_pixel(small):
    x = sample_images(1)[0]  # (1, 10, 12)
    top = int(np.argmax(small(x)))
    # patch 3x4 at steps of 2x3 from the top left, plus one flush with the bottom and right edges
    corners = [(r, c) for r in (0, 2, 4, 6, 7) for c in (0, 3, 6, 8)]
    drops = {}
    for r, c in corners:  # one image per forward pass
        occluded = x.copy()
        occluded[:, r:r + 3, c:c + 4] = 0.25
        drops[r, c] = float(small(x)[top]) - float(small(occluded)[top])
    expected = np.zeros((10, 12), np.float32)
    for i in range(10):
        for j in range(12):
            covering = [d for (r, c), d in drops.items() if r <= i < r + 3 and c <= j < c + 4]
            expected[i, j] = np.mean(covering)
    got = pdinfer.occlusion_map(small, x, patch=(3, 4), stride=(2, 3), baseline=0.25, batch_size=3)
    assert got.dtype == np.float32 and got.shape == (10, 12)
    assert np.array_equal(got, expected)
    assert np.abs(got).max() > 1e-4 and len(np.unique(got)) > 10  # not trivially flat
    by_name = pdinfer.occlusion_map(small, x[0], patch=(3, 4), stride=(2, 3), baseline=0.25,
                                    target=small.classes[top])  # an (H, W) image; the class by name
    assert np.array_equal(by_name, got)
    other = pdinfer.occlusion_map(small, x, patch=(3, 4), stride=(2, 3), baseline=0.25, target=(top + 1) % 3)
    assert not np.array_equal(other, got)


def test_defaults_and_progress(small):
    x = sample_images(1, seed=4)
    calls = []
    square = pdinfer.occlusion_map(small, x, patch=4, batch_size=8, progress=lambda d, t: calls.append((d, t)))
    # patch 4x4, stride 2x2: rows 0, 2, 4, 6; columns 0, 2, ..., 8: 20 patches in batches of 8
    assert calls == [(8, 20), (16, 20), (20, 20)]
    assert np.array_equal(square, pdinfer.occlusion_map(small, x, patch=(4, 4), stride=2))


@pytest.mark.parametrize("options, error, message", [
    (dict(patch=(11, 3)), pdinfer.ConfigError, "larger than the image"),
    (dict(patch=0), pdinfer.ConfigError, "patch must be an integer >= 1"),
    (dict(stride=(1, 2, 3)), pdinfer.ConfigError, "stride must be"),
    (dict(baseline=float("nan")), pdinfer.ConfigError, "baseline must be a finite number"),
    (dict(target="nothing"), pdinfer.ConfigError, "'nothing' is not one of the model's classes"),
    (dict(target=3), pdinfer.ConfigError, r"class index must be an integer in \[0, 3\)"),
    (dict(batch_size=0), pdinfer.ConfigError, "batch_size must be"),
])
def test_bad_settings_are_refused(small, options, error, message):
    with pytest.raises(error, match=message):
        pdinfer.occlusion_map(small, sample_images(1)[0], **options)


def test_bad_images_are_refused(small):
    with pytest.raises(pdinfer.InputError, match="one image, got a batch of 2"):
        pdinfer.occlusion_map(small, sample_images(2))
    with pytest.raises(pdinfer.InputError, match="input shape"):
        pdinfer.occlusion_map(small, np.zeros((1, 10, 10), np.float32))


def test_explain_writes_the_map_over_the_image(light, tmp_path, capsys):
    out = tmp_path / "map.png"
    image = SAMPLES / "void_1.png"
    assert main(["explain", LIGHT, str(image), "--out", str(out), "--patch", "6,8", "--stride", "3"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: void probability 0.99")
    from PIL import Image
    with Image.open(out) as png:
        assert png.format == "PNG" and png.mode == "RGB"
        assert png.size == (explain.LEFT + 120 * explain.SCALE + explain.RIGHT,
                            explain.TOP + 60 * explain.SCALE + explain.BOTTOM)
        pixels = np.asarray(png, dtype=int)
    occlusion = pdinfer.occlusion_map(light, pdinfer.read_image(image), patch=(6, 8), stride=3)
    # The plot is the map over the image: red at the map's maximum, the image's gray where |map| is small.
    (r, c) = np.unravel_index(int(np.argmax(occlusion)), occlusion.shape)
    red, green, blue = pixels[explain.TOP + r * explain.SCALE + 1, explain.LEFT + c * explain.SCALE + 1]
    assert red > green + 100 and red > blue + 100
    (r, c) = np.unravel_index(int(np.argmin(np.abs(occlusion))), occlusion.shape)
    red, green, blue = pixels[explain.TOP + r * explain.SCALE + 1, explain.LEFT + c * explain.SCALE + 1]
    assert max(red, green, blue) - min(red, green, blue) <= 2


def test_explain_errors_are_named_and_write_nothing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "map.png"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    batch = tmp_path / "batch.npy"
    np.save(batch, np.zeros((2, 1, 60, 120), np.float32))
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((1, 30, 120), np.float32))
    cases = [([str(broken)], f"{broken}: cannot read image"),
             ([str(batch)], "one image, got a batch of 2"),
             ([str(wrong)], "input shape must be (1, 60, 120)"),
             ([str(SAMPLES / "void_1.npy"), "--class", "arcing"], "'arcing' is not one of the model's classes")]
    for args, message in cases:
        assert main(["explain", LIGHT, *args, "--out", str(out)]) == 2
        assert message in capsys.readouterr().err and not out.exists()
    assert main(["explain", LIGHT, str(SAMPLES / "void_1.npy"), "--out", str(tmp_path / "no" / "map.png")]) == 2
    assert "No such file or directory" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "PIL", None)  # Pillow is not installed
    assert main(["explain", LIGHT, str(SAMPLES / "void_1.npy"), "--out", str(out)]) == 2
    assert "drawing an occlusion map needs Pillow: pip install 'pdinfer[image]'" in capsys.readouterr().err
    assert not out.exists()
