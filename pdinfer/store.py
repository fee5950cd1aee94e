"""A directory of weight files as name -> Model, kept loaded and current for a server.

Each call of `store.get(name)` looks at the file's status (one os.stat): a model is loaded on first
use, and loaded again when its file changes (inode, size, modification or change time); the new
model then replaces the old one at once, and calls already running finish on the old one. A file
that fails to load (say, half-written: its whole-file checksum does not match) never replaces a
model that works: the store keeps serving the last good one, warns, and reports the error in
`errors()` until the file changes again. The store starts no thread and compiles nothing per model.

Publish a model safely by writing it under a temporary name in the same directory and renaming it
(os.replace), as pdinfer's own writer does: only names ending in `.pdw` and not starting with a dot
are models, and a rename makes the new file appear whole. A file rewritten in place is never served
half-written (the whole-file checksum fails, the old model stays), but its last write goes unseen
if it leaves the file's status as it was (same size, within the filesystem's timestamp
granularity) until the file changes again. A deleted file unloads its model (ModelNotFoundError).
"""

from __future__ import annotations

import os
import stat
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from .errors import ConfigError, ModelNotFoundError, PdinferError
from .model import Model, load
from .plan import packed_bytes

SUFFIX = ".pdw"


@dataclass
class _Entry:
    """One name's state: its model (None until loaded, or after eviction) and the file status the
    last load attempt saw, with that attempt's error (None if it succeeded)."""

    loading: threading.Lock = field(default_factory=threading.Lock)
    model: Optional[Model] = None
    nbytes: int = 0  # the model's packed weights (pdinfer.plan.packed_bytes)
    status: Optional[tuple] = None
    error: Optional[PdinferError] = None


def _status(path: Path) -> Optional[tuple]:
    """What changes whenever a file is replaced or written: device, inode, size, mtime and ctime;
    None if there is no such regular file."""
    try:
        s = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(s.st_mode):
        return None
    return s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns


class ModelStore:
    """name -> Model over the `.pdw` files of `directory` (name: the file name without `.pdw`).

    Models load on first use and reload when their file changes; safe to use from any number of
    threads. `memory_budget` (bytes of packed weights, pdinfer.plan.packed_bytes; models sharing
    one packed copy count once) unloads the least recently used models beyond it; the model just
    used always stays. A name with no file is a ModelNotFoundError (a KeyError).
    """

    def __init__(self, directory: Union[str, os.PathLike], *, memory_budget: Optional[int] = None) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ConfigError(f"{directory}: not a directory")
        if memory_budget is not None and (not isinstance(memory_budget, int) or memory_budget < 0):
            raise ConfigError(f"memory_budget must be None or an integer >= 0, got {memory_budget!r}")
        self.memory_budget = memory_budget
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first

    def __repr__(self) -> str:
        return f"ModelStore({str(self.directory)!r}, loaded={len(self.loaded())})"

    def names(self) -> list[str]:
        """The names of the model files in the directory now, sorted."""
        return sorted(p.name[:-len(SUFFIX)] for p in self.directory.iterdir()
                      if p.name.endswith(SUFFIX) and not p.name.startswith(".") and p.is_file())

    def __contains__(self, name: object) -> bool:
        path = self._file(name)
        return path is not None and _status(path) is not None

    def __getitem__(self, name: str) -> Model:
        return self.get(name)

    def get(self, name: str) -> Model:
        """The current model of `name`, loaded or reloaded first if its file is new or changed.

        Raises ModelNotFoundError if there is no such file, or the load's FormatError if the file
        fails to load and no earlier version of it was loaded (else the earlier model is returned).
        """
        path = self._file(name)
        status = _status(path) if path is not None else None
        if status is None:
            with self._lock:
                self._entries.pop(name, None)
            raise ModelNotFoundError(f"no model {name!r} in {self.directory} (no file {name}{SUFFIX})")
        with self._lock:
            entry = self._entries.setdefault(name, _Entry())
            self._entries.move_to_end(name)
            current = entry.model
            if current is not None and entry.status == status:
                return current
        if current is not None and not entry.loading.acquire(blocking=False):
            return current  # another thread is reloading it: serve this one meanwhile
        if current is None:
            entry.loading.acquire()  # the first load: wait for the thread doing it, if any
        try:
            with self._lock:
                current, error = entry.model, entry.error
                done = entry.status == status  # by another thread meanwhile
            if done and current is not None:
                return current
            if done and error is not None:
                raise type(error)(*error.args)  # a copy: each thread gets its own traceback
            return self._load(name, entry, path, status)
        finally:
            entry.loading.release()

    def _load(self, name: str, entry: _Entry, path: Path, status: tuple) -> Model:
        """Load `path` into `entry` (its loading lock held); on failure keep the old model."""
        try:
            model = load(path)
        except PdinferError as e:
            with self._lock:
                entry.status, entry.error, current = status, e, entry.model
            if current is None:
                raise
            warnings.warn(f"{path}: not reloaded, still serving the model loaded before: {e}",
                          RuntimeWarning, stacklevel=3)
            return current
        with self._lock:
            entry.model, entry.nbytes, entry.status, entry.error = model, packed_bytes(model._plan), status, None
            self._evict(keep=name)
        return model

    def _evict(self, keep: str) -> None:
        """Unload least recently used models until the budget holds (self._lock held)."""
        if self.memory_budget is None:
            return
        for name in list(self._entries):
            if self._resident_bytes() <= self.memory_budget:
                return
            entry = self._entries[name]
            if name != keep and entry.model is not None:
                entry.model, entry.nbytes, entry.status = None, 0, None

    def _resident_bytes(self) -> int:
        plans = {id(e.model._plan): e.nbytes for e in self._entries.values() if e.model is not None}
        return sum(plans.values())

    def resident_bytes(self) -> int:
        """Packed weight bytes of the loaded models (a packed copy shared by models counts once)."""
        with self._lock:
            return self._resident_bytes()

    def loaded(self) -> list[str]:
        """Names with a model loaded now, least recently used first."""
        with self._lock:
            return [name for name, entry in self._entries.items() if entry.model is not None]

    def errors(self) -> dict[str, PdinferError]:
        """name -> the error of the last load of its file, for each name whose current file failed
        to load (the model loaded before it, if any, is the one served)."""
        with self._lock:
            return {name: entry.error for name, entry in self._entries.items() if entry.error is not None}

    def _file(self, name: object) -> Optional[Path]:
        """The file of a model name, or None for a name that cannot be one (empty, hidden, a path)."""
        if not isinstance(name, str) or not name or name.startswith(".") or "/" in name or os.sep in name \
                or (os.altsep and os.altsep in name) or "\0" in name:
            return None
        return self.directory / (name + SUFFIX)
