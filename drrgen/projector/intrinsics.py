"""32-bit index arithmetic, loads and row-load steps for the projector's loops (LLVM intrinsics).

Why: Numba widens every integer operation to 64 bits, so the gathers in the step loops get
64-bit indices: x86 then gathers 8 floats per instruction (``vgatherqps``) and needs 64-bit
multiplies. With the index computed in 32 bits and sign-extended right at the address, LLVM
emits ``vgatherdps`` and ``vpmulld`` instead (16 % faster per sample on data in cache).
The caller guarantees that every index fits in int32 (`project` checks the layout's size).

`row_step` replaces the gathers where it can on the row layout: gathers cost per element on
AMD Zen cores (about 1.6x slower per DRR than row loads there), while a group's 16 rays read a
row segment that two vector loads cover (one for uint16 counts). Intel CPUs whose gathers
are fast gather on the slices-inner layout instead: `fast_gathers` tells them apart
(`kernels.slices_inner`).
"""

from __future__ import annotations

import functools

from llvmlite import ir
from numba.core import cgutils, config, types
from numba.extending import intrinsic


def _all_int32(*tys) -> bool:
    return all(t == types.int32 for t in tys)


@intrinsic
def index32(typingctx, ib, ia, w_b, shift_a, base):
    """``ib * w_b + (ia << shift_a) + base`` in int32 arithmetic (all arguments int32)."""
    if not _all_int32(ib, ia, w_b, shift_a, base):
        return None  # a typing error: no silent narrowing of 64-bit or float arguments
    sig = types.int32(types.int32, types.int32, types.int32, types.int32, types.int32)

    def codegen(context, builder, signature, args):
        ib, ia, w_b, shift_a, base = args
        rows = builder.mul(ib, w_b, flags=["nsw"])
        cols = builder.shl(ia, shift_a, flags=["nsw"])
        return builder.add(builder.add(rows, cols, flags=["nsw"]), base, flags=["nsw"])

    return sig, codegen


def _is_layout(arr, dtypes=(types.float32, types.uint16, types.uint32)) -> bool:
    """A projector layout: a C-contiguous 1-D array of float32 values, uint16 counts or
    uint32 pairs of counts (`Volume.axis_major_buffer`)."""
    return (
        isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C" and arr.dtype in dtypes
    )


def _address(context, builder, arr, args):
    """The pointer to ``arr[index + delta]`` (args: array, index, delta), bounds-checked
    under NUMBA_BOUNDSCHECK."""
    ary = context.make_array(arr)(context, builder, args[0])
    pos = builder.sext(builder.add(args[1], args[2], flags=["nsw"]), ir.IntType(64))
    if config.BOUNDSCHECK:
        cgutils.do_boundscheck(context, builder, pos, ary.nitems)
    return builder.gep(ary.data, [pos], inbounds=True)


def _value(builder, dtype, ptr):
    """float32 of the value or count at `ptr`: uint16 counts are read as the 32-bit word that
    starts at the count, keeping its low half (x86 gathers 32-bit elements only, a 16-bit
    gather would be scalarised, and takes a 2-byte scale in its address; the upper half is
    the next count or, past the last one, the layout's slack)."""
    if dtype == types.float32:
        return builder.load(ptr)
    i32 = ir.IntType(32)
    word = builder.load(builder.bitcast(ptr, i32.as_pointer()))
    word.align = 2
    return builder.sitofp(builder.and_(word, ir.Constant(i32, 0xFFFF)), ir.FloatType())


@intrinsic
def load_at(typingctx, arr, index, delta):
    """``float32(arr[index + delta])`` for a float32 or uint16 layout, int32 `index`, `delta`.

    No wraparound for negative indices and no bounds check unless Numba's bounds checking is
    on when the caller compiles (``NUMBA_BOUNDSCHECK=1`` with a fresh ``NUMBA_CACHE_DIR``:
    cached machine code keeps the setting it was built with). The address is
    ``data + sext(index + delta)``, the form x86 gathers take 32-bit indices in. Every uint16
    count (`kernels.value_scale`) converts to float32 exactly; it is read as a 32-bit word,
    so the array needs one element after the index (the layouts' LAYOUT_SLACK), which the
    bounds check does not cover.
    """
    if not (_is_layout(arr, (types.float32, types.uint16)) and _all_int32(index, delta)):
        return None
    sig = types.float32(arr, types.int32, types.int32)

    def codegen(context, builder, signature, args):
        return _value(builder, arr.dtype, _address(context, builder, arr, args))

    return sig, codegen


