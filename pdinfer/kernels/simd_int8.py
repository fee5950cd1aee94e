"""int8 SIMD for the fast int8 kernels: Numba intrinsics that emit LLVM vector IR, beside simd.py.

An `Int32Vector(width)` is one LLVM `<width x i32>`: sixteen int32 sums in one AVX-512 register.
`dot_u8s8` is AVX-512 VNNI's `vpdpbusd`: each lane adds the four products of its four unsigned
bytes of `a` and four signed bytes of `b`, exactly, to its int32 sum. `requantize_lanes` is
docs/KERNELS.md's requantization of sixteen sums at once, the same float32 operations in the same
order as kernels/integer.py's `requantize`, and `store_bytes` writes its levels.

On a CPU without AVX512_VNNI (`HAS_VNNI`) `dot_u8s8` compiles to the same sums in portable LLVM IR,
and fast_int8.conv2d is run with its plain variant there. Array arguments are
C-contiguous and addressed by a flat element offset; nothing is bounds-checked.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.extending import intrinsic, models, register_model

from . import params
from .simd import _element_pointer, _lane_mask, _llvm_function, _splat


def compiles_for(feature: str) -> bool:
    """Whether the CPU Numba compiles for has `feature` (params.compiles_for, by Numba's own
    configuration). An x86 intrinsic for a feature the target lacks would abort LLVM, so the
    kernels take the portable form then."""
    return params.compiles_for(feature, config.CPU_FEATURES)


HAS_VNNI = compiles_for("avx512vnni") and compiles_for("avx512bw")  # the kernels may use vpdpbusd and BW's packs
HAS_AVX2 = compiles_for("avx2")  # dot_u8s8_avx2 may use vpmaddubsw
LANES = 16  # int32 lanes of a vector: one AVX-512 register

_i8, _i32, _f32 = ir.IntType(8), ir.IntType(32), ir.FloatType()
_V = ir.VectorType(_i32, LANES)
_F = ir.VectorType(_f32, LANES)


class Int32Vector(types.Type):
    """LANES int32 sums held in a register."""

    def __init__(self) -> None:
        super().__init__(name=f"int32x{LANES}")


int32x16 = Int32Vector()


@register_model(Int32Vector)
class _Int32VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _V)


def _is_c_array(arr: types.Type, dtype: types.Type) -> bool:
    return isinstance(arr, types.Array) and arr.dtype == dtype and arr.layout == "C"


@intrinsic
def load_sums(typingctx, arr, off):
    """arr[off:off + 16] of an int32 array as a vector (the first sums: a bias)."""
    if not _is_c_array(arr, types.int32):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load(builder.bitcast(ptr, ir.PointerType(_V)), align=4)
    return int32x16(arr, off), codegen


@intrinsic
def store_lanes(typingctx, arr, off, lanes):
    """The 16 int32 lanes stored from element `off` of arr: an int32 array's arr[off:off + 16], or a
    uint8 array's 64 bytes arr[off:off + 64] (lane i's byte k at off + 4i + k, little-endian)."""
    if not ((_is_c_array(arr, types.int32) or _is_c_array(arr, types.uint8)) and lanes == int32x16):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        builder.store(args[2], builder.bitcast(ptr, ir.PointerType(_V)), align=1)
        return context.get_dummy_value()
    return types.none(arr, off, lanes), codegen


@intrinsic
def copy_bytes(typingctx, out, out_off, src, src_off, count):
    """out[out_off:out_off + count] = src[src_off:src_off + count] (uint8 arrays that do not overlap there)."""
    if not (_is_c_array(out, types.uint8) and _is_c_array(src, types.uint8)):
        return None

    def codegen(context, builder, sig, args):
        target = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        source = _element_pointer(context, builder, sig.args[2], args[2], args[3])
        cgutils.raw_memcpy(builder, target, source, args[4], 1)
        return context.get_dummy_value()
    return types.none(out, out_off, src, src_off, count), codegen


@intrinsic
def fill_bytes(typingctx, out, off, count, value):
    """out[off:off + count] = value (a uint8 array; memset)."""
    if not (_is_c_array(out, types.uint8) and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        target = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        byte = context.cast(builder, args[3], sig.args[3], types.uint8)
        memset = _llvm_function(builder, "llvm.memset.p0.i64", ir.VoidType(),
                                [target.type, _i8, ir.IntType(64), ir.IntType(1)])
        builder.call(memset, [target, byte, context.cast(builder, args[2], sig.args[2], types.int64),
                              ir.Constant(ir.IntType(1), 0)])
        return context.get_dummy_value()
    return types.none(out, off, count, value), codegen


@intrinsic
def load_weight_quads(typingctx, arr, off):
    """The 64 bytes arr[off:off + 64] of an int8 array as 16 lanes of four signed bytes."""
    if not _is_c_array(arr, types.int8):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load(builder.bitcast(ptr, ir.PointerType(_V)), align=1)
    return int32x16(arr, off), codegen


@intrinsic
def broadcast_quad(typingctx, arr, off):
    """The four bytes arr[off:off + 4] of a uint8 array in every lane."""
    if not _is_c_array(arr, types.uint8):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        return _splat(builder, builder.load(builder.bitcast(ptr, ir.PointerType(_i32)), align=1), _V)
    return int32x16(arr, off), codegen


@intrinsic
def dot_u8s8(typingctx, acc, a, b):
    """acc + the sum of the four products of a's unsigned bytes and b's signed bytes, per lane
    (vpdpbusd: exact, as long as the int32 sum does not overflow)."""
    if not (acc == a == b == int32x16):
        return None

    def codegen(context, builder, sig, args):
        if HAS_VNNI:
            dot = _llvm_function(builder, "llvm.x86.avx512.vpdpbusd.512", _V, [_V, _V, _V])
            return builder.call(dot, args)
        # Elsewhere the same sums in portable IR (a kernel that calls this is then chosen only by tests)
        return _portable_dot(builder, *args)
    return int32x16(acc, a, b), codegen


def _portable_dot(builder, acc, a, b):
    """dot_u8s8's sums in portable LLVM IR."""
    wide = ir.VectorType(_i32, 4 * LANES)
    bytes_type = ir.VectorType(_i8, 4 * LANES)
    products = builder.mul(builder.zext(builder.bitcast(a, bytes_type), wide), builder.sext(builder.bitcast(b, bytes_type), wide))
    total = acc
    for j in range(4):
        picked = ir.Constant(ir.VectorType(_i32, LANES), [4 * lane + j for lane in range(LANES)])
        total = builder.add(total, builder.shuffle_vector(products, ir.Constant(wide, ir.Undefined), picked))
    return total


