"""Reading PNG / JPEG / TIFF images and preparing them as the model's input: bit depths,
colour, refusals naming the file, the square fit, the window, borders, patch boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from drrgen.errors import UserError
from xmatch_train.data.transforms import DisplayConfig, to_display
from xmatch_train.match import collimation_box, prepare, read_image, write_png
from xmatch_train.match.images import Radiograph
from xmatch_train.match.preprocess import resize


def _ramp(h=40, w=60, top=1.0):
    y, x = np.mgrid[:h, :w]
    return (x + 2 * y) / (w + 2 * h) * top  # (h, w), no two rows alike


def test_png_8_and_16_bit_keep_their_grey_values(tmp_path):
    grey8 = np.round(_ramp(top=255)).astype(np.uint8)
    Image.fromarray(grey8).save(tmp_path / "g8.png")
    grey16 = np.round(_ramp(top=65535)).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    r8, r16 = read_image(tmp_path / "g8.png"), read_image(tmp_path / "g16.png")
    assert (r8.bits, r16.bits) == (8, 16) and r8.format == r16.format == "png"
    np.testing.assert_array_equal(r8.pixels, grey8.astype(np.float32))
    np.testing.assert_array_equal(r16.pixels, grey16.astype(np.float32))
    assert r16.pixels.max() > 60000 and r8.pixels.dtype == np.float32


def test_rgb_jpeg_and_16_bit_tiff_are_read_as_grey(tmp_path):
    grey = np.round(_ramp(top=255)).astype(np.uint8)
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "c.jpg", quality=95)
    grey16 = np.round(_ramp(top=4095)).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "t.tif")
    jpg, tif = read_image(tmp_path / "c.jpg"), read_image(tmp_path / "t.tif")
    assert jpg.pixels.shape == (40, 60) and np.abs(jpg.pixels - grey).max() <= 4
    assert tif.format == "tiff" and tif.bits == 16
    np.testing.assert_array_equal(tif.pixels, grey16)


def test_write_png_scales_a_drr_linearly_over_16_bits(tmp_path):
    drr = _ramp(top=3.7).astype(np.float32)
    back = read_image(write_png(drr, tmp_path / "d.png")).pixels
    np.testing.assert_allclose(back / 65535 * drr.max(), drr, atol=drr.max() / 65535)  # min 0


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: None, "file not found"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: p.write_bytes(b"not an image at all" * 10), "cannot read the image"),
        (lambda p: Image.new("L", (8, 8), 7).save(p, format="PNG"), "constant image"),
    ],
    ids=["missing", "folder", "garbage", "constant"],
)
def test_bad_files_are_named_with_the_reason(tmp_path, make, reason):
    path = tmp_path / "x.png"
    make(path)
    with pytest.raises(UserError, match=reason) as err:
        read_image(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_a_multi_page_tiff_is_refused(tmp_path):
    pages = [Image.fromarray(np.round(_ramp(top=200)).astype(np.uint8)) for _ in range(2)]
    pages[0].save(tmp_path / "m.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(UserError, match="2 frames or pages"):
        read_image(tmp_path / "m.tif")


def _image(pixels, path="x.png"):
    return Radiograph(np.asarray(pixels, np.float32), path, "png")


def test_a_square_drr_is_prepared_exactly_as_the_training_transform_does():
    drr = np.random.default_rng(0).gamma(2.0, 0.5, (128, 128)).astype(np.float32)
    display = DisplayConfig()
    p = prepare(_image(drr * 1234.5 + 7), 64, display)  # any increasing affine grey map
    expected = F.avg_pool2d(torch.from_numpy(to_display(drr, display))[None, None], 2)[0, 0]
    np.testing.assert_allclose(p.image, expected.numpy(), atol=2e-5)
    assert p.frame.scale == 2.0 and p.frame.offset == (0.0, 0.0)


def test_pad_keeps_the_whole_image_centred_with_black_margins():
    tall = _ramp(h=100, w=50)
    p = prepare(_image(tall), 20, fit="pad")  # square side 100, 5 original px per model px
    assert p.frame.scale == 5.0 and p.frame.offset == (0.0, -25.0)
    assert p.image[:, :5].max() == 0.0 and p.image[:, 15:].max() == 0.0
    assert p.image[:, 5:15].max() == 1.0
    assert p.frame.visible == (0, 100, 0, 50)
    grid = (4, 4)  # 25 original px per patch
    assert p.frame.patch_box(1, grid) == [0.0, 0.0, 25.0, 25.0]  # clipped on the left
    assert p.frame.patch_box(0, grid) is None  # all margin
    assert p.frame.inside(grid).reshape(4, 4).all(axis=0).tolist() == [False, True, True, False]


def test_crop_keeps_the_centred_square():
    wide = _ramp(h=50, w=100)
    p = prepare(_image(wide), 25, fit="crop")
    assert p.frame.visible == (0, 50, 25, 75) and p.frame.offset == (0.0, 25.0)
    assert p.frame.patch_box(0, (5, 5)) == [25.0, 0.0, 35.0, 10.0]


@pytest.mark.parametrize("fit", ["pad", "crop"])
def test_every_pixel_lies_in_the_box_of_the_patch_it_falls_in(fit):
    p = prepare(_image(_ramp(h=97, w=61)), 32, fit=fit)
    grid = (8, 8)
    rng = np.random.default_rng(1)
    y0, y1, x0, x1 = p.frame.visible
    for x, y in zip(rng.integers(x0, x1, 200), rng.integers(y0, y1, 200), strict=True):
        bx0, by0, bx1, by1 = p.frame.patch_box(p.frame.patch_at(x, y, grid), grid)
        assert bx0 <= x + 0.5 <= bx1 and by0 <= y + 0.5 <= by1
    assert p.frame.patch_at(x1 + 3, y0, grid) is None


def test_resize_pools_integer_factors_and_interpolates_others():
    x = np.random.default_rng(2).random((96, 96)).astype(np.float32)
    pooled = x.reshape(32, 3, 32, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(resize(x, 32), pooled, atol=1e-6)
    assert resize(x, 40).shape == (40, 40) and resize(x[:20, :20], 32).shape == (32, 32)


def test_collimation_bands_are_cropped_only_when_obvious():
    body = 100 + 50 * np.random.default_rng(3).random((80, 60))
    img = np.full((100, 90), 4000.0)  # bright shutter on every side
    img[8:88, 20:80] = body
    assert collimation_box(img) == (8, 88, 20, 80)
    assert collimation_box(body) == (0, 80, 0, 60)  # nothing to crop
    thin = np.full((100, 90), 4000.0)
    thin[40:60, 30:60] = body[:20, :30]  # would keep under half of each side: not obvious
    assert collimation_box(thin) == (0, 100, 0, 90)
    p = prepare(_image(img), 20, borders=True)
    assert p.frame.visible == (8, 88, 20, 80) and p.window[1] < 200
