"""The noalias compiler pipeline the projector's step kernels rely on for SIMD."""

import numpy as np
from numba import njit

from drrgen.projector.noalias import NoAliasCompiler


def _gather_add():
    """A fresh Python function each call, so each dispatcher compiles its own."""

    def gather_add(src, index, acc):
        for lane in range(acc.size):
            acc[lane] += src[index[lane]]

    return gather_add


def test_pointer_arguments_are_marked_noalias():
    # If a Numba upgrade stopped honouring the flag, the step kernels would silently fall back
    # to scalar code (about 3x slower): this fails first.
    plain = njit(_gather_add())
    promised = njit(pipeline_class=NoAliasCompiler)(_gather_add())
    args = (np.arange(8, dtype=np.float32), np.array([3, 1, 7], np.int64), np.zeros(3, np.float32))
    plain(*args)
    promised(*args)
    assert np.array_equal(args[2], 2 * np.array([3, 1, 7], np.float32))

    def array_args(fn):
        """The argument lists (after the always-noalias retptr, excinfo) of its definitions."""
        ir = next(iter(fn.inspect_llvm().values()))
        lines = [line for line in ir.splitlines() if line.startswith("define")]
        return [line.split("%excinfo")[-1] for line in lines if "gather_add" in line]

    # (the attribute, not this module's name, which the mangled symbols contain)
    assert array_args(plain) and not any("ptr noalias" in args for args in array_args(plain))
    assert any("ptr noalias" in args for args in array_args(promised))