@intrinsic
def dot_u8s8_avx2(typingctx, acc, a, b):
    """dot_u8s8's sums by AVX2's vpmaddubsw and vpmaddwd, exactly: a's bytes taken as
    2 * (a >> 1) + (a & 1), so that no pair of vpmaddubsw's products reaches int16's limit
    (127 * 128 * 2 < 2^15), each half summed to int32 by vpmaddwd (times 2 and 1). Without AVX2,
    the portable form."""
    if not (acc == a == b == int32x16):
        return None

    def codegen(context, builder, sig, args):
        if not HAS_AVX2:
            return _portable_dot(builder, *args)
        bytes_type, half_bytes = ir.VectorType(_i8, 64), ir.VectorType(_i8, 32)
        words, sums = ir.VectorType(ir.IntType(16), 16), ir.VectorType(_i32, 8)
        pairs = _llvm_function(builder, "llvm.x86.avx2.pmadd.ub.sw", words, [half_bytes, half_bytes])
        widen = _llvm_function(builder, "llvm.x86.avx2.pmadd.wd", sums, [words, words])
        levels, weights = builder.bitcast(args[1], bytes_type), builder.bitcast(args[2], bytes_type)
        halves = builder.lshr(levels, ir.Constant(bytes_type, [1] * 64))
        odd = builder.and_(levels, ir.Constant(bytes_type, [1] * 64))
        parts = []
        for h in range(2):  # each 256-bit half
            pick = ir.Constant(ir.VectorType(_i32, 32), list(range(32 * h, 32 * h + 32)))
            weight_h = builder.shuffle_vector(weights, weights, pick)
            high = builder.call(pairs, [builder.shuffle_vector(halves, halves, pick), weight_h])
            low = builder.call(pairs, [builder.shuffle_vector(odd, odd, pick), weight_h])
            parts.append(builder.add(builder.call(widen, [high, ir.Constant(words, [2] * 16)]),
                                     builder.call(widen, [low, ir.Constant(words, [1] * 16)])))
        joined = builder.shuffle_vector(parts[0], parts[1], ir.Constant(ir.VectorType(_i32, 16), list(range(16))))
        return builder.add(args[0], joined)
    return int32x16(acc, a, b), codegen


