"""Every torchvision classification model through the exporter and pdinfer, against torch.

Not part of the test suite: torchvision does not import beside the dev extra's torch 2.13.0. Run it
from the repository root in a separate environment that has both (on x86_64,
`pip install torch==2.14.1 torchvision==0.29.1 numba numpy`):

    python tests/torchvision_zoo.py [--max-params 40e6] [--trace] [NAME ...]

Each model is built with random weights and random BatchNorm statistics, in eval mode, exported
for a small input (3 x 64 x 64; 96 x 96 for AlexNet and Inception v3), loaded and run on two
images: fast path (and with --trace the reference trace) against torch, relative to
max(1, max|torch|). A model the exporter refuses is listed with its first reason.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import exporter  # noqa: E402
import pdinfer  # noqa: E402
from exporter.models import randomize_batchnorm  # noqa: E402

TOLERANCE = 1e-4


def check(name: str, max_params: float, trace: bool, out_dir: Path) -> str:
    options = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    module = torchvision.models.get_model(name, weights=None, num_classes=7, **options).eval()
    params = sum(p.numel() for p in module.parameters())
    if params > max_params:
        return f"skipped ({params / 1e6:.0f}M parameters)"
    randomize_batchnorm(module, 0)
    size = 96 if name.startswith(("inception", "alexnet")) else 64
    shape = (3, size, size)
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    try:
        exporter.export(module, out_dir / f"{name}.pdw", input_shape=shape)
    except exporter.UnsupportedModelError as e:
        return f"refused: {e.offenders[0][:160]}"
    model = pdinfer.load(out_dir / f"{name}.pdw")
    scale = max(1.0, float(np.abs(expected).max()))
    errors = {"fast": float(np.abs(model(x) - expected).max()) / scale}
    if trace:
        errors["trace"] = float(np.abs(next(reversed(model.trace(x).values())) - expected).max()) / scale
    verdict = "OK" if max(errors.values()) <= TOLERANCE else "MISMATCH"
    return f"{verdict} ({', '.join(f'{k} {v:.1e}' for k, v in errors.items())}; {len(model.layer_names)} layers)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="torchvision model names (default: every classification model)")
    parser.add_argument("--max-params", type=float, default=40e6, help="skip larger models (default 40e6)")
    parser.add_argument("--trace", action="store_true", help="also compare the reference trace (slow)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    mismatches = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names or torchvision.models.list_models(module=torchvision.models):
            start = time.perf_counter()
            result = check(name, args.max_params, args.trace, Path(tmp))
            mismatches += result.startswith("MISMATCH")
            print(f"{name:22s} {result}  [{time.perf_counter() - start:.0f} s]", flush=True)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
