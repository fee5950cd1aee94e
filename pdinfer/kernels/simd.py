"""float32 SIMD vectors for the fast kernels: Numba intrinsics that emit LLVM vector IR.

A `Float32Vector(width)` value is one LLVM `<width x float>`; LLVM maps it onto the CPU's vector
registers (a 32-wide vector is two AVX-512 registers, or four AVX2 ones). Kernels keep a tile of
accumulators in such values, so they stay in registers across a reduction loop, which Numba's
auto-vectoriser does not arrange by itself.

`width` arguments are an integer literal or a vector whose width to take. Every array
argument is C-contiguous and addressed by a flat element offset (`off`). Nothing is
bounds-checked: the kernels compute offsets that stay inside their arrays. `*_part` variants touch
only lanes `< count` (masked, so they never read or write past `count` elements).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

_f32 = ir.FloatType()
_i32 = ir.IntType(32)


class Float32Vector(types.Type):
    """`width` float32 lanes held in registers."""

    def __init__(self, width: int) -> None:
        self.width = width
        super().__init__(name=f"float32x{width}")


@register_model(Float32Vector)
class _Float32VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(_f32, fe_type.width))


def _vector_type(width_or_like: types.Type):
    """The vector type named by an integer literal, or the type of a vector to imitate."""
    if isinstance(width_or_like, types.IntegerLiteral):
        return Float32Vector(width_or_like.literal_value)
    if isinstance(width_or_like, Float32Vector):
        return width_or_like
    return None


def _is_c_float32_array(arr: types.Type) -> bool:
    return isinstance(arr, types.Array) and arr.dtype == types.float32 and arr.layout == "C"


def _element_pointer(context, builder, arr_type, arr, off):
    return builder.gep(context.make_array(arr_type)(context, builder, arr).data, [off])


def _splat(builder, scalar, vec_type):
    undef = ir.Constant(vec_type, ir.Undefined)
    first = builder.insert_element(undef, scalar, ir.Constant(_i32, 0))
    return builder.shuffle_vector(first, undef, ir.Constant(ir.VectorType(_i32, vec_type.count), [0] * vec_type.count))


def _lane_mask(builder, count, width):
    """<width x i1>: lane i is set if i < count."""
    lanes = ir.Constant(ir.VectorType(_i32, width), list(range(width)))
    limit = _splat(builder, builder.trunc(count, _i32), ir.VectorType(_i32, width))
    return builder.icmp_signed("<", lanes, limit)


def _llvm_function(builder, name, return_type, arg_types):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(return_type, arg_types), name)


@intrinsic
def vload(typingctx, arr, off, width):
    """arr[off:off + width] as a vector."""
    vec = _vector_type(width)
    if vec is None or not _is_c_float32_array(arr):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load(builder.bitcast(ptr, ir.PointerType(ir.VectorType(_f32, vec.width))), align=4)
    return vec(arr, off, width), codegen


@intrinsic
def vload_part(typingctx, arr, off, width, count):
    """Lanes i < count from arr[off + i], the others 0."""
    vec = _vector_type(width)
    if vec is None or not _is_c_float32_array(arr):
        return None

    def codegen(context, builder, sig, args):
        vec_type = ir.VectorType(_f32, vec.width)
        ptr = builder.bitcast(_element_pointer(context, builder, sig.args[0], args[0], args[1]),
                              ir.PointerType(vec_type))
        mask = _lane_mask(builder, args[3], vec.width)
        load = _llvm_function(builder, f"llvm.masked.load.v{vec.width}f32.p0", vec_type,
                              [ptr.type, _i32, mask.type, vec_type])
        return builder.call(load, [ptr, ir.Constant(_i32, 4), mask, ir.Constant(vec_type, None)])
    return vec(arr, off, width, count), codegen


@intrinsic
def vstore_part(typingctx, arr, off, vec, count):
    """arr[off + i] = vec[i] for lanes i < count."""
    if not isinstance(vec, Float32Vector) or not _is_c_float32_array(arr):
        return None

    def codegen(context, builder, sig, args):
        vec_type = ir.VectorType(_f32, vec.width)
        ptr = builder.bitcast(_element_pointer(context, builder, sig.args[0], args[0], args[1]),
                              ir.PointerType(vec_type))
        mask = _lane_mask(builder, args[3], vec.width)
        store = _llvm_function(builder, f"llvm.masked.store.v{vec.width}f32.p0", ir.VoidType(),
                               [vec_type, ptr.type, _i32, mask.type])
        builder.call(store, [args[2], ptr, ir.Constant(_i32, 4), mask])
        return context.get_dummy_value()
    return types.none(arr, off, vec, count), codegen


@intrinsic
def vbroadcast(typingctx, arr, off, width):
    """arr[off] in every lane."""
    vec = _vector_type(width)
    if vec is None or not _is_c_float32_array(arr):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        return _splat(builder, builder.load(ptr, align=4), ir.VectorType(_f32, vec.width))
    return vec(arr, off, width), codegen


@intrinsic
def vsplat(typingctx, value, width):
    """float32(value) in every lane."""
    vec = _vector_type(width)
    if vec is None or not isinstance(value, (types.Float, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        scalar = context.cast(builder, args[0], sig.args[0], types.float32)
        return _splat(builder, scalar, ir.VectorType(_f32, vec.width))
    return vec(value, width), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """a * b + c, rounded once."""
    if not (isinstance(c, Float32Vector) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        vec_type = args[0].type
        fma = _llvm_function(builder, f"llvm.fma.v{vec_type.count}f32", vec_type, [vec_type] * 3)
        return builder.call(fma, args)
    return c(a, b, c), codegen


def _binary(make):
    @intrinsic
    def op(typingctx, a, b):
        if not (isinstance(a, Float32Vector) and a == b):
            return None

        def codegen(context, builder, sig, args):
            return make(builder)(*args)
        return a(a, b), codegen
    return op


vadd = _binary(lambda builder: builder.fadd)
vsub = _binary(lambda builder: builder.fsub)
vmul = _binary(lambda builder: builder.fmul)


@intrinsic
def vselect_gt(typingctx, a, b, c, d):
    """Lane by lane: c if a > b else d (false when either is NaN)."""
    if not (isinstance(a, Float32Vector) and a == b == c == d):
        return None

    def codegen(context, builder, sig, args):
        return builder.select(builder.fcmp_ordered(">", args[0], args[1]), args[2], args[3])
    return a(a, b, c, d), codegen
