"""A Numba compiler pipeline that promises LLVM the array arguments never overlap."""

from __future__ import annotations

from numba.core.compiler import Compiler


class NoAliasCompiler(Compiler):
    """Numba's default pipeline with every pointer argument marked ``noalias``.

    Why: a loop that gathers from one array (``flat[index[l]]``) and stores to another
    (``acc[l] += ...``) is vectorised by LLVM only when it knows the two never overlap; it
    cannot check that at run time for indirect reads, so without this promise the loop over
    neighbouring rays stays scalar (about 3x slower). Numba sets the same flag on the bodies of
    ``prange`` loops whose arrays it proved distinct.

    Callers must keep the promise: an array the function writes never shares memory with
    another argument (LLVM's ``noalias`` only constrains memory that is modified, so read-only
    inputs may share a buffer).
    """

    def define_pipelines(self):
        self.state.flags.noalias = True
        return super().define_pipelines()