@intrinsic
def requantize_lanes(typingctx, acc, multiplier, m_off, requant):
    """integer.requantize(float32(acc[i]) * multiplier[m_off + i], requant) in every lane i: LeakyReLU's
    slope on negatives, rint, the clamp to [low, high] (on the float), + zero point.

    multiplier: float32 array; requant: params.Requant as a plain tuple (zero_point, low, high, negative_slope)
    """
    if not (acc == int32x16 and _is_c_array(multiplier, types.float32) and isinstance(requant, types.BaseTuple)
            and len(requant) == 4):
        return None

    def codegen(context, builder, sig, args):
        sums, mult_arr, m_offset, rq = args
        m_ptr = _element_pointer(context, builder, sig.args[1], mult_arr, m_offset)
        v = builder.fmul(builder.sitofp(sums, _F), builder.load(builder.bitcast(m_ptr, ir.PointerType(_F)), align=4))
        return _requantized(context, builder, v, rq, sig.args[3])
    return int32x16(acc, multiplier, m_off, requant), codegen


def _requantized(context, builder, v, rq, rq_type):
    """The levels of float32 pre-images v (<16 x float>): integer.requantize in every lane."""
    zero_point, low, high, slope = (builder.extract_value(rq, i) for i in range(4))
    zero_point, low, high = (context.cast(builder, value, t, types.int32)
                             for value, t in zip((zero_point, low, high), rq_type.types[:3]))
    slope = context.cast(builder, slope, rq_type.types[3], types.float32)
    negative = builder.fcmp_ordered("<", v, ir.Constant(_F, None))
    v = builder.select(negative, builder.fmul(v, _splat(builder, slope, _F)), v)
    r = builder.call(_llvm_function(builder, "llvm.rint.v16f32", _F, [_F]), [v])
    lowest = _splat(builder, builder.sitofp(builder.sub(low, zero_point), _f32), _F)
    highest = _splat(builder, builder.sitofp(builder.sub(high, zero_point), _f32), _F)
    r = builder.select(builder.fcmp_ordered("<", r, lowest), lowest, r)
    r = builder.select(builder.fcmp_ordered(">", r, highest), highest, r)
    return builder.add(builder.fptosi(r, _V), _splat(builder, zero_point, _V))


@intrinsic
def add_requantized(typingctx, a, a_zero_point, a_multiplier, b, b_zero_point, b_multiplier, requant):
    """integer.add in every lane: requantize(float32(a - a_zero_point) * a_multiplier
    + float32(b - b_zero_point) * b_multiplier) (two products, then their sum).

    a, b: levels (Int32Vector); multipliers: float32 scalars; requant: params.Requant as a plain tuple
    """
    if not (a == b == int32x16 and isinstance(requant, types.BaseTuple) and len(requant) == 4):
        return None

    def codegen(context, builder, sig, args):
        def term(levels, zero_point, zero_type, multiplier, multiplier_type):
            centred = builder.sub(levels, _splat(builder, context.cast(builder, zero_point, zero_type, types.int32), _V))
            scale = _splat(builder, context.cast(builder, multiplier, multiplier_type, types.float32), _F)
            return builder.fmul(builder.sitofp(centred, _F), scale)
        v = builder.fadd(term(args[0], args[1], sig.args[1], args[2], sig.args[2]),
                         term(args[3], args[4], sig.args[4], args[5], sig.args[5]))
        return _requantized(context, builder, v, args[6], sig.args[6])
    return int32x16(a, a_zero_point, a_multiplier, b, b_zero_point, b_multiplier, requant), codegen


