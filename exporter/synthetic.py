"""Seeded, deterministic synthetic phase-resolved partial-discharge (PRPD) patterns.

NumPy only (no torch).  See ``docs/SYNTHETIC.md`` for the physics behind each class, the
sources and the randomisation ranges.

Image convention (shape ``(1, 60, 120)``, float32, values in ``[0, 1]``):

* columns = phase bins over one AC cycle: column ``j`` covers ``[3*j, 3*j + 3)`` degrees,
  phase 0 deg = positive-going zero crossing of the test voltage, 90 deg = positive peak,
  180 deg = negative-going zero crossing, 270 deg = negative peak;
* rows = amplitude bins: row 0 (top) = highest amplitude, row 59 (bottom) = lowest.  Row
  ``i`` holds pulses whose normalised apparent charge ``a`` (0..1 of the sensor's full
  scale) satisfies ``floor((1 - a) * 60) == i``;
* value = pulse count in the bin, log-compressed and normalised so that the busiest bin of
  the pattern is at the image's brightness (0.75..1.0), plus a low background level.

Generation is per sample: sample ``i`` of class ``c`` with seed ``s`` depends only on
``(s, c, i)``, so ``generate(n, s)`` is a prefix (per class) of ``generate(m, s)`` for m > n.
"""
from __future__ import annotations

import numpy as np

CLASSES = ("corona", "floating", "particle", "void", "surface", "noise")
H, W = 60, 120  # amplitude bins (rows), phase bins (columns)

__all__ = ["CLASSES", "H", "W", "generate", "generate_one", "histogram", "pulses", "render", "save_figure"]


# --------------------------------------------------------------------------- rendering

def histogram(phase_deg: np.ndarray, amp: np.ndarray) -> np.ndarray:
    """Pulse counts (phase in degrees, amplitude in [0,1]) per (60,120) bin, float64."""
    phase = np.mod(phase_deg, 360.0)
    col = np.minimum((phase / 360.0 * W).astype(np.int64), W - 1)
    a = np.clip(amp, 0.0, 0.9999)
    row = np.minimum(((1.0 - a) * H).astype(np.int64), H - 1)
    return np.bincount(row * W + col, minlength=H * W).reshape(H, W).astype(np.float64)


