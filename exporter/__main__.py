"""`python -m exporter {pd_light,pd_light_se,pd_model} OUT.pdw`: export a seed model to a weight file."""

from __future__ import annotations

import argparse
import pickle
import sys

import torch

from .convert import export
from .models import INPUT_SHAPE, PDLightModel, PDLightSEModel, PDModel, randomize_batchnorm
from .synthetic import CLASSES

SEED_MODELS = {"pd_light": PDLightModel, "pd_model": PDModel, "pd_light_se": PDLightSEModel}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m exporter", description=__doc__)
    parser.add_argument("model", choices=sorted(SEED_MODELS))
    parser.add_argument("out", metavar="OUT.pdw")
    parser.add_argument("--classes", help=f"comma-separated class names (default: {','.join(CLASSES)})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random init (default 0)")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--state-dict", metavar="FILE.pt", help="load these weights instead")
    weights.add_argument("--random-bn", action="store_true",
                         help="randomise batch-norm statistics and affine values (seeded)")
    args = parser.parse_args(argv)

    classes = args.classes.split(",") if args.classes else list(CLASSES)
    torch.manual_seed(args.seed)
    model = SEED_MODELS[args.model](classes)
    if args.state_dict:
        try:
            model.load_state_dict(torch.load(args.state_dict, map_location="cpu", weights_only=True))
        except (OSError, RuntimeError, pickle.UnpicklingError) as e:
            print(f"error: cannot load {args.state_dict}: {e}", file=sys.stderr)
            return 1
    if args.random_bn:
        randomize_batchnorm(model, args.seed)
    export(model, args.out, input_shape=INPUT_SHAPE, classes=classes)
    print(f"wrote {args.out} ({args.model}, {len(classes)} classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