@intrinsic
def load_pair(typingctx, arr, index, delta, w_a):
    """``(f[i], f[i + w_a])`` as float32 for ``i = index + delta``: a voxel and its neighbour
    along a, the two values one bilinear lerp needs (all int32 arguments).

    From a float32 or uint16 layout these are two loads (`load_at`). A uint32 layout holds
    both as one word, count i in its low half and count i + w_a in its high half
    (`Volume.axis_major_buffer`): one load, so the step loops gather 2 words per sample
    instead of 4 values.
    """
    if not (_is_layout(arr) and _all_int32(index, delta, w_a)):
        return None
    sig = types.UniTuple(types.float32, 2)(arr, types.int32, types.int32, types.int32)

    def codegen(context, builder, signature, args):
        array, index, delta, w_a = args
        ptr = _address(context, builder, arr, (array, index, delta))
        if arr.dtype == types.uint32:
            i32, f32 = ir.IntType(32), ir.FloatType()
            word = builder.load(ptr)
            lo = builder.sitofp(builder.and_(word, ir.Constant(i32, 0xFFFF)), f32)
            hi = builder.sitofp(builder.lshr(word, ir.Constant(i32, 16)), f32)
        else:
            # The second address as `load_at` forms it (index + (delta + w_a)): the offset
            # is loop-invariant, and the gather keeps its 32-bit index form.
            far = builder.add(delta, w_a, flags=["nsw"])
            lo = _value(builder, arr.dtype, ptr)
            hi = _value(builder, arr.dtype, _address(context, builder, arr, (array, index, far)))
        return context.make_tuple(builder, signature.return_type, [lo, hi])

    return sig, codegen


# Rays per `row_step` (one 512-bit vector of float32): the projector's LANES.
ROW_LANES = 16
# Most rows apart that the rays of one step may sample (b of the first and last ray); more
# falls back to gathers. An oblique view's group spans up to 4.
_MAX_ROW_SPREAD = 6
# The window of two 16-float loads holds a and a + 1 for a within 30 of the first ray's a.
_MAX_A_SPAN = 2 * ROW_LANES - 2
_PERMUTE = "llvm.x86.avx512.vpermi2var.ps.512"


def _has_avx512(context) -> bool:
    """Whether the code Numba compiles now may use AVX-512F (its target's feature string)."""
    features = getattr(context.codegen(), "_tm_features", "") or ""
    return "+avx512f" in features.split(",")


@functools.cache
def target_has_avx512() -> bool:
    """Whether Numba's CPU target (the host, or NUMBA_CPU_NAME/FEATURES) has AVX-512F, i.e.
    whether `row_step` compiles to row loads rather than to a constant False. Fixed for the
    process: asked once, not on every `project` call."""
    from numba.core.registry import cpu_target

    return _has_avx512(cpu_target.target_context)


_GDS = "/sys/devices/system/cpu/vulnerabilities/gather_data_sampling"


@functools.cache
def fast_gathers(cpuinfo: str = "/proc/cpuinfo", gds_status: str = _GDS) -> bool:
    """Whether this CPU's vector gathers are fast: an Intel CPU without the microcode
    mitigation of Gather Data Sampling (Downfall), which makes every gather slow.

    Why it matters: on such CPUs gathering from the slices-inner layout beats row loads,
    1.1-1.4x per DRR on a whole 256^3 CT at 1 thread (1.03-1.33x at 2) and 1.24-1.32x in DRR
    CPU per pair in builds (Xeon, model 207, 2026-12-06); on AMD Zen 4, whose gathers cost
    per element, it is 0.56-1.00x. Only a kernel report of "Not affected" or "Vulnerable"
    counts: "Unknown" (a VM whose host may mitigate), no report (an old kernel, BIOS microcode
    unknown), other vendors or no /proc/cpuinfo (not Linux) give False, and AVX-512 CPUs then
    keep the row layout (CPUs without AVX-512 gather on the slices-inner layout whatever
    this says). The paths are parameters for tests.
    """
    vendor, gds = "", ""
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            vendor = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("vendor_id")), ""
            )
        with open(gds_status, encoding="utf-8") as f:
            gds = f.read().strip()
    except OSError:
        pass
    return vendor == "GenuineIntel" and gds.startswith(("Not affected", "Vulnerable"))


