"""The synthetic PRPD generator (exporter/synthetic.py): NumPy only, seeded, deterministic."""
from pathlib import Path

import numpy as np
import pytest

from exporter import synthetic
from exporter.synthetic import CLASSES, generate, generate_one


def test_classes():
    assert CLASSES == ("corona", "floating", "particle", "void", "surface", "noise")


def test_shapes_dtypes_range():
    x, y = generate(3, seed=5)
    assert x.shape == (18, 1, 60, 120) and x.dtype == np.float32
    assert y.shape == (18,) and y.dtype == np.int64
    assert y.tolist() == [c for c in range(6) for _ in range(3)]  # class-major
    assert np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0
    assert (x.reshape(18, -1).max(1) > 0.5).all()  # every pattern has a visible cluster


def test_deterministic():
    a, ya = generate(4, seed=123)
    b, yb = generate(4, seed=123)
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    c, _ = generate(4, seed=124)
    assert not np.array_equal(a, c)


def test_prefix_stable():
    small, _ = generate(2, seed=9)
    big, _ = generate(5, seed=9)
    for k in range(6):
        assert np.array_equal(small[2 * k:2 * k + 2], big[5 * k:5 * k + 2])
    assert np.array_equal(generate_one(3, 4, 9), big[5 * 3 + 4])


def test_empty():
    x, y = generate(0, seed=1)
    assert x.shape == (0, 1, 60, 120) and y.shape == (0,)
    with pytest.raises(ValueError):
        generate(-1, seed=1)


def test_class_means_distinct():
    x, y = generate(20, seed=7)
    means = np.stack([x[y == c].mean(0).ravel() for c in range(6)])
    d = np.sqrt(((means[:, None] - means[None]) ** 2).sum(-1))
    off = d[~np.eye(6, dtype=bool)]
    assert off.min() > 1.0, d


def _mass(img):
    return img[0] - np.median(img[0])  # drop the background level


def test_signatures():
    """Coarse physics checks on class means: where the pulses sit in phase and amplitude."""
    x, y = generate(20, seed=3)
    cols = np.arange(120) * 3 + 1.5  # bin centre, degrees
    rows_amp = 1 - (np.arange(60) + 0.5) / 60  # row 0 = highest amplitude
    m = {CLASSES[c]: np.clip(np.mean([_mass(i) for i in x[y == c]], 0), 0, None) for c in range(6)}

    def phase_share(img, lo, hi):
        p = img.sum(0)
        return p[(cols >= lo) & (cols < hi)].sum() / p.sum()

    def mean_amp(img):
        a = img.sum(1)
        return (a * rows_amp).sum() / a.sum()

    assert phase_share(m["corona"], 180, 360) > 0.8                 # negative half-cycle
    assert mean_amp(m["floating"]) > mean_amp(m["corona"])           # high, constant
    assert 0.35 < phase_share(m["floating"], 0, 180) < 0.65          # both half-cycles
    assert 0.4 < phase_share(m["void"], 0, 180) < 0.6                # symmetric
    assert 0.35 < phase_share(m["particle"], 0, 180) < 0.65          # phase independent
    assert mean_amp(m["noise"]) < mean_amp(m["particle"])            # low level


def test_numpy_only():
    import subprocess
    import sys
    code = ("import sys, exporter.synthetic as s; s.generate(1, 0); "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    root = Path(synthetic.__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_shipped_samples_png_matches_npy():
    """weights/samples/<class>_<n>.png decodes (png / 255) to exactly <class>_<n>.npy."""
    Image = pytest.importorskip("PIL.Image")
    folder = Path(__file__).resolve().parents[1] / "weights" / "samples"
    pngs = sorted(folder.glob("*.png"))
    if not pngs:
        pytest.skip("no shipped samples")
    assert {p.stem.rsplit("_", 1)[0] for p in pngs} == set(CLASSES)
    for png in pngs:
        with Image.open(png) as im:
            assert im.mode == "L" and im.size == (120, 60)
            x = np.asarray(im, dtype=np.float32) / np.float32(255)
        npy = np.load(png.with_suffix(".npy"))
        assert npy.dtype == np.float32 and npy.shape == (1, 60, 120)
        assert np.array_equal(npy[0], x), png.name
