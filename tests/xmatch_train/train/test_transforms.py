"""Display transform and augmentations; flips/rotations checked against re-simulated views."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import zarr

from drrgen.correspondence import correspondence
from drrgen.geometry.carm import carm_view
from drrgen.geometry.view import View
from drrgen.projector import project
from xmatch_train.data import (
    AugmentConfig,
    GridOp,
    PairStream,
    StreamOptions,
    make_loader,
    photometric,
    read_meta,
    sample_mask,
    to_display,
)
from xmatch_train.data.batch import display
from xmatch_train.data.batch import photometric as torch_photometric
from xmatch_train.data.transforms import DisplayConfig, downsample, draw_photometric
from xmatch_train.testing import toy_volume

OPS = [GridOp(h, v, r) for h, v, r in itertools.product([False, True], [False, True], range(4))]


def test_display_is_windowed_monotone_and_robust():
    rng = np.random.default_rng(0)
    li = rng.uniform(0, 3, size=(64, 64)).astype(np.float16)
    img = to_display(li)
    assert img.dtype == np.float32 and img.min() == 0 and img.max() == 1
    flat = li.astype(np.float32).ravel()
    order = np.argsort(flat, kind="stable")
    assert np.all(np.diff(img.ravel()[order]) >= 0)  # more attenuation -> brighter
    hot = li.copy()
    hot[0, 0] = 60.0  # one hot pixel does not change the window
    np.testing.assert_allclose(to_display(hot)[1:], img[1:], atol=0.02)
    absorbed = to_display(li, DisplayConfig(mode="absorbed"))
    assert absorbed.min() == 0 and absorbed.max() == 1
    assert np.all(np.diff(absorbed.ravel()[order]) >= 0)
    with pytest.raises(ValueError, match="display mode"):
        to_display(li, DisplayConfig(mode="gamma"))


def test_photometric_draws_stay_in_range_and_match_the_batch_version():
    img = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    rng = np.random.default_rng(1)
    params = draw_photometric(rng, AugmentConfig(brightness=0.3, contrast=0.5))
    assert params[2] == 0 and params.tolist() != [1.0, 0.0, 0.0]
    out = photometric(img, params)
    assert out.min() >= 0 and out.max() <= 1 and not np.allclose(out, img)
    inv = draw_photometric(rng, AugmentConfig(invert=1.0))
    np.testing.assert_allclose(photometric(img, inv), 1 - img)
    both = torch_photometric(
        torch.from_numpy(np.stack([img, img])[:, None]), torch.from_numpy(np.stack([params, inv]))
    )
    np.testing.assert_allclose(both[0, 0].numpy(), out, atol=1e-6)
    np.testing.assert_allclose(both[1, 0].numpy(), 1 - img, atol=1e-6)
    np.testing.assert_array_equal(downsample(img, 2)[0, 0], img[:2, :2].mean())


def test_batch_display_matches_the_numpy_reference():
    rng = np.random.default_rng(2)
    li = rng.gamma(2.0, 0.5, size=(3, 1, 64, 64)).astype(np.float16)
    for mode in ("log", "absorbed"):
        cfg = DisplayConfig(mode=mode)
        got = display(torch.from_numpy(li), cfg).numpy()
        for b in range(3):
            np.testing.assert_allclose(got[b, 0], to_display(li[b, 0], cfg), atol=1e-5)


@pytest.mark.parametrize("op", OPS, ids=str)
def test_patch_permutation_and_geometry_follow_the_image(op):
    grid, patch = (4, 4), 8
    ids = np.repeat(np.repeat(np.arange(16).reshape(grid), patch, 0), patch, 1)  # patch id image
    moved = op.apply(ids)
    np.testing.assert_array_equal(moved[::patch, ::patch].ravel(), op.patch_permutation(grid))
    view = carm_view(30, 10, pixel_mm=0.7, shape=(32, 32))
    new = View.from_vector(op.geometry(view.as_vector(), view.shape), view.shape)
    np.testing.assert_allclose(new.pixel_centers(), op.apply(view.pixel_centers()), atol=1e-9)


@pytest.fixture(scope="module")
def scene():
    vol = toy_volume(3)
    views = [
        carm_view(
            p, s, pixel_mm=0.75, shape=(64, 64), source_to_detector_mm=1500, isocenter=vol.center
        )
        for p, s in ((5, 0), (95, 10))
    ]
    return vol, views


@pytest.mark.parametrize(
    "which,op",
    [
        (0, GridOp(hflip=True)),
        (1, GridOp(vflip=True)),
        (0, GridOp(rot=1)),
        (1, GridOp(hflip=True, rot=3)),
    ],
    ids=["hflip-view0", "vflip-view1", "rot90-view0", "hflip-rot270-view1"],
)
def test_augmented_pair_matches_resimulated_flipped_view(scene, which, op):
    """Flip/rotate one view in image space == render the flipped detector with drrgen."""
    vol, views = scene
    mu, patch = vol.to_mu(), 16
    corr = correspondence(vol, views, patch=patch)[0]
    image = project(mu, views[which])
    vec = views[which].as_vector()
    if op == GridOp(hflip=True):  # the definition: negate u
        s, d, u, v = vec[:3], vec[3:6], vec[6:9], vec[9:]
        flipped = View(s, d, -u, v, views[which].shape)
    else:
        flipped = View.from_vector(op.geometry(vec, views[which].shape), views[which].shape)
    resim_views = list(views)
    resim_views[which] = flipped
    np.testing.assert_allclose(project(mu, flipped), op.apply(image), rtol=1e-5, atol=1e-5)
    resim = correspondence(vol, resim_views, patch=patch)[0]
    perm = op.patch_permutation((64 // patch, 64 // patch))
    augmented = corr[perm, :] if which == 0 else corr[:, perm]
    assert corr.max() > 0.5 and (corr > 0.2).mean() > 0.02  # a non-trivial matrix
    np.testing.assert_allclose(resim, augmented, atol=1e-5)
    assert not np.allclose(resim, corr)  # the flip really moved patches


def test_stream_applies_flips_consistently(store):
    group = zarr.open_group(store, mode="r")
    meta = read_meta(store)
    options = StreamOptions(batch_size=4, augment=AugmentConfig(hflip=1.0), buffer=0)
    ds = PairStream([meta], [sample_mask(meta, None)], options)
    raw = next(iter(make_loader(ds)))
    perm = GridOp(hflip=True).patch_permutation(meta.grid)
    for b in range(4):
        (i, j), s = raw["info"][b, :2].tolist(), int(raw["info"][b, 4])
        c = group["corr"][s, 0]
        c = c.T if i > j else c
        np.testing.assert_array_equal(raw["corr_0to1"][b].numpy(), c[perm][:, perm])
        np.testing.assert_array_equal(raw["drr"][b, 0].numpy(), group["views"][s, i][:, ::-1])
        np.testing.assert_array_equal(raw["drr"][b, 1].numpy(), group["views"][s, j][:, ::-1])
