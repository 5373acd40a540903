"""The stand-in writer: counts, 16-bit images, points on true positives and negatives."""

from __future__ import annotations

import numpy as np
import zarr
from PIL import Image

from xmatch_train.corr_finetune import detector_image, read_annotations
from xmatch_train.corr_finetune.entries import point_patch
from xmatch_train.match import prepare, read_image


def test_it_writes_every_sample_with_the_counts(standin, standin_store):
    pairs = read_annotations(standin)
    assert len(pairs) == 12  # 3 phantoms x 4 samples
    assert all(len(p.positives) == 2 and len(p.negatives) == 5 for p in pairs)
    assert len({p.id for p in pairs}) == 12 and all(p.split is None for p in pairs)
    image = Image.open(pairs[0].image0)
    assert image.mode.startswith("I;16") and image.size == (128, 128)


def test_points_land_on_the_true_entries(standin, standin_store):
    group = zarr.open_group(standin_store, mode="r")
    for pair in read_annotations(standin)[:4]:
        corr = np.asarray(group["corr"][int(pair.id[4:]), 0])  # (16, 16)
        frames = [prepare(read_image(p), 64).frame for p in (pair.image0, pair.image1)]
        for points, ok in (
            (pair.positives, lambda c: c >= 0.2),
            (pair.negatives, lambda c: c == 0),
        ):
            for x0, y0, x1, y1 in points:
                a = point_patch(frames[0], x0, y0, (4, 4))
                b = point_patch(frames[1], x1, y1, (4, 4))
                assert ok(corr[a, b])


def test_detector_image_is_bone_bright_and_noisy():
    line = np.zeros((32, 32))
    line[:, 16:] = 2.0  # a thick absorber on the right
    rng = np.random.default_rng(0)
    img = detector_image(line, rng, photons=1e4).astype(float)
    assert img[:, 16:].mean() > img[:, :16].mean() + 30000
    assert img[:, 16:].std() > 0  # Poisson noise


def test_realistic_images_are_fixed_per_seed_and_look_like_radiographs():
    from xmatch_train.corr_finetune.standin import realistic_image

    line = np.zeros((64, 64), np.float32)
    line[:, 32:] = 2.0  # a thick absorber on the right
    a, b = realistic_image(line, [0, 1, 0]), realistic_image(line, [0, 1, 0])
    assert a.dtype == np.uint16 and a.shape == (64, 64)
    np.testing.assert_array_equal(a, b)  # one fixed draw per seed words
    assert not np.array_equal(a, realistic_image(line, [0, 2, 0]))
    assert np.median(a[16:48, 40:56]) > np.median(a[16:48, 8:24])  # bone bright
