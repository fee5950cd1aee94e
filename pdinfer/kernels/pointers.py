"""Raw memory for the interpreter (program.py): arrays at addresses, atomic int64 words, futexes.

A table row names the weights it reads by address (the plan keeps those arrays alive as long as the
table), so a model keeps its packed weights where lowering put them instead of a second copy. The
helper thread that shares a row with the calling thread meets it in an int64 mailbox, read and
written with sequentially consistent atomics (LLVM `load atomic`, `store atomic`, `cmpxchg`), so
the compiler neither caches a word in a register nor reorders the arrays' stores around it. Between
calls the helper sleeps in the kernel on a word of the mailbox (Linux futex, called from Numba: no
Python and no GIL on the way in or out, which measured ~100 us per call with a threading.Event).
"""

import llvmlite.binding as llvm
import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import jit
from .table import FUTEX_SYSCALL

_X86 = llvm.get_process_triple().startswith(("x86_64", "i686", "i386"))
_FUTEX_WAIT, _FUTEX_WAKE = 128, 129  # FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE
_syscall = types.ExternalFunction("syscall", types.int64(types.int64, types.int64, types.int64, types.int64,
                                                         types.int64))


def _pointer_intrinsic(numba_type: types.Type, llvm_type: ir.Type):
    """An intrinsic that casts an int64 address to a pointer to `numba_type` elements."""
    @intrinsic
    def pointer(typingctx, address):
        if not isinstance(address, types.Integer):
            return None

        def codegen(context, builder, sig, args):
            return builder.inttoptr(args[0], ir.PointerType(llvm_type))
        return types.CPointer(numba_type)(address), codegen
    return pointer


_float32_pointer = _pointer_intrinsic(types.float32, ir.FloatType())
_int64_pointer = _pointer_intrinsic(types.int64, ir.IntType(64))
_int8_pointer = _pointer_intrinsic(types.int8, ir.IntType(8))
_uint8_pointer = _pointer_intrinsic(types.uint8, ir.IntType(8))
_int32_pointer = _pointer_intrinsic(types.int32, ir.IntType(32))
_uint16_pointer = _pointer_intrinsic(types.uint16, ir.IntType(16))


@jit
def float32_array(address, size):
    """The `size` float32 values at `address` as a 1-D C array (not owning them)."""
    return numba.carray(_float32_pointer(address), (size,))


@jit
def int64_array(address, size):
    """The `size` int64 values at `address` as a 1-D C array (not owning them)."""
    return numba.carray(_int64_pointer(address), (size,))


@jit
def int8_array(address, size):
    """The `size` int8 values at `address` as a 1-D C array (not owning them)."""
    return numba.carray(_int8_pointer(address), (size,))


@jit
def uint8_array(address, size):
    """The `size` uint8 values at `address` as a 1-D C array (not owning them)."""
    return numba.carray(_uint8_pointer(address), (size,))


@jit
def int32_array(address, size):
    """The `size` int32 values at `address` as a 1-D C array (not owning them)."""
    return numba.carray(_int32_pointer(address), (size,))


@jit
def uint16_array(address, size):
    """The `size` uint16 values at `address` as a 1-D C array (not owning them)."""
    return numba.carray(_uint16_pointer(address), (size,))


# A row kernel's C signature (pdinfer/kernels/rows.py): (row address, arena address, arena floats,
# slope, chunk, chunks, scratch field) -> 0, or 1 if it failed.
ROW_KERNEL = types.int64(types.int64, types.int64, types.int64, types.float32, types.int64, types.int64, types.int64)


@intrinsic
def call_row_kernel(typingctx, kernel, row, arena, floats, slope, chunk, chunks, scratch):
    """Call the row kernel at address `kernel` (a C function of signature ROW_KERNEL) on a row."""
    if not all(isinstance(a, types.Integer) for a in (kernel, row, arena, floats, chunk, chunks, scratch)):
        return None
    signature = types.int64(types.int64, types.int64, types.int64, types.int64, types.float32, types.int64,
                            types.int64, types.int64)

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        function = ir.FunctionType(i64, [i64, i64, i64, ir.FloatType(), i64, i64, i64])
        pointer = builder.inttoptr(args[0], function.as_pointer())
        values = [context.cast(builder, value, from_type, to_type)
                  for value, from_type, to_type in zip(args[1:], sig.args[1:], signature.args[1:])]
        return builder.call(pointer, values)
    return signature, codegen


def _word(context, builder, arr_type, arr, index):
    return builder.gep(context.make_array(arr_type)(context, builder, arr).data, [index])


def _is_int64_array(arr: types.Type) -> bool:
    return isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.layout == "C"


@intrinsic
def atomic_load(typingctx, words, index):
    """words[index], read atomically."""
    if not _is_int64_array(words):
        return None

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_word(context, builder, sig.args[0], *args), "seq_cst", 8)
    return types.int64(words, index), codegen


@intrinsic
def atomic_store(typingctx, words, index, value):
    """words[index] = value, written atomically."""
    if not _is_int64_array(words):
        return None

    def codegen(context, builder, sig, args):
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(value, _word(context, builder, sig.args[0], args[0], args[1]), "seq_cst", 8)
        return context.get_dummy_value()
    return types.void(words, index, value), codegen


@intrinsic
def atomic_add(typingctx, words, index, value):
    """words[index] += value atomically; returns the old value."""
    if not _is_int64_array(words):
        return None

    def codegen(context, builder, sig, args):
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", _word(context, builder, sig.args[0], args[0], args[1]), value, "seq_cst")
    return types.int64(words, index, value), codegen


@intrinsic
def compare_exchange(typingctx, words, index, expected, value):
    """If words[index] == expected, set it to value, atomically; returns whether it did."""
    if not _is_int64_array(words):
        return None

    def codegen(context, builder, sig, args):
        expected = context.cast(builder, args[2], sig.args[2], types.int64)
        value = context.cast(builder, args[3], sig.args[3], types.int64)
        pair = builder.cmpxchg(_word(context, builder, sig.args[0], args[0], args[1]), expected, value,
                               "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)
    return types.boolean(words, index, expected, value), codegen


@intrinsic
def spin_pause(typingctx):
    """The CPU's spin-wait hint between two polls of a word (x86 `pause`; nothing elsewhere)."""
    def codegen(context, builder, sig, args):
        if _X86:
            pause = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                   "llvm.x86.sse2.pause")
            builder.call(pause, [])
        return context.get_dummy_value()
    return types.void(), codegen


@jit
def futex_wait(words, index, expected):
    """Sleep while words[index] (its low 32 bits) is `expected`, until futex_wake (Linux only)."""
    _syscall(FUTEX_SYSCALL, words.ctypes.data + 8 * index, _FUTEX_WAIT, expected, 0)


@jit
def futex_wake(words, index):
    """Wake a thread sleeping in futex_wait on words[index] (Linux only)."""
    _syscall(FUTEX_SYSCALL, words.ctypes.data + 8 * index, _FUTEX_WAKE, 1, 0)