def _declare(module, name, fnty):
    return module.globals.get(name) or ir.Function(module, fnty, name)


@intrinsic
def row_step(typingctx, flat, base, w_b, kf, a0, da, b0, db, acc):
    """One interior Joseph step of ROW_LANES rays from row loads; False where it cannot.

    The same sample as the gather loop of `kernels._interior_steps`, op for op (so bitwise
    the same sums): ``acc += bilinear(flat, a0 + kf da, b0 + kf db)`` per lane, with the
    layout ``flat[base + b w_b + a]`` (`Volume.axis_major`, a contiguous along a row). The
    four neighbours of every lane come from the rows b_first .. b_first + spread + 1: each row
    is two 16-float loads from the smallest a of the first and last lanes (one load of 32
    counts for a uint16 layout, widened to float32 exactly as `load_at` does), and a
    ``vpermi2ps`` picks every lane's a and a + 1. Returns False, touching nothing, when the
    lanes span more than 30 voxels along a or more than 6 rows, or when the target lacks
    AVX-512F or for a uint32 layout (then always: the caller gathers). Arrays a0, da, b0, db
    and acc hold ROW_LANES float32; `flat` is a float32 or uint16 row layout.
    """
    lane_arrays = (a0, da, b0, db, acc)
    if not all(isinstance(x, types.Array) and x.ndim == 1 and x.layout == "C" for x in lane_arrays):
        return None
    if not (_is_layout(flat) and all(x.dtype == types.float32 for x in lane_arrays)):
        return None
    if not (_all_int32(base, w_b) and kf == types.float32):
        return None
    sig = types.boolean(flat, types.int32, types.int32, types.float32, a0, da, b0, db, acc)

    def codegen(context, builder, signature, args):
        if not _has_avx512(context) or flat.dtype == types.uint32:  # pairs: slices-inner only
            return ir.Constant(ir.IntType(1), 0)
        n = ROW_LANES
        f32, i32, i64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)
        vf, vi = ir.VectorType(f32, n), ir.VectorType(i32, n)
        fm = ["contract"]  # as the gather loop's fastmath={"contract"}: the same FMAs

        def data(i):
            return context.make_array(signature.args[i])(context, builder, args[i]).data

        def vload(ptr):
            v = builder.load(builder.bitcast(ptr, vf.as_pointer()))
            v.align = 4
            return v

        def splat(x, ty):
            one = builder.insert_element(ir.Constant(ty, ir.Undefined), x, ir.Constant(i32, 0))
            return builder.shuffle_vector(
                one, ir.Constant(ty, ir.Undefined), ir.Constant(vi, [0] * n)
            )

        def ends(v, pick):  # min or max of the first and last lanes
            x, y = (
                builder.extract_element(v, ir.Constant(i32, 0)),
                builder.extract_element(v, ir.Constant(i32, n - 1)),
            )
            return builder.select(builder.icmp_signed(pick, x, y), x, y)

        def all_true(mask):
            fnty = ir.FunctionType(ir.IntType(1), [mask.type])
            return builder.call(
                _declare(builder.module, "llvm.vector.reduce.and.v16i1", fnty), [mask]
            )

        flat_v, base_v, w_b_v, kf_v = args[:4]
        a0v, dav, b0v, dbv = (vload(data(i)) for i in (4, 5, 6, 7))
        kfv = splat(kf_v, vf)
        pa = builder.fadd(a0v, builder.fmul(kfv, dav, flags=fm), flags=fm)
        pb = builder.fadd(b0v, builder.fmul(kfv, dbv, flags=fm), flags=fm)
        ia, ib = builder.fptosi(pa, vi), builder.fptosi(pb, vi)
        fa, fb = builder.fsub(pa, builder.sitofp(ia, vf)), builder.fsub(pb, builder.sitofp(ib, vf))
        a_lo, b_lo = ends(ia, "<"), ends(ib, "<")
        rel_a, rel_b = builder.sub(ia, splat(a_lo, vi)), builder.sub(ib, splat(b_lo, vi))
        spread = ends(rel_b, ">")
        # Unsigned compares: a lane below the first/last lanes' minimum fails too.
        ok = builder.and_(
            all_true(builder.icmp_unsigned("<=", rel_a, ir.Constant(vi, [_MAX_A_SPAN] * n))),
            all_true(builder.icmp_unsigned("<=", rel_b, splat(spread, vi))),
        )
        ok = builder.and_(
            ok, builder.icmp_unsigned("<=", spread, ir.Constant(i32, _MAX_ROW_SPREAD))
        )
        with builder.if_then(ok, likely=True):
            permute = _declare(builder.module, _PERMUTE, ir.FunctionType(vf, [vf, vi, vf]))
            rel_a1 = builder.add(rel_a, ir.Constant(vi, [1] * n))
            fdata = data(0)
            # f00, f01 (row b), f10, f11 (row b + 1); SROA keeps them in registers.
            slots = [cgutils.alloca_once(builder, vf) for _ in range(4)]

            def row(r):
                start = builder.add(
                    builder.mul(builder.add(b_lo, ir.Constant(i32, r)), w_b_v), a_lo
                )
                ptr = builder.gep(
                    fdata, [builder.sext(builder.add(start, base_v), i64)], inbounds=True
                )
                lo, hi = (counts if flat.dtype == types.uint16 else floats)(ptr)
                return builder.call(permute, [lo, rel_a, hi]), builder.call(
                    permute, [lo, rel_a1, hi]
                )

            def floats(ptr):
                return vload(ptr), vload(builder.gep(ptr, [ir.Constant(i64, n)], inbounds=True))

            def counts(ptr):  # 32 uint16 in one load, widened to two vectors of float32
                vc = ir.VectorType(ir.IntType(16), 2 * n)
                both = builder.load(builder.bitcast(ptr, vc.as_pointer()))
                both.align = 2
                halves = (
                    builder.shuffle_vector(
                        both, ir.Constant(vc, ir.Undefined), ir.Constant(vi, list(range(h, h + n)))
                    )
                    for h in (0, n)
                )
                return tuple(builder.uitofp(builder.zext(x, vi), vf) for x in halves)

            def take(slot, lanes_at, value):
                builder.store(builder.select(lanes_at, value, builder.load(slot)), slot)

            for r in range(_MAX_ROW_SPREAD + 2):
                # Row r is row b of the lanes with rel_b == r and row b + 1 of those at r - 1.
                need = ir.Constant(ir.IntType(1), 1)
                if r > 1:
                    need = builder.icmp_unsigned(">=", spread, ir.Constant(i32, r - 1))
                with builder.if_then(need, likely=r < 2):
                    g0, g1 = row(r)
                    at = builder.icmp_unsigned("==", rel_b, ir.Constant(vi, [r] * n))
                    below = builder.icmp_unsigned("==", rel_b, ir.Constant(vi, [r - 1] * n))
                    if r == 0:
                        builder.store(g0, slots[0])
                        builder.store(g1, slots[1])
                    else:
                        take(slots[0], at, g0)
                        take(slots[1], at, g1)
                    if r == 1:
                        builder.store(g0, slots[2])
                        builder.store(g1, slots[3])
                    elif r > 1:
                        take(slots[2], below, g0)
                        take(slots[3], below, g1)
            f00, f01, f10, f11 = (builder.load(s) for s in slots)
            v0 = builder.fadd(f00, builder.fmul(fa, builder.fsub(f01, f00), flags=fm), flags=fm)
            v1 = builder.fadd(f10, builder.fmul(fa, builder.fsub(f11, f10), flags=fm), flags=fm)
            t = builder.fadd(v0, builder.fmul(fb, builder.fsub(v1, v0), flags=fm), flags=fm)
            acc_ptr = builder.bitcast(data(8), vf.as_pointer())
            acc_v = builder.load(acc_ptr)
            acc_v.align = 4
            builder.store(builder.fadd(acc_v, t, flags=fm), acc_ptr).align = 4
        return ok

    return sig, codegen