@intrinsic
def load_levels_full(typingctx, arr, off):
    """arr[off:off + 16] (uint8, zero-extended): load_levels of 16 lanes, unmasked."""
    if not _is_c_array(arr, types.uint8):
        return None

    def codegen(context, builder, sig, args):
        bytes_type = ir.VectorType(_i8, LANES)
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.zext(builder.load(builder.bitcast(ptr, ir.PointerType(bytes_type)), align=1), _V)
    return int32x16(arr, off), codegen


@intrinsic
def max_lanes(typingctx, a, b):
    """The larger of a[i] and b[i] in every lane."""
    if not a == b == int32x16:
        return None

    def codegen(context, builder, sig, args):
        return builder.select(builder.icmp_signed(">", args[0], args[1]), args[0], args[1])
    return int32x16(a, b), codegen


@intrinsic
def store_bytes(typingctx, out, off, levels, count):
    """out[off + i] = levels[i] (values 0..255) for lanes i < count.  out: uint8 array"""
    if not (_is_c_array(out, types.uint8) and levels == int32x16):
        return None

    def codegen(context, builder, sig, args):
        bytes_type = ir.VectorType(_i8, LANES)
        ptr = builder.bitcast(_element_pointer(context, builder, sig.args[0], args[0], args[1]), ir.PointerType(bytes_type))
        store = _llvm_function(builder, "llvm.masked.store.v16i8.p0", ir.VoidType(),
                               [bytes_type, ptr.type, _i32, ir.VectorType(ir.IntType(1), LANES)])
        levels = builder.trunc(args[2], bytes_type)
        whole = builder.icmp_signed(">=", args[3], ir.Constant(args[3].type, LANES))
        with builder.if_else(whole) as (then, otherwise):  # a whole store where it can (AVX2 has no byte masks)
            with then:
                builder.store(levels, ptr, align=1)
            with otherwise:
                builder.call(store, [levels, ptr, ir.Constant(_i32, 1), _lane_mask(builder, args[3], LANES)])
        return context.get_dummy_value()
    return types.none(out, off, levels, count), codegen


@intrinsic
def load_levels(typingctx, arr, off, count):
    """arr[off + i] (uint8, zero-extended) in lanes i < count, 0 in the others."""
    if not _is_c_array(arr, types.uint8):
        return None

    def codegen(context, builder, sig, args):
        bytes_type = ir.VectorType(_i8, LANES)
        ptr = builder.bitcast(_element_pointer(context, builder, sig.args[0], args[0], args[1]), ir.PointerType(bytes_type))
        load = _llvm_function(builder, "llvm.masked.load.v16i8.p0", bytes_type,
                              [ptr.type, _i32, ir.VectorType(ir.IntType(1), LANES), bytes_type])
        whole = builder.icmp_signed(">=", args[2], ir.Constant(args[2].type, LANES))
        with builder.if_else(whole) as (then, otherwise):  # a whole load where it can (AVX2 has no byte masks)
            with then:
                loaded = builder.load(ptr, align=1)
                from_whole = builder.block
            with otherwise:
                masked = builder.call(load, [ptr, ir.Constant(_i32, 1), _lane_mask(builder, args[2], LANES),
                                             ir.Constant(bytes_type, None)])
                from_masked = builder.block
        levels = builder.phi(bytes_type)
        levels.add_incoming(loaded, from_whole)
        levels.add_incoming(masked, from_masked)
        return builder.zext(levels, _V)
    return int32x16(arr, off, count), codegen


