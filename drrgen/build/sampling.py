"""Draw the samples of one block: a crop of the CT and V C-arm views centred on it.

Follows the paper's variations (projection angles, source distances, crops of the CT):

* crop: a box covering a uniform fraction (``crop_fraction``) of each voxel axis, placed
  uniformly inside the volume; boxes with under 1 % tissue are redrawn (up to 20 tries);
* isocenter: the crop's centre (LPS, mm); all V views of a sample share crop and isocenter;
* per view: primary angle = a standard angle (0/90/180/270 deg with probabilities
  0.4/0.3/0.2/0.1) + N(0, primary_sigma); secondary (cranio-caudal) tilt N(0, secondary_sigma)
  clipped to +- secondary_max; source-isocenter and isocenter-detector distances uniform in
  their ranges; pixel pitch such that the projected crop spans ``fill_fraction`` of the wider
  detector axis at the drawn magnification;
* a crop reaching behind the source of one of its views (a CT about as large as the
  source-isocenter distance) is redrawn with its views, up to 20 times, then the volume fails
  with the reason.

Every draw comes from ``numpy.random.default_rng([seed, volume_id, block_in_volume])``, so a
block's samples depend on nothing but the seed, the volume and the block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drrgen.errors import CTReadError
from drrgen.geometry import View, carm_view
from drrgen.geometry.poses import SamplingConfig, draw_pose
from drrgen.volume import Volume

POSE_FIELDS = (
    "primary_deg",
    "secondary_deg",
    "source_to_isocenter_mm",
    "source_to_detector_mm",
    "pixel_mm",
    "in_plane_deg",
)
MIN_TISSUE_FRACTION = 0.01
CROP_TRIES = 20
SAMPLE_TRIES = 20


@dataclass(frozen=True)
class Sample:
    """One sample: a voxel box and the views that image it.

    Args:
        start: (3,) int64 first voxel of the crop, (i, j, k).
        stop: (3,) int64 one past the last voxel, (i, j, k).
        views: V views in the volume's physical frame (LPS, mm).
        pose: (V, 6) float64 C-arm parameters per view, columns as `POSE_FIELDS`.
    """

    start: np.ndarray
    stop: np.ndarray
    views: tuple[View, ...]
    pose: np.ndarray


def block_rng(seed: int, volume_id: int, block_in_volume: int) -> np.random.Generator:
    """The generator of block `block_in_volume` of volume `volume_id`."""
    return np.random.default_rng([int(seed), int(volume_id), int(block_in_volume)])


@dataclass(frozen=True)
class TissueIndex:
    """Counts of tissue voxels (HU > air_threshold_hu) per cell of `cell`^3 voxels, summed.

    `lower_bound(start, stop)` counts the tissue in the cells fully inside a box: a cheap lower
    bound on the box's tissue voxels, used to reject crops of pure air.

    Args:
        table: (K + 1, J + 1, I + 1) int64 summed-area table over (k, j, i) cells.
        cell: cell size in voxels.
    """

    table: np.ndarray
    cell: int

    @classmethod
    def build(cls, hu: Volume, air_threshold_hu: float, cell: int = 4) -> TissueIndex:
        """Index of an HU volume (data (nk, nj, ni))."""
        nk, nj, ni = (max(1, s // cell) for s in hu.data.shape)
        data = hu.data
        if min(data.shape) < cell:
            cell = 1
            nk, nj, ni = data.shape
        block = data[: nk * cell, : nj * cell, : ni * cell] > air_threshold_hu
        counts = block.reshape(nk, cell, nj, cell, ni, cell).sum(axis=(1, 3, 5), dtype=np.int64)
        table = np.zeros((nk + 1, nj + 1, ni + 1), dtype=np.int64)
        table[1:, 1:, 1:] = counts.cumsum(0).cumsum(1).cumsum(2)
        return cls(table, cell)

    def lower_bound(self, start, stop) -> int:
        """Tissue voxels in the cells fully inside the box [start, stop) given as (i, j, k)."""
        lo = -(-np.asarray(start)[::-1] // self.cell)  # (k, j, i) ceil
        hi = np.asarray(stop)[::-1] // self.cell
        hi = np.minimum(hi, np.array(self.table.shape) - 1)
        if np.any(hi <= lo):
            return 0
        t = self.table
        (k0, j0, i0), (k1, j1, i1) = lo, hi
        return int(
            t[k1, j1, i1]
            - t[k0, j1, i1]
            - t[k1, j0, i1]
            - t[k1, j1, i0]
            + t[k0, j0, i1]
            + t[k0, j1, i0]
            + t[k1, j0, i0]
            - t[k0, j0, i0]
        )


def draw_crop(rng: np.random.Generator, shape_ijk, cfg: SamplingConfig, tissue=None):
    """A crop box ((3,) start, (3,) stop) in voxel (i, j, k), each axis >= 1 voxel.

    With a `TissueIndex`, boxes whose tissue lower bound is under 1 % of their voxels are
    redrawn; after `CROP_TRIES` the box with the most tissue is kept.
    """
    shape = np.asarray(shape_ijk, dtype=np.int64)
    best, best_tissue = None, -1.0
    for _ in range(CROP_TRIES):
        frac = rng.uniform(*cfg.crop_fraction, size=3)
        size = np.clip(np.rint(frac * shape).astype(np.int64), 1, shape)
        start = np.floor(rng.uniform(0.0, 1.0, size=3) * (shape - size + 1)).astype(np.int64)
        start = np.minimum(start, shape - size)
        if tissue is None:
            return start, start + size
        fraction = tissue.lower_bound(start, start + size) / float(np.prod(size))
        if fraction > best_tissue:
            best, best_tissue = (start, start + size), fraction
        if fraction >= MIN_TISSUE_FRACTION:
            break
    return best


def box_corners(volume: Volume, start, stop) -> np.ndarray:
    """(8, 3) LPS mm corners of the voxel box [start, stop) (outer voxel faces)."""
    lo = np.asarray(start, dtype=np.float64) - 0.5
    hi = np.asarray(stop, dtype=np.float64) - 0.5
    grid = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=np.float64)
    return volume.index_to_world(lo + grid * (hi - lo))


def fit_view(pose: dict, corners: np.ndarray, isocenter: np.ndarray, size: int) -> View | None:
    """The view of `pose` whose pixel pitch makes the projected `corners` span ``fill`` of the
    wider detector axis. Returns a (size, size) `View` and sets ``pose['pixel_mm']`` (mm), or
    None when a corner is not in front of the source (the view cannot image the crop)."""
    kwargs = dict(
        source_to_isocenter_mm=pose["source_to_isocenter_mm"],
        source_to_detector_mm=pose["source_to_detector_mm"],
        shape=(size, size),
        isocenter=isocenter,
        in_plane_deg=pose["in_plane_deg"],
    )
    unit = carm_view(pose["primary_deg"], pose["secondary_deg"], pixel_mm=1.0, **kwargs)
    if not in_front(unit, corners):
        return None
    rc = unit.project_points(corners)
    # At 1 mm pixels, pixels = mm on the detector. Perspective can put the projected crop off
    # the detector centre, so size it by its farthest corner from the centre, not its span.
    extent_mm = 2.0 * float(np.max(np.abs(rc - (size - 1) / 2.0)))
    pose["pixel_mm"] = extent_mm / (pose["fill"] * size)
    return carm_view(
        pose["primary_deg"], pose["secondary_deg"], pixel_mm=pose["pixel_mm"], **kwargs
    )


def in_front(view: View, points: np.ndarray) -> bool:
    """Whether every (n, 3) LPS mm point lies strictly in front of the view's source (positive
    depth along the detector normal, towards the detector)."""
    normal = np.cross(view.u, view.v)
    normal *= np.sign(normal @ (view.detector_center - view.source))
    return bool(np.all((points - view.source) @ normal > 0))


def draw_sample(
    rng,
    volume: Volume,
    n_views: int,
    size: int,
    cfg: SamplingConfig,
    tissue: TissueIndex | None = None,
) -> Sample:
    """One crop and `n_views` views of it (see the module docstring).

    A crop that reaches behind the source of a drawn view (a CT about as large as the
    source-isocenter distance) is redrawn with new views, up to `SAMPLE_TRIES` times.

    Raises:
        CTReadError: no draw fits (the volume is too large for the C-arm geometry).
    """
    for _ in range(SAMPLE_TRIES):
        start, stop = draw_crop(rng, volume.shape_ijk, cfg, tissue)
        isocenter = volume.index_to_world((start + stop - 1) / 2.0)
        corners = box_corners(volume, start, stop)
        views, rows = [], []
        for _ in range(n_views):
            pose = draw_pose(rng, cfg)
            view = fit_view(pose, corners, isocenter, size)
            if view is None:
                break
            views.append(view)
            rows.append([pose[name] for name in POSE_FIELDS])
        else:
            return Sample(start, stop, tuple(views), np.asarray(rows, dtype=np.float64))
    extent = np.asarray(volume.shape_ijk) * volume.spacing
    raise CTReadError(
        volume.source or "volume",
        f"too large for the C-arm: {' x '.join(f'{e:.0f}' for e in extent)} mm (spacing "
        f"{', '.join(f'{x:g}' for x in volume.spacing)} mm); in {SAMPLE_TRIES} draws no crop "
        f"lay in front of the X-ray source of every view (source-isocenter "
        f"{cfg.source_to_isocenter_mm[0]:g}-{cfg.source_to_isocenter_mm[1]:g} mm); check the "
        "voxel spacing, or lower sampling.crop_fraction=[lo,hi] or raise "
        "sampling.source_to_isocenter_mm=[lo,hi]",
    )


def sample_block(
    seed: int,
    volume_id: int,
    block_in_volume: int,
    n_samples: int,
    volume: Volume,
    n_views: int,
    size: int,
    cfg: SamplingConfig,
    tissue: TissueIndex | None = None,
) -> list[Sample]:
    """The `n_samples` samples of one block, drawn from `block_rng(seed, volume_id, block)`.

    Args:
        seed: the build seed.
        volume_id: index of the volume in the store's volume table.
        block_in_volume: index of the block among the volume's blocks.
        n_samples: samples in the block.
        volume: the CT (only its shape and affine are used, plus `tissue` if given).
        n_views: V views per sample.
        size: detector size in pixels (H = W).
        cfg: sampling ranges.
        tissue: optional `TissueIndex` to avoid crops of pure air.
    """
    rng = block_rng(seed, volume_id, block_in_volume)
    return [draw_sample(rng, volume, n_views, size, cfg, tissue) for _ in range(n_samples)]
