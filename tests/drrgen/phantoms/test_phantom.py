"""Procedural phantoms: deterministic, anatomically layered, oriented along LPS z."""

import numpy as np
import pytest
import scipy.ndimage as ndi
from typer.testing import CliRunner

from drrgen.phantoms import KINDS, kind_of, make_phantom, phantom_layout
from drrgen.volume import read_ct, write_ct

SMALL = {"shape": (48, 48, 64), "spacing_mm": (2.5, 2.5, 2.5)}  # the reference 120 x 120 x 160 mm


def _first_seed(kind: str, has, limit: int = 400) -> int:
    """The first seed whose layout satisfies `has` (cheap: no rendering)."""
    for seed in range(limit):
        if has(phantom_layout(seed, kind=kind)):
            return seed
    raise AssertionError(f"no {kind} seed below {limit}")


@pytest.fixture(scope="module", params=[("forearm", 0), ("forearm", 1), ("hand", 0), ("leg", 0)])
def clean(request):
    """Default-size phantoms without noise (distal forearm, elbow, hand, leg)."""
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
    assert phantom_layout(seed, kind=kind).metal is None
    assert hu.max() <= 1800.0


def test_long_bones_have_cortex_and_marrow(clean):
    kind, seed, vol = clean
    axial = vol.data[vol.data.shape[0] // 2]  # mid-shaft (forearm) or metacarpals (hand)
    cortex = axial > 800
    filled = ndi.binary_fill_holes(cortex)
    marrow = filled & ~cortex
    n_bones = ndi.label(filled)[1]
    assert n_bones >= {"forearm": 2, "hand": 4, "leg": 2}[kind]
    assert marrow.sum() > 20
    assert 75 < np.median(axial[marrow]) < 460


def test_joints_separate_the_bones(clean):
    kind, seed, vol = clean
    n_bones = ndi.label(ndi.binary_fill_holes(vol.data > 500))[1]
    assert n_bones >= {"forearm": 3, "hand": 15, "leg": 2}[kind]


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
    with pytest.raises(ValueError, match="unknown phantom kind 'skull'") as info:
        make_phantom(0, kind="skull")
    assert "forearm, hand, elbow, knee, leg, foot" in str(info.value)
    with pytest.raises(ValueError, match="unknown phantom kind"):
        phantom_layout(0, kind="mixed")
    with pytest.raises(ValueError, match="shape"):
        make_phantom(0, shape=(2, 40, 40))
    with pytest.raises(ValueError, match="seed"):
        make_phantom(-1)
    assert KINDS == ("forearm", "hand", "elbow", "knee", "leg", "foot")


def test_kind_of_cycles_through_every_kind():
    assert [kind_of(i) for i in range(2 * len(KINDS))] == list(KINDS) * 2


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders(kind):
    a = make_phantom(7, kind=kind, **SMALL)
    assert a.data.shape == (64, 48, 48) and a.data.dtype == np.float32
    assert a.source == f"phantom:{kind}:seed=7"
    np.testing.assert_array_equal(a.data, make_phantom(7, kind=kind, **SMALL).data)
    assert not np.array_equal(a.data, make_phantom(8, kind=kind, **SMALL).data)
    seed = _first_seed(kind, lambda limb: limb.cast is None and limb.metal is None)
    hu = make_phantom(seed, kind=kind, noise_hu=0, **SMALL).data
    assert hu.min() == pytest.approx(-1000.0)
    assert np.mean(hu == -1000.0) > 0.1, "air around the limb"
    assert np.mean((hu > 25) & (hu < 60)) > 1e-3, "soft tissue"  # little in a hand
    assert np.mean((hu > -125) & (hu < -75)) > 1e-3, "fat"
    assert hu.max() > 700 and np.mean(hu > 700) > 2e-4, "bone"  # thin in a hand at 2.5 mm
    assert hu.max() <= 1800.0
    assert ndi.label(hu[16:48] > 500)[1] >= 2, "separate bones in the middle half"


def test_seeds_vary_side_pose_and_size():
    for kind in KINDS:
        layouts = [phantom_layout(s, kind=kind) for s in range(16)]
        assert {limb.side for limb in layouts} == {"left", "right"}, kind
    flexion = [phantom_layout(s, kind="elbow").pose["flexion_deg"] for s in range(16)]
    assert min(flexion) < 30 and max(flexion) > 70
    knee = [phantom_layout(s, kind="knee").pose["flexion_deg"] for s in range(16)]
    assert min(knee) < 10 and max(knee) > 25
    ankle = [phantom_layout(s, kind="foot").pose["ankle_deg"] for s in range(16)]
    assert min(ankle) < 0 < 15 < max(ankle)  # dorsiflexed and plantarflexed feet
    widths = {
        round(float(np.ptp([r.a[0] for b in phantom_layout(s, kind="knee").bones
                            for r in b.rods])), 1)
        for s in range(8)
    }  # fmt: skip
    assert len(widths) == 8


def _lateral_offset(vol) -> float:
    """x (mm) of the smaller of the two largest bones in the middle slice minus the larger's:
    the fibula's offset from the tibia."""
    axial = ndi.binary_fill_holes(vol.data[vol.data.shape[0] // 2] > 500)
    labels, n = ndi.label(axial)
    sizes = ndi.sum(axial, labels, range(1, n + 1))
    big, small = np.argsort(sizes)[::-1][:2] + 1
    x = vol.origin[0] + np.arange(axial.shape[1]) * vol.spacing[0]
    centroid = [np.mean(x[np.nonzero(labels == lab)[1]]) for lab in (small, big)]
    return float(centroid[0] - centroid[1])


def test_right_legs_are_mirrored():
    # The fibula is lateral: at +x (patient left) of the tibia in a left leg, at -x in a right.
    left = _first_seed("leg", lambda limb: limb.side == "left")
    right = _first_seed("leg", lambda limb: limb.side == "right")
    shape = {"shape": (64, 64, 80), "spacing_mm": (2.0, 2.0, 2.0), "noise_hu": 0}
    assert _lateral_offset(make_phantom(left, kind="leg", **shape)) > 8.0
    assert _lateral_offset(make_phantom(right, kind="leg", **shape)) < -8.0


@pytest.mark.parametrize("kind", ["forearm", "knee", "foot"])
def test_some_seeds_have_a_cast(kind):
    seed = _first_seed(kind, lambda limb: limb.cast is not None and limb.metal is None)
    cast = phantom_layout(seed, kind=kind).cast
    assert 200 <= cast.hu <= 400 and 3.0 <= cast.thickness_mm <= 6.0
    hu = make_phantom(seed, kind=kind, noise_hu=0, **SMALL).data
    shell = np.abs(hu - cast.hu) < 1.0  # fully covered voxels have the cast's HU exactly
    assert shell.sum() > 300
    # The shell is the outermost layer: it borders air, and nothing else is that dense there.
    assert np.any(ndi.binary_dilation(shell, iterations=2) & (hu < -950.0))
    casts = sum(phantom_layout(s, kind=kind).cast is not None for s in range(200))
    assert 5 <= casts <= 40  # about 10 %
    # Without devices: the same limb, no cast.
    bare = make_phantom(seed, kind=kind, noise_hu=0, devices=False, **SMALL).data
    assert np.sum(np.abs(bare - cast.hu) < 1.0) < 0.1 * shell.sum()  # bone voxels, by chance
    inside = bare > -900
    bone = inside & (bare > 500)
    np.testing.assert_allclose(bare[bone], hu[bone], atol=0.05)  # float32 compositing order


@pytest.mark.parametrize("kind", ["hand", "leg"])
def test_some_seeds_have_metal_clipped_to_the_ct_range(kind):
    seed = _first_seed(kind, lambda limb: limb.metal is not None)
    metal = phantom_layout(seed, kind=kind).metal
    assert metal.hu > 2500 and len(metal.rods) > 6  # plate strands and screws
    vol = make_phantom(seed, shape=(80, 80, 100), spacing_mm=(1.6, 1.6, 1.6), kind=kind)
    assert vol.data.max() <= 3071.0  # noise included
    assert np.sum(vol.data > 2400) > 5
    if metal.hu > 3071:
        assert np.sum(vol.data == 3071.0) > 0  # saturated like a real CT
    implants = sum(phantom_layout(s, kind=kind).metal is not None for s in range(200))
    assert 1 <= implants <= 25  # about 5 %


def test_cli_mixed_cycles_kinds_and_draws_a_figure(tmp_path):
    pytest.importorskip("drrgen.projector")
    from drrgen.cli import app

    args = ["phantom", "--out", str(tmp_path), "--count", "3", "--seed", "4", "--kind", "mixed"]
    args += ["--shape", "24", "24", "32", "--spacing", "5", "5", "5"]
    result = CliRunner().invoke(app, args + ["--figure", str(tmp_path / "fig.png")])
    assert result.exit_code == 0, result.output
    for n, seed in enumerate(range(4, 7)):
        assert f"phantom_{n:03d}.nii.gz  {kind_of(seed)} seed={seed}" in result.output
    assert [kind_of(s) for s in range(4, 7)] == ["leg", "foot", "forearm"]
    png = (tmp_path / "fig.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(app, ["phantom", "--out", str(tmp_path), "--kind", "skull"])
    assert bad.exit_code != 0
