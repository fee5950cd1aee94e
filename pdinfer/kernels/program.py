"""The interpreter of a compiled plan: one Numba call runs every step of a chunk of images.

A Python loop over a plan's steps pays Numba's dispatch (typing and unboxing ten arguments, about
2-3 us) per step, and a thread coming back from a kernel waits for the GIL, which another thread
running Python between its own kernels may hold (a wake-up takes 35-40 us on a VM). So a plan whose
steps all have a form here runs as a table (pdinfer/program.py): a row per step and pass of images
(pdinfer/kernels/table.py), each naming its row kernel by address (pdinfer/kernels/rows.py), where
its arrays are (values: offsets in the call's float32 `arena`; weights and biases: their addresses)
and its parameter structs, flat. The row kernels call the same kernels with the same arguments the
Python loop would: same answers, bit for bit.

The interpreter holds no kernel code: it calls each row's kernel through its address, so it
compiles in a fraction of a second, once for every table, and each kernel is compiled on its own.
"""

from .._jit import jit
from .pointers import (atomic_add, atomic_load, atomic_store, call_row_kernel, compare_exchange, float32_array,
                       futex_wait, futex_wake, spin_pause)
from .table import (ARENA, CHUNKS, CLAIM, CLAIM_BITS, COUNT_BITS, DONE, FAILED, HELPER_SCRATCH, JOB, JOB_ROW, KERNEL, ROW,
                    SCRATCH, SLOPE, SPINS, STATE, TAKEN)

_COUNT_MASK = (1 << COUNT_BITS) - 1  # a claim word's count of chunks taken from one end


@jit
def run_program(rows, slopes, arena, box):
    """Run a table's rows in order.

    rows:   (R, ROW) int64, the fields of table.py
    slopes: (R,) float32, LeakyReLU's slope of each row's activation
    arena:  (A,) float32, the call's values: its input written, its output read after
    box:    (BOX,) int64, the mailbox of a helper thread this call owns, or empty for none: a row
            with CHUNKS is then shared with it
    """
    arena_at = arena.ctypes.data
    for r in range(rows.shape[0]):
        # A shared row (row[CHUNKS] > 0, with a helper) is posted as a job (post_row), and this
        # thread and the helper (serve) claim its chunks until none is left; this thread then waits
        # for the chunks the helper took. A helper that is late takes none.
        row = rows[r]
        chunks = row[CHUNKS] if box.size > 0 else 0
        job = post_row(row, slopes[r:r + 1], arena, box) if chunks > 0 else 0
        chunk = _claim(box, job, chunks, False) if chunks > 0 else 0
        mine, failed = 0, False
        while chunk >= 0:
            if call_row_kernel(row[KERNEL], row.ctypes.data, arena_at, arena.size, slopes[r], chunk, max(chunks, 1),
                               SCRATCH) != 0:
                failed = True  # a shared row waits for the helper before raising
            mine += 1
            chunk = _claim(box, job, chunks, False) if chunks > 0 else -1
        while chunks > 0 and atomic_load(box, DONE) < chunks - mine:
            spin_pause()
        if failed or (chunks > 0 and atomic_load(box, FAILED) != 0):
            raise RuntimeError("pdinfer: a kernel of the compiled plan failed")


# ---------------------------------------------------------------------------- sharing a row

@jit
def _claim(box, job, chunks, from_back):
    """The next chunk of `job` for this thread, or -1 if every one is taken (or the job is over).
    The calling thread takes chunks from the front (0, 1, ...), the helper from the back, so that
    each keeps to its own part of the images from row to row (and its part stays in its cache)."""
    while True:
        word = atomic_load(box, CLAIM)
        front, back = word & _COUNT_MASK, (word >> COUNT_BITS) & _COUNT_MASK
        if word >> CLAIM_BITS != job or front + back >= chunks:
            return -1
        if compare_exchange(box, CLAIM, word, word + (1 << COUNT_BITS if from_back else 1)):
            return chunks - 1 - back if from_back else front


@jit
def post_row(row, slope, arena, box):
    """Post a row for the helper thread (serve) to take chunks of; returns the job's number.
    slope: (1,) float32, the row's slope (the helper reads it by address)"""
    job = atomic_load(box, JOB) + 1
    for i in range(ROW):
        box[JOB_ROW + i] = row[i]
    box[ARENA], box[ARENA + 1] = arena.ctypes.data, arena.size
    box[SLOPE] = slope.ctypes.data
    atomic_store(box, DONE, 0)
    atomic_store(box, FAILED, 0)
    atomic_store(box, CLAIM, job << CLAIM_BITS)
    atomic_store(box, JOB, job)  # posted: the fields above are the job's
    return job


@jit
def signal(box, state):
    """Set the helper's state, and wake it if it sleeps."""
    atomic_store(box, STATE, state)
    futex_wake(box, STATE)


@jit
def serve(box):
    """The helper thread's loop, until box[STATE] is -1: while it is 0, poll it box[SPINS] times
    (a call that follows soon finds the helper up, as OpenMP's and ONNX Runtime's threads spin
    between parallel regions), then sleep; while it is 1, take chunks of each job posted (post_row)."""
    seen = atomic_load(box, JOB)
    while True:
        state = atomic_load(box, STATE)
        if state < 0:
            return
        if state == 0:
            spins = box[SPINS]
            while spins > 0 and atomic_load(box, STATE) == 0:
                spin_pause()
                spins -= 1
            if atomic_load(box, STATE) == 0:
                futex_wait(box, STATE, 0)
            continue
        job = atomic_load(box, JOB)
        if job == seen:
            spin_pause()
            continue
        seen = job
        row = box[JOB_ROW:JOB_ROW + ROW].copy()  # read after the job number: the job's own fields
        slope = float32_array(box[SLOPE], 1)[0]
        while True:
            chunk = _claim(box, job, row[CHUNKS], True)
            if chunk < 0:
                break
            if call_row_kernel(row[KERNEL], row.ctypes.data, box[ARENA], box[ARENA + 1], slope, chunk, row[CHUNKS],
                               HELPER_SCRATCH) != 0:
                atomic_store(box, FAILED, 1)  # the caller raises it
            atomic_add(box, TAKEN, 1)
            atomic_add(box, DONE, 1)
