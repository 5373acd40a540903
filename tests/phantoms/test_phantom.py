"""Procedural phantoms: deterministic, anatomically layered, oriented along LPS z."""

import numpy as np
import pytest
import scipy.ndimage as ndi

from drrgen.phantoms import KINDS, make_phantom
from drrgen.volume import read_ct, write_ct


@pytest.fixture(scope="module", params=[("forearm", 0), ("forearm", 1), ("hand", 0)])
def clean(request):
    """Default-size phantoms without noise (distal forearm, elbow, hand)."""
    kind, seed = request.param
    return kind, seed, make_phantom(seed, kind=kind, noise_hu=0)


def test_deterministic_per_seed():
    a = make_phantom(3, shape=(40, 40, 48), kind="hand")
    b = make_phantom(3, shape=(40, 40, 48), kind="hand")
    c = make_phantom(4, shape=(40, 40, 48), kind="hand")
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.affine, b.affine)
    assert not np.array_equal(a.data, c.data)
    assert not np.array_equal(a.origin, c.origin)


def test_grid_and_affine():
    vol = make_phantom(0, shape=(40, 48, 56), spacing_mm=(2.0, 1.5, 2.5), kind="forearm")
    assert vol.data.shape == (56, 48, 40) and vol.data.dtype == np.float32
    np.testing.assert_allclose(vol.affine[:3, :3], np.diag([2.0, 1.5, 2.5]))
    assert np.linalg.norm(vol.origin) > 1.0  # a non-trivial origin
    assert vol.source == "phantom:forearm:seed=0"


def test_tissue_classes(clean):
    kind, seed, vol = clean
    hu = vol.data
    assert hu.min() == pytest.approx(-1000.0)  # air around the limb
    assert np.all(hu[:, :, 0] == -1000.0)  # the limb does not fill the field of view sideways
    fractions = {
        "fat": np.mean((hu > -125) & (hu < -75)),
        "soft tissue": np.mean((hu > 25) & (hu < 60)),
        "marrow": np.mean((hu > 95) & (hu < 305)),
        "cortical": np.mean(hu > 1000),
    }
    for name, fraction in fractions.items():
        assert fraction > 1e-3, f"{kind} {seed}: no {name}"
    assert hu.max() <= 1800.0


def test_long_bones_have_cortex_and_marrow(clean):
    kind, seed, vol = clean
    axial = vol.data[vol.data.shape[0] // 2]  # mid-shaft (forearm) or metacarpals (hand)
    cortex = axial > 800
    filled = ndi.binary_fill_holes(cortex)
    marrow = filled & ~cortex
    n_bones = ndi.label(filled)[1]
    assert n_bones >= (2 if kind == "forearm" else 4)
    assert marrow.sum() > 20
    assert 90 < np.median(axial[marrow]) < 460


def test_joints_separate_the_bones(clean):
    kind, seed, vol = clean
    n_bones = ndi.label(ndi.binary_fill_holes(vol.data > 500))[1]
    assert n_bones >= {"forearm": 3, "hand": 15}[kind]


def test_long_axis_is_lps_z(clean):
    _, _, vol = clean
    k, j, i = np.nonzero(vol.data > 500)
    xyz = vol.index_to_world(np.stack([i, j, k], axis=1).astype(float))
    _, vectors = np.linalg.eigh(np.cov((xyz - xyz.mean(0)).T))
    assert abs(vectors[2, -1]) > 0.95


def test_bone_count_varies_with_seed():
    counts = {
        ndi.label(ndi.binary_fill_holes(make_phantom(s, kind="forearm", noise_hu=0).data > 500))[1]
        for s in range(2)
    }
    assert len(counts) == 2


def test_scales_to_small_fields_of_view():
    # Anatomy is sized for 128 x 128 x 160 mm; a 64 x 64 x 80 mm grid holds the same limb at
    # half size, so the limb fills the same fraction of the grid.
    big = make_phantom(1, kind="hand", noise_hu=0)
    small = make_phantom(1, shape=(32, 32, 40), spacing_mm=(2.0, 2.0, 2.0), kind="hand", noise_hu=0)
    ratio = np.mean(small.data > -500) / np.mean(big.data > -500)
    assert 0.9 < ratio < 1.15
    assert small.data.max() > 700  # bones survive the coarse grid


def test_noise_level():
    noisy = make_phantom(2, shape=(40, 40, 48), noise_hu=10.0)
    clean = make_phantom(2, shape=(40, 40, 48), noise_hu=0.0)
    assert np.std(noisy.data - clean.data) == pytest.approx(10.0, rel=0.05)


def test_written_phantom_passes_read_ct(tmp_path):
    vol = make_phantom(5, shape=(48, 48, 60), kind="hand")
    back = read_ct(write_ct(vol, tmp_path / "p.nii.gz"))
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown phantom kind"):
        make_phantom(0, kind="skull")
    with pytest.raises(ValueError, match="shape"):
        make_phantom(0, shape=(2, 40, 40))
    assert set(KINDS) == {"forearm", "hand"}
