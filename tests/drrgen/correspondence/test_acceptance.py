"""The issue's acceptance check on procedural limbs, rotated anisotropic grids, oblique views.

Both checks (`drrgen.correspondence.checks`) hold up to a small share of points / entries: a
coarse voxel's Joseph tent reaches one coarse voxel to each side and is sampled at 3 x 3
sub-rays per patch (see `SUPERSAMPLE`, `PATCH_FRACTION`). Measured with the defaults on these
cases: no bone point missed, at most 1.1 % of the strong entries unsupported (this phantom's
1.4 mm voxels give few tissue points per patch pair); the centre-ray, 3/4-patch setting it
replaced misses up to 1.5 % / 2.3 %.
"""

import numpy as np
import pytest

from drrgen.correspondence import correspondence
from drrgen.correspondence.checks import bone_miss_fraction, patch_index, unsupported_fraction
from drrgen.geometry import carm_view
from drrgen.phantoms import make_phantom
from drrgen.volume.volume import Volume

PATCH = 16


def _rotated(volume: Volume, deg=(20.0, -12.0)) -> Volume:
    """The volume turned about its centre (about z, then x): a grid with direction cosines."""
    a, b = np.deg2rad(deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    turn = np.eye(4)
    turn[:3, :3] = rx @ rz
    turn[:3, 3] = volume.center - turn[:3, :3] @ volume.center
    return Volume(volume.data, turn @ volume.affine, volume.source)


def test_patch_index_follows_the_pixel_convention():
    view = carm_view(0, 0, pixel_mm=1.0, shape=(64, 48))
    # Fractional (row, col) -> a point on the detector plane projecting there.
    rc = np.array([[0.0, 0.0], [15.49, 15.51], [-0.49, 47.49], [-0.51, 3.0], [10.0, 47.5]])
    xyz = view.detector_center + (rc[:, 1:2] - 23.5) * view.u + (rc[:, 0:1] - 31.5) * view.v
    idx, ok = patch_index(view, xyz, 16)
    np.testing.assert_array_equal(ok, [True, True, True, False, False])
    np.testing.assert_array_equal(idx[ok], [0, 1, 2])  # 3 patches per row


CASES = [
    # (phantom seed, kind, [(primary, secondary) per view])
    (0, "forearm", [(8, 175), (95, 170), (200, 188)]),
    (1, "hand", [(-10, 185), (60, 172), (265, 190)]),
]


# (definition, bone threshold, strong threshold, max unsupported share per pair, mean).
# The paper definition normalises each coarse voxel's footprint to peak 1, so a voxel near a
# patch border whose Joseph tent reaches the next patch lends it a large value: measured on
# these cases 5.8-12.7 % of the entries > 0.2 have no fine tissue voxel centre in both patches
# (the neighbour patch only), while 96-98 % of the geometric support is positive.
DEFINITIONS = [("peak", 0.01, 0.05, 0.02, 0.01), ("paper", 0.2, 0.2, 0.15, 0.1)]


@pytest.mark.parametrize("definition, bone_at, strong, worst, mean", DEFINITIONS)
@pytest.mark.parametrize("seed, kind, angles", CASES)
def test_bone_points_and_strong_entries_agree_with_the_pinhole_geometry(
    seed, kind, angles, definition, bone_at, strong, worst, mean
):
    volume = make_phantom(seed, shape=(96, 96, 112), spacing_mm=(1.3, 1.4, 1.5), kind=kind)
    volume = _rotated(volume)
    views = [
        carm_view(
            p, s, source_to_isocenter_mm=1000 + 30 * n, source_to_detector_mm=1800 + 60 * n,
            pixel_mm=1.0, shape=(256, 256), isocenter=volume.center + [4.0, -3.0, 6.0],
        )
        for n, (p, s) in enumerate(angles)
    ]  # fmt: skip
    c = correspondence(volume, views, definition=definition)
    pairs = [(0, 1), (0, 2), (1, 2)]
    unsupported = []
    for p, (i, j) in enumerate(pairs):
        bone = bone_miss_fraction(volume, views[i], views[j], c[p], threshold=bone_at)
        assert bone < 0.003
        unsupported.append(unsupported_fraction(volume, views[i], views[j], c[p], threshold=strong))
        assert unsupported[-1] < worst
        assert (c[p] >= strong).sum() > 50
    assert np.mean(unsupported) < mean
    # The checks see geometry errors: the transposed matrix or another pair's fails badly.
    assert bone_miss_fraction(volume, views[0], views[1], c[1]) > 0.3
    assert unsupported_fraction(volume, views[0], views[1], c[0].T) > 0.3
