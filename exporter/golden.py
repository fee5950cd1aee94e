"""The torch side of golden bundles: rebuild a seed model from a .pdw and record every layer's output.

    python -m exporter.golden WEIGHTS.pdw [...] --out DIR [--count K] [--seed S] [--layers A,B,...]

writes DIR/<stem>.golden.pdw with pdinfer's reference outputs and PyTorch's (docs/GOLDEN.md);
`pdinfer golden` writes the reference outputs only (the engine never imports torch).
A weight file alone does not say which torch code produced it, so only the seed models
(exporter.models) can be rebuilt: the file's tensors are loaded into each seed model's
state_dict by name (`<layer name>.<role>` is the module path and parameter name), and the
rebuilt model is accepted only if exporting it again gives the file's layers and tensors exactly.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Mapping

import numpy as np
import torch
from torch import fx, nn

from pdinfer.errors import PdinferError
from pdinfer.format import parse_json, read_weights
from pdinfer.golden import TorchTracer, write_golden

from .convert import UnsupportedModelError, to_layers
from .models import PDLightModel, PDLightSEModel, PDModel

SEED_MODELS: dict[str, type[nn.Module]] = {"pd_light": PDLightModel, "pd_model": PDModel,
                                            "pd_light_se": PDLightSEModel}


class NotASeedModel(ValueError):
    """The weight file is not one of the seed models (exporter.models)."""


def _state_dict_of(layers: list[dict]) -> dict[str, str]:
    """state_dict key -> tensor name in the file, for every layer role."""
    return {f"{layer['name']}.{role}": tensor for layer in layers for role, tensor in layer["tensors"].items()}


def load_seed_model(weights: str | os.PathLike) -> tuple[str, nn.Module]:
    """The seed model a weight file holds, in eval mode with the file's exact weights.

    Raises NotASeedModel when no seed model has the file's parameters or layers.
    """
    container, layers = read_weights(weights)
    classes = parse_json(container.metadata["classes"], "metadata 'classes'", container.path)
    input_shape = tuple(parse_json(container.metadata["input_shape"], "metadata 'input_shape'", container.path))
    keys = _state_dict_of(layers)
    for seed_name, cls in SEED_MODELS.items():
        model = cls(classes).eval()
        state = model.state_dict()
        wanted = {k for k in state if not k.endswith("num_batches_tracked")}
        if wanted != set(keys) or any(tuple(state[k].shape) != container.tensors[t].shape
                                      for k, t in keys.items()):
            continue
        model.load_state_dict({k: torch.from_numpy(container.tensors[t].copy()) for k, t in keys.items()},
                              strict=False)
        try:
            rebuilt = to_layers(model, input_shape)
        except (UnsupportedModelError, ValueError):
            continue
        if rebuilt.layers == layers and all(np.array_equal(rebuilt.tensors[t], container.tensors[t])
                                            for t in keys.values()):
            return seed_name, model
    raise NotASeedModel(f"{container.path}: not a seed model ({', '.join(SEED_MODELS)}): no torch "
                        "model to compare with")


def torch_trace(model: nn.Module, image: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's torch output on image (1, C, H, W), named as the exporter names layers.

    Module layers are recorded by forward hooks (the layer name is the module path); layers
    made from a function or method call (`add`, `view`, `mean_1`) by their torch.fx node name,
    from an fx Interpreter run of the traced model, which calls the same hooked modules.
    """
    outputs: dict[str, np.ndarray] = {}

    def hook(name: str):
        def record(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            outputs[name] = output.detach().numpy().copy()
        return record

    class Recorder(fx.Interpreter):
        def run_node(self, node: fx.Node) -> object:
            value = super().run_node(node)
            if node.op in ("call_function", "call_method") and isinstance(value, torch.Tensor):
                outputs[node.name] = value.detach().numpy().copy()
            return value

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if name]
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Implicit dimension choice")  # nn.Softmax()
            Recorder(fx.symbolic_trace(model)).run(torch.from_numpy(np.array(image, dtype=np.float32)))
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def seed_model_tracer(weights: str | os.PathLike) -> TorchTracer:
    """A tracer for pdinfer.golden.write_golden: the seed model in `weights`, run in torch."""
    _, model = load_seed_model(weights)

    def trace(image: np.ndarray) -> Mapping[str, np.ndarray]:
        return torch_trace(model, image)
    return trace


def _progress(done: int, total: int) -> None:
    """A counter on a terminal's stderr, cleared when the last input is done."""
    print(f"\r{done}/{total} inputs" if done < total else "\r\033[K", end="", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}.golden", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="+", help="seed-model .pdw weight files")
    parser.add_argument("--out", required=True, help="directory for the bundles")
    parser.add_argument("--count", type=int, default=2, help="seeded random inputs (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    parser.add_argument("--layers", type=lambda text: text.split(","), default=None,
                        help="only these layers' outputs, comma-separated (default: every layer)")
    args = parser.parse_args(argv)
    for weights in args.weights:
        try:
            path = write_golden(weights, args.out, count=args.count, seed=args.seed, layers=args.layers,
                                torch_tracer=seed_model_tracer(weights), torch_version=torch.__version__,
                                progress=_progress if sys.stderr.isatty() else None)
        except (PdinferError, NotASeedModel) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"wrote {path} (reference and torch {torch.__version__} outputs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
