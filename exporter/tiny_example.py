"""Write docs/tiny.pdw, FORMAT.md's example model, and print its annotated hex dump.

    python -m exporter.tiny_example [OUT.pdw]
"""

from __future__ import annotations

import json
import struct
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

import pdinfer

from .convert import export

INPUT_SHAPE = (1, 2, 2)
EXAMPLE_INPUT = [[[[0.5, -1.0], [2.0, 0.0]]]]
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "docs" / "tiny.pdw"


def tiny_model() -> nn.Sequential:
    """Conv2d 1->2 (1x1), ReLU, global average pool, Flatten, Linear 2->2, Softmax; fixed weights."""
    model = nn.Sequential(OrderedDict(
        conv=nn.Conv2d(1, 2, 1), relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(),
        fc=nn.Linear(2, 2), softmax=nn.Softmax(dim=1)))
    with torch.no_grad():
        model.conv.weight.copy_(torch.tensor([1.0, -2.0]).view(2, 1, 1, 1))
        model.conv.bias.copy_(torch.tensor([0.5, 0.25]))
        model.fc.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))
        model.fc.bias.copy_(torch.tensor([0.0, -1.0]))
    return model.eval()


def _hex(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data)


def hex_dump(path: str | Path) -> str:
    """An annotated dump of a small .pdw file: offset, bytes, meaning (header shown as text)."""
    raw = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    text = raw[8:8 + header_len].decode("utf-8")
    header = json.loads(text)
    json_len = len(text.rstrip(" "))
    rows = [f"{'offset':>6}  {'bytes':<48}  meaning",
            f"{0:06x}  {_hex(raw[:8]):<48}  N = {header_len}: header length (u64 LE); "
            f"data starts at 8 + N = {8 + header_len}",
            f"{8:06x}  {_hex(raw[8:24]):<48}  header JSON, {json_len} bytes: {text[:16]!r}...",
            f"{8 + json_len:06x}  {'20 20 20 ...':<48}  {header_len - json_len} spaces (0x20): "
            "pad 8 + N to a multiple of 64"]
    data_start = 8 + header_len
    for name, entry in sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                              key=lambda item: item[1]["data_offsets"][0]):
        begin, end = entry["data_offsets"]
        values = np.frombuffer(raw[data_start + begin:data_start + end], dtype="<f4")
        for i in range(0, end - begin, 16):
            chunk = raw[data_start + begin + i:data_start + min(begin + i + 16, end)]
            meaning = (f"{name} {entry['shape']} = {values.tolist()}" if i == 0 else "(continued)")
            rows.append(f"{data_start + begin + i:06x}  {_hex(chunk):<48}  {meaning}")
    rows.append(f"{len(raw):06x}  end of file ({len(raw)} bytes)")
    meta = header.pop("__metadata__")
    layers = json.loads(meta["layers"])
    meta_lines = [f"    {json.dumps(k)}: " + ("<the layers below, as one JSON string>" if k == "layers"
                                              else json.dumps(v)) for k, v in meta.items()]
    tensor_lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in header.items()]
    lines = ["Header JSON (one line in the file; shown here one entry per line):",
             '{"__metadata__": {', ",\n".join(meta_lines), "  },", ",\n".join(tensor_lines), "}",
             "", "layers:"] + [f"  {json.dumps(layer)}" for layer in layers]
    return "\n".join(rows + [""] + lines)


def example_lines(path: str | Path, model: nn.Module) -> str:
    """The worked example: EXAMPLE_INPUT through pdinfer (the file) and through torch (the module),
    labelled, since the two differ in the last bit."""
    ours = pdinfer.load(path)(np.array(EXAMPLE_INPUT, np.float32))
    with torch.no_grad():
        theirs = model(torch.tensor(EXAMPLE_INPUT))
    return (f"Example: input {EXAMPLE_INPUT} gives\n"
            f"  pdinfer (this file): {ours.tolist()}\n"
            f"  torch (the module):  {theirs.tolist()}")


def main(argv: list[str] | None = None) -> int:
    """Write the tiny model's weight file and print its dump and one worked example."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_PATH
    model = tiny_model()
    export(model, path, input_shape=INPUT_SHAPE, classes=["a", "b"], force=True)
    print(hex_dump(path))
    print(f"\n{example_lines(path, model)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