@intrinsic
def load_weights_wide(typingctx, arr, off):
    """The 16 signed bytes arr[off:off + 16] of an int8 array, sign-extended to int32 lanes."""
    if not _is_c_array(arr, types.int8):
        return None

    def codegen(context, builder, sig, args):
        bytes_type = ir.VectorType(_i8, LANES)
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.sext(builder.load(builder.bitcast(ptr, ir.PointerType(bytes_type)), align=1), _V)
    return int32x16(arr, off), codegen


@intrinsic
def splat_int(typingctx, value):
    """int32(value) in every lane."""
    if not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        return _splat(builder, context.cast(builder, args[0], sig.args[0], types.int32), _V)
    return int32x16(value), codegen


@intrinsic
def multiply_add(typingctx, acc, a, b):
    """acc + a * b, lane by lane (int32, wrapping: the callers' sums stay in range)."""
    if not acc == a == b == int32x16:
        return None

    def codegen(context, builder, sig, args):
        return builder.add(args[0], builder.mul(args[1], args[2]))
    return int32x16(acc, a, b), codegen


@intrinsic
def add_lanes(typingctx, a, b):
    """a + b, lane by lane (int32)."""
    if not a == b == int32x16:
        return None

    def codegen(context, builder, sig, args):
        return builder.add(args[0], args[1])
    return int32x16(a, b), codegen


@intrinsic
def subtract(typingctx, a, b):
    """a - b, lane by lane (int32)."""
    if not a == b == int32x16:
        return None

    def codegen(context, builder, sig, args):
        return builder.sub(args[0], args[1])
    return int32x16(a, b), codegen


# ---------------------------------------------------------------- 64 channels of bytes at a time (depthwise)
# A depthwise convolution sums over taps, not channels: interleave_taps puts the bytes of four taps
# of each channel side by side, so that one vpdpbusd sums four taps of sixteen channels. The
# unpacking works within each 128-bit quarter of the register, so vector v of its four holds the
# channels 16q + 4v + k (quarter q, lane k); pack_levels' saturating packs undo that order.

