"""Scoring an archive of images on a Dask cluster (docs/ARCHIVE.md; needs the `dask` extra).

The client reads the weight file once and sends its bytes to every worker; each worker process
loads the model the first time a task needs it and keeps it, keyed by the file's SHA-256, so a
task only reads its files and runs them.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections import Counter, OrderedDict
from contextlib import nullcontext
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from .errors import ConfigError, FormatError, InputError, MissingExtraError, PdinferError
from .image import image_files
from .model import Model, _cached_load, load, run

Inputs = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]], np.ndarray]

FILES_PER_TASK = 64
MODELS_PER_WORKER = 8  # the models a worker process keeps, least recently used dropped first

_models: "OrderedDict[str, Model]" = OrderedDict()  # this process's models, by weight file SHA-256
_loads: Counter = Counter()  # how often this process loaded each of them (once, unless dropped)
_models_lock = threading.Lock()


def score_archive(weights: Union[str, os.PathLike, Model], inputs: Inputs, *, client: Any = None,
                  recursive: bool = True, files_per_task: int = FILES_PER_TASK,
                  progress: Optional[Callable[[int, int], None]] = None) -> list[dict]:
    """Score .png/.npy files (or an array of images) on a Dask cluster; one row per image, in order.

    weights: a .pdw path or a loaded Model (its file is read again and sent to the workers).
    inputs: a file or directory, a list of them (directories: their .png/.npy files, sorted; with
    `recursive`, the default, their subdirectories too), or an (N, C, H, W) / (C, H, W) array.
    Workers read the files by their absolute paths, so these must be readable there too.
    client: a `distributed.Client`; default: the current one, else a temporary local cluster.
    Tasks of `files_per_task` files (or images); `progress(done, total)` counts files (images) done.

    A row is what `pdinfer run --json` prints for the image: {"input", "class", the value of the
    top class under model.output_kind, every class's under its plural}; "input" is the path as
    given (a batch .npy: `file.npy[i]`) or, for an array, the image's index. A file that cannot be
    read or run gives the row {"input": path, "error": message} and the others go on.
    """
    distributed = _distributed()
    if isinstance(files_per_task, bool) or not isinstance(files_per_task, int) or files_per_task < 1:
        raise ConfigError(f"files_per_task must be an integer >= 1, got {files_per_task!r}")
    model = weights if isinstance(weights, Model) else _cached_load(weights)
    try:
        data = Path(model.path).read_bytes()
    except OSError as e:
        raise FormatError(f"{model.path}: cannot read weight file: {e.strerror}") from None
    key = hashlib.sha256(data).hexdigest()
    if isinstance(inputs, np.ndarray):
        images, _ = model.check_input(inputs)
        parts = [(images[i:i + files_per_task], i) for i in range(0, len(images), files_per_task)]
    else:
        paths = _paths([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs, recursive)
        parts = [([(str(p), os.path.abspath(p)) for p in paths[i:i + files_per_task]],)
                 for i in range(0, len(paths), files_per_task)]
    total = sum(len(part[0]) for part in parts)
    with _connect(distributed, client) as client:
        weight_bytes = client.scatter(data, broadcast=True, hash=False)  # a hashed key may be released meanwhile
        task = _score_images if isinstance(inputs, np.ndarray) else _score_files
        futures = [client.submit(task, key, model.data_sha256, weight_bytes, *part, pure=False) for part in parts]
        sizes = {future.key: len(part[0]) for future, part in zip(futures, parts)}
        done = 0
        for future in distributed.as_completed(futures):
            done += sizes[future.key]
            if progress is not None:
                progress(done, total)
        return [row for rows in client.gather(futures) for row in rows]


def _distributed() -> ModuleType:
    try:
        import distributed
    except ImportError:
        raise MissingExtraError("scoring an archive on Dask needs dask.distributed: "
                                "pip install 'pdinfer[dask]'") from None
    return distributed


def _connect(distributed: ModuleType, client: Any) -> Any:
    """A context giving `client`, or the current client, or a temporary local cluster's client."""
    if client is not None:
        return nullcontext(client)
    try:
        return nullcontext(distributed.default_client())
    except ValueError:  # no client in this process: a local cluster, closed at the end
        return distributed.Client(processes=True, host="127.0.0.1", dashboard_address=None)


def _paths(names: Sequence[Union[str, os.PathLike]], recursive: bool) -> list[Path]:
    """Files as given, directories expanded to their .png/.npy files (see image_files)."""
    paths: list[Path] = []
    for name in names:
        if not os.path.isdir(name):
            paths.append(Path(name))
            continue
        files, skipped = image_files(name, recursive)
        if skipped:
            warnings.warn(f"{name}: subdirectories not walked: " + ", ".join(map(str, skipped)),
                          UserWarning, stacklevel=3)
        paths += files
    if not paths:
        raise InputError("no .png or .npy files to score")
    return paths


def worker_model(key: str, data_sha256: str, data: bytes) -> Model:
    """The model of the weight file `data` (SHA-256 `key`), loaded once per process and kept.

    The bytes are written to the worker's local directory (write, then rename) and loaded from
    there; data_sha256 is the loaded model's data checksum the client saw.
    """
    from distributed import get_worker
    with _models_lock:
        if key not in _models:
            path = Path(get_worker().local_directory) / f"pdinfer-{key}.pdw"
            if not path.exists():
                partial = path.with_name(f"{path.name}.{os.getpid()}.part")
                partial.write_bytes(data)
                os.replace(partial, path)
            model = load(path)
            if model.data_sha256 != data_sha256:
                raise FormatError(f"{path}: not the model the client loaded (its weight file changed since)")
            _models[key] = model
            _loads[key] += 1
            while len(_models) > MODELS_PER_WORKER:
                _models.popitem(last=False)
        _models.move_to_end(key)
        return _models[key]


def _score_files(key: str, data_sha256: str, data: bytes, files: list[tuple[str, str]]) -> list[dict]:
    """A task: rows of (label, absolute path) files, as in score_archive."""
    from .cli import labelled, record  # the rows of `pdinfer run --json` (`import pdinfer` leaves cli out)
    model = worker_model(key, data_sha256, data)
    rows = []
    for label, path in files:
        try:
            out = run(model, path)
        except PdinferError as e:
            rows.append({"input": label, "error": str(e) if path in str(e) else f"{path}: {e}"})
        else:
            rows += [record(model, name, values) for name, values in labelled(model, Path(label), out)]
    return rows


def _score_images(key: str, data_sha256: str, data: bytes, images: np.ndarray, start: int) -> list[dict]:
    """A task: rows of images start, start + 1, ... of an array (checked by the client)."""
    from .cli import record
    model = worker_model(key, data_sha256, data)
    return [{**record(model, "", values), "input": start + i} for i, values in enumerate(model(images))]