def render(phase_deg: np.ndarray, amp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Histogram pulses (phase in degrees, amplitude in [0,1]) into a (60,120) image in [0,1]."""
    counts = histogram(phase_deg, amp)
    img = np.zeros((H, W))
    if counts.max() > 0:
        img = np.log1p(counts) / np.log1p(counts.max())
    img *= rng.uniform(0.75, 1.0)                        # display brightness
    bg = rng.uniform(0.0, 0.08)                          # background level (sensor floor)
    img = img + bg * rng.random((H, W))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- class models

def _half_cycle_cluster(rng, n, start, end, peak_at, a_max, shape_pow):
    """Pulses in one half-cycle window [start, end] (degrees, relative to that half's zero
    crossing).  The amplitude envelope rises to ``a_max`` at ``peak_at`` (fraction of the
    window) and falls after it; amplitudes below the envelope follow u**shape_pow (many
    small pulses, few at the envelope: the filled "rabbit ear" / "turtle" look)."""
    t = rng.beta(1.6, 1.6, n)                            # position inside the window
    phase = start + t * (end - start)
    env = np.where(t < peak_at, t / peak_at, (1.0 - t) / (1.0 - peak_at))
    env = 0.15 + 0.85 * np.sqrt(np.clip(env, 0.0, 1.0))
    amp = a_max * env * rng.random(n) ** shape_pow
    return phase, amp


def _corona(rng):
    # Negative point-to-plane corona (Trichel pulses) around the negative peak (270 deg),
    # almost constant amplitude; at higher stress some positive corona near 90 deg.
    n = int(rng.integers(300, 1500))
    centre = 270.0 + rng.normal(0.0, 12.0)
    spread = rng.uniform(10.0, 35.0)
    a0 = rng.uniform(0.22, 0.5)
    phase = centre + rng.normal(0.0, spread, n)
    amp = a0 + rng.normal(0.0, rng.uniform(0.015, 0.05), n)
    if rng.random() < 0.35:                              # sparse positive streamers
        m = int(n * rng.uniform(0.03, 0.12))
        phase = np.concatenate([phase, 90.0 + rng.normal(0.0, spread * 0.7, m)])
        amp = np.concatenate([amp, rng.uniform(a0, min(1.0, a0 * 2.0), m)])
    return phase, amp


def _floating(rng):
    # Floating electrode: a capacitively charged metal part sparks over once its potential
    # reaches a fixed breakdown voltage -> high, near-constant amplitude, very regular,
    # dense clusters on the rising slopes of both half-cycles (symmetric).
    n = int(rng.integers(400, 1500))
    c = rng.uniform(15.0, 80.0)
    spread = rng.uniform(8.0, 22.0)
    levels = rng.uniform(0.55, 0.95, int(rng.integers(1, 3)))  # 1 or 2 discharge levels
    sigma_a = rng.uniform(0.01, 0.035)
    ratio = rng.uniform(0.8, 1.0)
    phases, amps = [], []
    for half, k in ((0.0, n), (180.0, int(n * rng.uniform(0.8, 1.0)))):
        ph = half + c + rng.normal(0.0, spread, k)
        lv = rng.choice(levels, k)
        a = lv * (ratio if half else 1.0) + rng.normal(0.0, sigma_a, k)
        phases.append(ph)
        amps.append(a)
    return np.concatenate(phases), np.concatenate(amps)


def _particle(rng):
    # Free conducting particle: bounces / lifts off on the enclosure, discharges whenever it
    # moves -> pulses at any phase, random (heavy-tailed) amplitudes, little phase structure;
    # mild bunching around the voltage peaks, where the lifting force is largest.
    n = int(rng.integers(150, 900))
    peak_frac = rng.uniform(0.0, 0.35)
    k = int(n * peak_frac)
    phase = np.concatenate([
        rng.uniform(0.0, 360.0, n - k),
        rng.choice([90.0, 270.0], k) + rng.normal(0.0, rng.uniform(20.0, 45.0), k),
    ])
    scale = rng.uniform(0.08, 0.35)
    amp = rng.exponential(scale, n) + rng.uniform(0.02, 0.08)
    return phase, amp


def _void(rng):
    # Cavity (void) in solid insulation: discharges when the field across the cavity exceeds
    # its inception level, i.e. while |dV/dt| builds it up: the rising quarters 0-90 and
    # 180-270 deg (starting a bit before the zero crossing because of residual space
    # charge).  Symmetric polarities -> two similar "rabbit ear"/"turtle" clusters.
    n = int(rng.integers(300, 1500))
    start = rng.uniform(-30.0, 15.0)
    end = rng.uniform(75.0, 115.0)
    peak_at = rng.uniform(0.15, 0.55)                    # 'rabbit ear' early, 'turtle' middle
    a_max = rng.uniform(0.45, 0.95)
    pw = rng.uniform(0.6, 1.6)
    r1, r2 = 1.0, rng.uniform(0.7, 1.0)
    if rng.random() < 0.5:                               # either polarity may be the larger
        r1, r2 = r2, r1
    p1, a1 = _half_cycle_cluster(rng, n, start, end, peak_at, a_max * r1, pw)
    m = int(n * rng.uniform(0.8, 1.0))
    p2, a2 = _half_cycle_cluster(rng, m, 180.0 + start, 180.0 + end, peak_at, a_max * r2, pw)
    return np.concatenate([p1, p2]), np.concatenate([a1, a2])


def _surface(rng):
    # Surface discharge along an insulator / spacer: on the rising quarters too, but
    # markedly asymmetric (the electrode geometry differs for the two polarities) and
    # spread wider in phase, often reaching into the falling quarter.
    n = int(rng.integers(300, 1500))
    start = rng.uniform(-20.0, 20.0)
    end = rng.uniform(100.0, 150.0)
    peak_at = rng.uniform(0.25, 0.6)
    a_big = rng.uniform(0.6, 1.0)
    ratio_a = rng.uniform(0.3, 0.65)
    ratio_n = rng.uniform(0.3, 0.7)
    pw = rng.uniform(0.6, 1.6)
    big_first = rng.random() < 0.5
    pb, ab = _half_cycle_cluster(rng, n, start, end, peak_at, a_big, pw)
    m = int(n * ratio_n)
    ps, as_ = _half_cycle_cluster(rng, m, start, end, peak_at, a_big * ratio_a, pw)
    if big_first:
        ps = ps + 180.0
    else:
        pb = pb + 180.0
    return np.concatenate([pb, ps]), np.concatenate([ab, as_])


def _noise(rng):
    # No PD: uniform low-level background pulses (amplifier / ambient noise) with no phase
    # relation, plus a few sparse random spikes of any amplitude.
    n = int(rng.integers(300, 2000))
    level = rng.uniform(0.05, 0.3)
    phase = rng.uniform(0.0, 360.0, n)
    amp = rng.random(n) * level
    k = int(rng.integers(0, 40))
    phase = np.concatenate([phase, rng.uniform(0.0, 360.0, k)])
    amp = np.concatenate([amp, rng.uniform(level, 1.0, k)])
    return phase, amp


_MAKERS = (_corona, _floating, _particle, _void, _surface, _noise)


def generate_one(cls: int, index: int, seed: int) -> np.ndarray:
    """One (1, 60, 120) float32 image of class ``cls``; a pure function of its arguments."""
    phase, amp, rng = pulses(cls, index, seed)
    return render(phase, amp, rng)[None]


def pulses(cls: int, index: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """The pulses (phase, amplitude) of ``generate_one(cls, index, seed)`` and the generator that
    renders them: ``histogram(phase, amp) > 0`` is where the image holds pulses, not background."""
    rng = np.random.default_rng([int(seed), int(cls), int(index), 0x5044])
    phase, amp = _MAKERS[cls](rng)
    # effects common to every class: sensor gain, synchronisation phase offset, and a few
    # stray low-level noise pulses
    amp = amp * rng.uniform(0.6, 1.0)
    phase = phase + rng.uniform(-35.0, 35.0)
    k = int(rng.integers(0, 60))
    phase = np.concatenate([phase, rng.uniform(0.0, 360.0, k)])
    amp = np.concatenate([amp, rng.random(k) * 0.2])
    keep = amp > 0.0
    return phase[keep], amp[keep], rng


def generate(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` images of each class, class-major order.

    Returns ``(images float32 (N,1,60,120) in [0,1], labels int64 (N,))`` with
    ``N = 6 * n_per_class`` and ``labels[k] = k // n_per_class`` (indices into CLASSES).
    """
    if n_per_class < 0:
        raise ValueError("n_per_class must be >= 0")
    n_cls = len(CLASSES)
    x = np.empty((n_cls * n_per_class, 1, H, W), dtype=np.float32)
    for c in range(n_cls):
        for i in range(n_per_class):
            x[c * n_per_class + i] = generate_one(c, i, seed)
    y = np.repeat(np.arange(n_cls, dtype=np.int64), n_per_class)
    return x, y


def save_figure(path: str = "docs/synthetic_classes.png", seed: int = 0, scale: int = 2) -> None:
    """Write one sample per class (``generate(1, seed)``) with phase ticks to a PNG (needs Pillow).

    ``python -m exporter.synthetic [path]`` makes docs/synthetic_classes.png."""
    from PIL import Image, ImageDraw

    x, _ = generate(1, seed)
    w, h, pad, lab, foot = W * scale, H * scale, 8, 16, 14
    canvas = Image.new("L", (3 * w + 4 * pad, 2 * (h + lab + foot) + 3 * pad), 255)
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(CLASSES):
        r, k = divmod(c, 3)
        x0, y0 = pad + k * (w + pad), pad + r * (h + lab + foot + pad)
        img = Image.fromarray(np.round(x[c, 0] * 255).astype(np.uint8)).resize((w, h), Image.NEAREST)
        draw.text((x0, y0 + 2), f"{c}: {name}", fill=0)
        canvas.paste(img, (x0, y0 + lab))
        draw.rectangle([x0 - 1, y0 + lab - 1, x0 + w, y0 + lab + h], outline=0)
        for deg in (0, 90, 180, 270, 360):
            px = x0 + min(int(deg / 360 * w), w - 1)
            draw.line([px, y0 + lab + h, px, y0 + lab + h + 3], fill=0)
            t = str(deg)
            draw.text((min(max(px - 3 * len(t), x0), x0 + w - 6 * len(t)), y0 + lab + h + 3), t, fill=0)
    canvas.save(path, optimize=True)


if __name__ == "__main__":
    import sys

    save_figure(*sys.argv[1:2])