def _shuffle(builder, a, b, bits, pick):
    """a's and b's 512 bits as `bits`-bit lanes (b's numbered after a's), in the order `pick`."""
    lanes = ir.VectorType(ir.IntType(bits), 512 // bits)
    return builder.shuffle_vector(builder.bitcast(a, lanes), builder.bitcast(b, lanes),
                                  ir.Constant(ir.VectorType(_i32, len(pick)), pick))


@intrinsic
def interleave_taps(typingctx, t0, t1, t2, t3):
    """Four taps' 64 channels of bytes (each an Int32Vector of 64 bytes) as four Int32Vectors whose
    lane k of quarter q holds the four taps' bytes of channel 16q + 4v + k, v = 0, 1, 2, 3."""
    if not t0 == t1 == t2 == t3 == int32x16:
        return None
    result = types.UniTuple(int32x16, 4)

    def codegen(context, builder, sig, args):
        def pairs(high):  # bytes (t_a c, t_b c) for the channels 16q + 8 * high + i, i < 8
            return [index for q in range(4) for i in range(8) for index in (16 * q + 8 * high + i, 64 + 16 * q + 8 * high + i)]
        low01, high01 = _shuffle(builder, args[0], args[1], 8, pairs(0)), _shuffle(builder, args[0], args[1], 8, pairs(1))
        low23, high23 = _shuffle(builder, args[2], args[3], 8, pairs(0)), _shuffle(builder, args[2], args[3], 8, pairs(1))

        def quads(a, b, high):  # words (t01 c, t23 c) for the channels of a's words 4 * high + k, k < 4
            return builder.bitcast(_shuffle(builder, a, b, 16, [index for q in range(4) for k in range(4)
                                                                 for index in (8 * q + 4 * high + k, 32 + 8 * q + 4 * high + k)]), _V)
        vectors = [quads(low01, low23, 0), quads(low01, low23, 1), quads(high01, high23, 0), quads(high01, high23, 1)]
        return context.make_tuple(builder, result, vectors)
    return result(t0, t1, t2, t3), codegen


@intrinsic
def pack_levels(typingctx, a, b, c, d):
    """The levels (0..255) of interleave_taps' four vectors' channels as 64 bytes in channel order."""
    if not a == b == c == d == int32x16:
        return None

    def codegen(context, builder, sig, args):
        if HAS_VNNI:  # AVX512BW's saturating packs, within each quarter
            words = ir.VectorType(ir.IntType(16), 32)
            pack_words = _llvm_function(builder, "llvm.x86.avx512.packusdw.512", words, [_V, _V])
            pack_bytes = _llvm_function(builder, "llvm.x86.avx512.packuswb.512", ir.VectorType(_i8, 64), [words, words])
            ab, cd = builder.call(pack_words, [args[0], args[1]]), builder.call(pack_words, [args[2], args[3]])
            return builder.bitcast(builder.call(pack_bytes, [ab, cd]), _V)
        # elsewhere the same bytes by truncation (the levels need no saturation) and shuffles

        def pack(lower, upper, width, pick):  # lower's and upper's lanes as `width`-bit, in the order pick
            narrow = ir.VectorType(ir.IntType(width), lower.type.count)
            return builder.shuffle_vector(builder.trunc(lower, narrow), builder.trunc(upper, narrow),
                                          ir.Constant(ir.VectorType(_i32, len(pick)), pick))
        quarter_words = [index for q in range(4) for index in [*range(4 * q, 4 * q + 4), *range(16 + 4 * q, 20 + 4 * q)]]
        ab, cd = pack(args[0], args[1], 16, quarter_words), pack(args[2], args[3], 16, quarter_words)
        packed = pack(ab, cd, 8, [index for q in range(4) for index in [*range(8 * q, 8 * q + 8), *range(32 + 8 * q, 40 + 8 * q)]])
        return builder.bitcast(packed, _V)
    return int32x16(a, b, c, d), codegen


@intrinsic
def load_bytes(typingctx, arr, off, count):
    """arr[off:off + count] of a uint8 array, count <= 64, as 64 bytes (0 after count)."""
    if not _is_c_array(arr, types.uint8):
        return None

    def codegen(context, builder, sig, args):
        bytes_type = ir.VectorType(_i8, 64)
        ptr = builder.bitcast(_element_pointer(context, builder, sig.args[0], args[0], args[1]), ir.PointerType(bytes_type))
        load = _llvm_function(builder, "llvm.masked.load.v64i8.p0", bytes_type,
                              [ptr.type, _i32, ir.VectorType(ir.IntType(1), 64), bytes_type])
        loaded = builder.call(load, [ptr, ir.Constant(_i32, 1), _lane_mask(builder, args[2], 64), ir.Constant(bytes_type, None)])
        return builder.bitcast(loaded, _V)
    return int32x16(arr, off, count), codegen


@intrinsic
def store_packed(typingctx, out, off, packed, count):
    """out[off:off + count] = the first count of the 64 bytes `packed` (a uint8 array, count <= 64)."""
    if not (_is_c_array(out, types.uint8) and packed == int32x16):
        return None

    def codegen(context, builder, sig, args):
        bytes_type = ir.VectorType(_i8, 64)
        ptr = builder.bitcast(_element_pointer(context, builder, sig.args[0], args[0], args[1]), ir.PointerType(bytes_type))
        store = _llvm_function(builder, "llvm.masked.store.v64i8.p0", ir.VoidType(),
                               [bytes_type, ptr.type, _i32, ir.VectorType(ir.IntType(1), 64)])
        builder.call(store, [builder.bitcast(args[2], bytes_type), ptr, ir.Constant(_i32, 1), _lane_mask(builder, args[3], 64)])
        return context.get_dummy_value()
    return types.none(out, off, packed, count), codegen
