"""`python -m exporter {pd_light,pd_light_se,pd_model} OUT.pdw`: export a seed model to a weight file.

It needs PyTorch (pip install 'pdinfer[torch]'); installed, it is `python -m pdinfer.exporter`.
An existing OUT.pdw is kept unless --force is given. Exit status 0 on success, 1 on any error
(printed on stderr), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import pickle
import sys

from pdinfer.format import check_overwrite

from .synthetic import CLASSES

SEED_MODELS = {"pd_light": "PDLightModel", "pd_model": "PDModel",
               "pd_light_se": "PDLightSEModel"}  # command name -> exporter.models class


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted(SEED_MODELS))
    parser.add_argument("out", metavar="OUT.pdw")
    parser.add_argument("--classes", help=f"comma-separated class names (default: {','.join(CLASSES)})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random init (default 0)")
    parser.add_argument("--force", action="store_true", help="overwrite OUT.pdw if it exists")
    parser.add_argument("--weights", choices=("f32", "f16", "bf16", "int8"), default="f32",
                        help="storage of the Conv2d and Linear weights (default f32); a compressed "
                             "file has its BatchNorm folded into the convolutions")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--state-dict", metavar="FILE.pt", help="load these weights instead")
    weights.add_argument("--random-bn", action="store_true",
                         help="randomise batch-norm statistics and affine values (seeded)")
    args = parser.parse_args(argv)

    try:
        check_overwrite(args.out, args.force)  # before torch is imported: export() checks it again
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        from .convert import export  # first: its ImportError says how to install torch
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    import torch

    from . import models

    classes = args.classes.split(",") if args.classes else list(CLASSES)
    torch.manual_seed(args.seed)
    model = getattr(models, SEED_MODELS[args.model])(classes).eval()
    if args.state_dict:
        try:
            model.load_state_dict(torch.load(args.state_dict, map_location="cpu", weights_only=True))
        except (OSError, RuntimeError, pickle.UnpicklingError) as e:
            print(f"error: cannot load {args.state_dict}: {e}", file=sys.stderr)
            return 1
    if args.random_bn:
        models.randomize_batchnorm(model, args.seed)
    try:
        export(model, args.out, input_shape=models.INPUT_SHAPE, classes=classes, weights=args.weights,
               force=args.force)
    except (ValueError, OSError) as e:  # UnsupportedModelError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({args.model}, {len(classes)} classes, {args.weights} weights)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
