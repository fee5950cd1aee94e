"""A model's compiled kernels, prepared off the calling thread, so that a fresh process answers at once.

The first process on a machine (or after an upgrade) compiles each fast kernel a model runs, a few
seconds apiece; later processes load them from Numba's disk cache. A Model does not wait for that:
it hands its plan to this module's worker thread, which compiles or loads every row kernel of the
plan, the interpreter and the helper thread's loop, and runs the plan once on zeros (the host steps'
kernels); until that is done the model runs its layers with NumPy (kernels/vectorized.py). Numba
itself is first imported there too: `import pdinfer` and `load` need NumPy only.

One worker serves the process, in the order plans arrive: kernels are shared between models, and
two compilations at once would only split the same cores. At exit it stops after the kernel it is
compiling (Numba writes each cache entry whole), leaving the rest to the next process or to
`pdinfer warmup`.
"""

from __future__ import annotations

import atexit
import collections
import threading
import weakref
from typing import Callable, Optional

import numpy as np

from .kernels.table import OP_DEQUANTIZE
from .plan import Plan, run_plan
from .program import HOST, compile_helper


class Preparation:
    """A plan's kernels being prepared: `done()` once they are ready, or once preparing them failed
    (`error`; the model's next call then runs the plan itself, and raises what it raises)."""

    def __init__(self, steps: list[Callable[[], object]]) -> None:
        self.steps = steps
        self.error: Optional[BaseException] = None
        self._done = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def done(self) -> bool:
        return self._done.is_set()

    def on_done(self, callback: Callable[[], None]) -> None:
        """Call `callback()` once done: now if it is, else on the thread that finishes it."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def run(self) -> None:
        """Prepare in this thread, unless done already (Model.compile); stop early (not done) if
        the process is exiting."""
        try:
            for step in self.steps:
                if _exiting.is_set() or self.done():
                    return
                step()
        except Exception as e:  # noqa: B902  (kept for the model: its next call raises it)
            self.error = e
        self.finish()

    def finish(self) -> None:
        """Mark it done and call the callbacks (once)."""
        with self._lock:
            if self._done.is_set():
                return
            self.steps = []  # what they hold (the plan, an image of zeros) is not kept with the plan
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


def _steps(plan: Plan, input_shape: tuple[int, ...]) -> list[Callable[[], object]]:
    """What preparing `plan` does, a kernel at a time: its row kernels, the helper's loop, one run."""
    ops = plan.program.ops() if plan.program is not None else ()
    codes = {op.code for op in ops if op.code != HOST} | ({OP_DEQUANTIZE} if any(op.dequantize for op in ops) else set())
    zeros = np.zeros((1, *input_shape), dtype=np.float32)

    def compile_row_kernel(code: int) -> None:
        from .kernels.rows import kernel_address  # Numba and the kernels, imported on this thread
        kernel_address(code)
    return ([lambda code=code: compile_row_kernel(code) for code in sorted(codes)]
            + [compile_helper, lambda: run_plan(plan, zeros)])


_lock = threading.Lock()
_queue: "collections.deque[Preparation]" = collections.deque()
_preparations: "weakref.WeakKeyDictionary[Plan, Preparation]" = weakref.WeakKeyDictionary()
_worker: Optional[threading.Thread] = None
_exiting = threading.Event()


def prepare(plan: Plan, input_shape: tuple[int, ...]) -> Preparation:
    """The preparation of `plan` (input_shape: one image, (C, H, W)), queued for the worker unless it
    is done or under way."""
    global _worker
    with _lock:
        preparation = _preparations.get(plan)
        if preparation is None or preparation.error is not None:
            preparation = _preparations[plan] = Preparation(_steps(plan, input_shape))
            _queue.append(preparation)
            if _worker is None:
                _worker = threading.Thread(target=_work, name="pdinfer-compile", daemon=True)
                _worker.start()
        return preparation


def prepare_now(plan: Plan, input_shape: tuple[int, ...]) -> None:
    """Prepare `plan` in this thread, raising what fails; the worker then skips it (if it is on it
    already, each kernel still compiles once)."""
    for step in _steps(plan, input_shape):
        step()
    with _lock:
        preparation = _preparations.get(plan)
    if preparation is not None and preparation.error is None:
        preparation.finish()


def busy() -> bool:
    """Whether the worker has a plan to prepare."""
    with _lock:
        return _worker is not None


def _work() -> None:
    global _worker
    while not _exiting.is_set():
        with _lock:
            if not _queue:
                _worker = None
                return
            preparation = _queue.popleft()
        preparation.run()


@atexit.register
def _stop() -> None:
    """At exit: let the worker finish the kernel it is on, and start no other."""
    _exiting.set()
    worker = _worker
    if worker is not None:
        worker.join()
