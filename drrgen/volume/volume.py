"""The `Volume`: a CT-like 3-D array with the affine that places it in physical space.

Conventions:
    * `data` is float32 indexed ``[k, j, i]`` (z, y, x), C-contiguous.
    * `affine` (4, 4) float64 maps voxel indices ``(i, j, k, 1)`` to the physical frame of
      SimpleITK (LPS, mm): ``affine[:3, :3] = direction @ diag(spacing)``,
      ``affine[:3, 3] = origin``. The centre of voxel (i, j, k) sits at ``affine @ (i, j, k, 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HU_AIR = -1000.0


def counts_of(values: np.ndarray, scale: float) -> np.ndarray:
    """float64 counts ``round(values / scale)`` clipped to [0, 65535]: the 16-bit steps the
    projector reads for values >= 0 (`projector.kernels.value_scale`). In float64 each count
    is within half a step of its value exactly (a float32 quotient could round the other way)."""
    counts = np.divide(values, scale, dtype=np.float64)
    return np.clip(np.rint(counts, out=counts), 0, 65535, out=counts)


# Slices per block of `Volume.axis_major` (a power of 2).
SLICE_BLOCK = 32
# Zeros after the projector's flattened layout: its row loads read up to 32 values from a
# row's start (`Volume.axis_major_buffer`), and a uint16 count is read as the 32-bit word
# that starts at it (`intrinsics.load_at`).
LAYOUT_SLACK = 32


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D scalar field on a (possibly rotated, anisotropic) voxel grid.

    Args:
        data: (nk, nj, ni) float32 values (HU for CTs, 1/mm after `to_mu`).
        affine: (4, 4) voxel index (i, j, k) -> physical LPS mm.
        source: where the volume came from (a path, or a description), for error messages.
    """

    data: np.ndarray
    affine: np.ndarray
    source: str = ""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        data = np.asarray(self.data, dtype=np.float32)  # crops stay views of their parent
        affine = np.asarray(self.affine, dtype=np.float64)
        if data.ndim != 3:
            raise ValueError(f"{self.source or 'volume'}: data must be 3-D, got shape {data.shape}")
        if affine.shape != (4, 4):
            raise ValueError(f"{self.source or 'volume'}: affine must be 4x4, got {affine.shape}")
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "affine", affine)

    def memo(self, key, compute):
        """``compute()`` once per volume object and `key` (derived arrays: layouts, grids).

        Args:
            key: hashable key naming what is cached and its parameters.
            compute: zero-argument function returning the value.
        """
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        """Grid size as (ni, nj, nk)."""
        nk, nj, ni = self.data.shape
        return ni, nj, nk

    @property
    def spacing(self) -> np.ndarray:
        """(3,) voxel size in mm along i, j, k."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def direction(self) -> np.ndarray:
        """(3, 3) direction cosines; column c is the unit LPS direction of index axis c."""
        return self.affine[:3, :3] / self.spacing

    @property
    def origin(self) -> np.ndarray:
        """(3,) LPS mm position of voxel (0, 0, 0)."""
        return self.affine[:3, 3].copy()

    @property
    def center(self) -> np.ndarray:
        """(3,) LPS mm position of the grid centre."""
        return self.index_to_world((np.array(self.shape_ijk) - 1) / 2.0)

    def index_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """Map (..., 3) voxel indices (i, j, k) to (..., 3) LPS mm."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Map (..., 3) LPS mm to (..., 3) fractional voxel indices (i, j, k)."""
        xyz = np.asarray(xyz, dtype=np.float64)
        inv = np.linalg.inv(self.affine)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    def crop(self, start, stop) -> Volume:
        """Sub-volume of the voxel box [start, stop) given in (i, j, k) order.

        The affine is shifted so that every kept voxel stays at its physical position.
        """
        start = np.clip(np.asarray(start, dtype=np.int64), 0, self.shape_ijk)
        stop = np.clip(np.asarray(stop, dtype=np.int64), 0, self.shape_ijk)
        if np.any(stop <= start):
            raise ValueError(
                f"{self.source or 'volume'}: empty crop {start.tolist()}..{stop.tolist()}"
            )
        (i0, j0, k0), (i1, j1, k1) = start, stop
        affine = self.affine.copy()
        affine[:3, 3] = self.index_to_world(start.astype(np.float64))
        root, offset = self.root
        sub = Volume(self.data[k0:k1, j0:j1, i0:i1], affine, self.source)
        # No copy: the projector reads the root's cached layouts inside this box.
        sub._cache["root"] = (root, offset + start)
        return sub

    @property
    def root(self) -> tuple[Volume, np.ndarray]:
        """(volume this one was cropped from, (3,) int64 (i, j, k) offset of our voxel 0 in it)."""
        return self._cache.get("root", (self, np.zeros(3, dtype=np.int64)))

    def to_mu(self, mu_water: float = 0.02) -> Volume:
        """HU -> linear attenuation ``mu = mu_water * max(0, 1 + HU / 1000)``, mu_water in 1/mm."""
        # In place on one temporary: the same float32 operations, a third of the memory traffic.
        mu = self.data / np.float32(1000)
        mu += np.float32(1)
        np.maximum(mu, np.float32(0), out=mu)
        mu *= np.float32(mu_water)
        return Volume(mu, self.affine, self.source)

    def axis_major_shape(self, axis: int, slices_inner: bool = False) -> tuple[int, int, int, int]:
        """Shape of `axis_major(axis)`: (n_blocks, n_b + 3, SLICE_BLOCK, n_a + 3), or with
        `slices_inner` (n_blocks, n_b + 3, n_a + 3, SLICE_BLOCK)."""
        n = self.shape_ijk
        a, b = [c for c in range(3) if c != axis]
        if slices_inner:
            return (-(-n[axis] // SLICE_BLOCK), n[b] + 3, n[a] + 3, SLICE_BLOCK)
        return (-(-n[axis] // SLICE_BLOCK), n[b] + 3, SLICE_BLOCK, n[a] + 3)

    def axis_major(self, axis: int, slices_inner: bool = False) -> np.ndarray:
        """The data laid out for rays whose dominant index axis is `axis` (0=i, 1=j, 2=k).

        Returns a float32 array of `axis_major_shape` (n_blocks, n_b + 3, B, n_a + 3), with
        B = SLICE_BLOCK, a < b the two other index axes and n_blocks = ceil(n_axis / B), whose
        entry [m // B, b + 1, m % B, a + 1] is the value of voxel m, a, b along (axis, a, b).
        A block holds B consecutive slices, row b of each after the other, so the rays of a
        band of detector lines stepping through one block read one contiguous stretch of
        memory that hardware prefetchers follow; within a slice, a row along a is contiguous,
        so the neighbouring rays of a group load it with a few vector loads instead of
        gathering voxel by voxel. The zero border (one in front, two behind, and slices past
        n_axis) lets the projector clamp coordinates instead of branching. Cached per axis and
        layout: every view and crop of one volume share the copies (one per axis for the
        layout the CPU uses; a volume read as 16-bit counts uses the counts buffer of
        `axis_major_buffer` instead). The array is the start of `axis_major_buffer(axis)`.

        With `slices_inner` the entry is [m // B, b + 1, a + 1, m % B]: a voxel's B slices of
        a block side by side, for the gathering kernels (CPUs without AVX-512, and Intel CPUs
        with fast gathers: `projector.kernels.layout_choice`), where a gathered cache line
        then serves the next 15 slices of the same ray.
        """
        key = ("axis_major", axis, slices_inner)
        if key not in self._cache:
            shape = self.axis_major_shape(axis, slices_inner)
            flat = self.axis_major_buffer(axis, slices_inner)
            self._cache[key] = flat[: np.prod(shape)].reshape(shape)
        return self._cache[key]

    def axis_major_buffer(
        self, axis: int, slices_inner: bool = False, scale: float | None = None
    ) -> np.ndarray:
        """`axis_major(axis)` flattened, followed by LAYOUT_SLACK zeros: the projector's input.

        The projector loads a window of 2 x 16 values from the start of the row segment its
        16 rays need, which may run past the last row: the slack keeps those loads inside the
        allocation (their extra values are never used).

        With `scale`, counts ``round(value / scale)`` clipped to [0, 65535] instead of float32
        values (`projector.kernels.value_scale`), filled block by block without a float32
        copy of the layout: uint16 on the row layout; on the slices-inner layout uint32 words,
        the count of entry i in the low half and that of entry i + B (the neighbour along a)
        in the high half.
        """
        if scale is not None:
            return self.memo(
                ("axis_major_buffer", axis, slices_inner, scale),
                lambda: self._fill_counts(axis, slices_inner, scale),
            )

        def make():
            return self._fill_layout(axis, slices_inner, np.float32, None)

        return self.memo(("axis_major_buffer", axis, slices_inner), make)

    def _fill_counts(self, axis: int, slices_inner: bool, scale: float) -> np.ndarray:
        """A new counts `axis_major_buffer`: uint16 on the row layout; on the slices-inner
        layout uint32 words holding the counts of a voxel (low half) and of its neighbour
        along a (high half), the pair one bilinear lerp reads (`intrinsics.load_pair`)."""
        if not slices_inner:
            return self._fill_layout(axis, False, np.uint16, scale)
        words = self._fill_layout(axis, True, np.uint32, scale)  # counts in the low halves
        w_a = self.axis_major_shape(axis, True)[3]  # the layout's stride along a
        # In place, a chunk at a time (temporaries of a few MiB, not a second layout: fresh
        # large arrays page-fault slowly). A word already paired shifts its high half out,
        # so the order of the chunks does not matter.
        n, step = words.size - w_a, 1 << 20
        for i in range(0, n, step):
            j = min(i + step, n)
            words[i:j] |= words[i + w_a : j + w_a] << np.uint32(16)
        return words

    def _fill_layout(self, axis: int, slices_inner: bool, dtype, scale: float | None):
        """A new `axis_major_buffer` of dtype: float32 values (scale None) or counts."""
        a, b = [c for c in range(3) if c != axis]
        # data is [k, j, i]: array axis of index axis c is 2 - c.
        arr = np.transpose(self.data, (2 - b, 2 - axis, 2 - a))
        n_b, n_m, n_a = arr.shape
        shape = self.axis_major_shape(axis, slices_inner)
        buf = np.zeros(int(np.prod(shape)) + LAYOUT_SLACK, dtype=dtype)
        out = buf[: buf.size - LAYOUT_SLACK].reshape(shape)
        if slices_inner:  # view it as (n_blocks, b, B, a) to fill it the same way
            out = out.transpose(0, 1, 3, 2)
        inner = out[:, 1 : n_b + 1, :, 1 : n_a + 1]
        for blk in range(-(-n_m // SLICE_BLOCK)):
            part = arr[:, blk * SLICE_BLOCK : (blk + 1) * SLICE_BLOCK]  # (n_b, <= B, n_a)
            if scale is not None:  # a block at a time: a float64 temporary of B slices
                part = counts_of(part, scale)
            inner[blk, :, : part.shape[1]] = part
        return buf
