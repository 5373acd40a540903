"""DICOM radiographs written with pydicom: photometric interpretation, rescale, bits stored,
VOI window, spacing, collimation, and one-line refusals (also through `xmatch match`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from drrgen.errors import UserError
from xmatch_train.cli import app
from xmatch_train.match import prepare, read_image
from xmatch_train.testing import write_dicom


def _body(h=48, w=40, seed=0) -> np.ndarray:
    """12-bit stored values of a limb-like image: dark air, brighter tissue, a bright bone."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w]
    img = 300 + 40 * rng.random((h, w))
    img[:, 8:32] += 1200
    img[:, 16:24] += 1800 + 10 * y[:, 16:24]
    return np.round(img).astype(np.uint16)  # (h, w), < 4096


def test_monochrome1_is_inverted_to_the_monochrome2_image(tmp_path):
    stored = _body()
    m2 = read_image(write_dicom(tmp_path / "m2.dcm", stored))
    m1 = read_image(
        write_dicom(tmp_path / "m1.dcm", 4095 - stored, PhotometricInterpretation="MONOCHROME1")
    )
    assert m1.inverted and not m2.inverted
    np.testing.assert_array_equal(m1.pixels, m2.pixels - 4095)  # bone bright in both
    np.testing.assert_allclose(prepare(m1, 32).image, prepare(m2, 32).image, atol=1e-6)


def test_rescale_slope_and_intercept_are_applied(tmp_path):
    stored = _body()
    image = read_image(
        write_dicom(tmp_path / "r.dcm", stored, RescaleSlope=0.5, RescaleIntercept=-1024)
    )
    np.testing.assert_allclose(image.pixels, 0.5 * stored - 1024)


def test_12_bits_stored_in_16_ignore_the_unused_high_bits(tmp_path):
    stored = _body()
    garbage = stored | np.uint16(0xB000)  # overlay bits above bit 11
    image = read_image(write_dicom(tmp_path / "g.dcm", garbage))
    assert image.bits == 12
    np.testing.assert_array_equal(image.pixels, stored)


def test_signed_12_bit_values_are_sign_extended(tmp_path):
    values = np.array([[-2048, -5], [100, 2047]], np.int16)
    raw = (values.view(np.uint16) & 0x0FFF).astype(np.int16)  # 12-bit two's complement
    image = read_image(write_dicom(tmp_path / "s.dcm", raw, PixelRepresentation=1))
    np.testing.assert_array_equal(image.pixels, values)


def test_the_file_window_is_applied(tmp_path):
    stored = _body()
    image = read_image(write_dicom(tmp_path / "w.dcm", stored, WindowCenter=2000, WindowWidth=1000))
    assert image.voi == "window 2000/1000"
    air, bone = image.pixels[:, :4], image.pixels[:, 16:24]
    assert np.ptp(air) == 0 and air.max() < bone.min()  # air below the window: one value


def test_spacings_are_read_row_col(tmp_path):
    path = write_dicom(
        tmp_path / "p.dcm", _body(), PixelSpacing=[0.15, 0.16], ImagerPixelSpacing=[0.2, 0.21]
    )
    image = read_image(path)
    assert image.pixel_spacing_mm == (0.15, 0.16)
    assert image.imager_pixel_spacing_mm == (0.2, 0.21)
    assert read_image(write_dicom(tmp_path / "n.dcm", _body())).pixel_spacing_mm is None


@pytest.mark.parametrize(
    "stored, elements, reason",
    [
        (np.stack([_body()] * 2), dict(NumberOfFrames=2), "multi-frame DICOM (2 frames)"),
        (
            np.zeros((8, 8, 3)),
            dict(
                SamplesPerPixel=3,
                PhotometricInterpretation="RGB",
                PlanarConfiguration=0,
                BitsAllocated=8,
                BitsStored=8,
                HighBit=7,
            ),
            "colour DICOM (SamplesPerPixel 3, RGB)",
        ),
        (_body(), dict(Modality="CT"), "DICOM modality CT is not a projection radiograph"),
        (_body(), dict(Modality="MR"), "DICOM modality MR is not a projection radiograph"),
    ],
    ids=["multi-frame", "colour", "ct", "mr"],
)
def test_what_is_not_one_grey_radiograph_is_refused(tmp_path, stored, elements, reason):
    path = write_dicom(tmp_path / "bad.dcm", stored, **elements)
    with pytest.raises(UserError) as err:
        read_image(path)
    assert str(err.value).startswith(f"{path}: {reason}")


def test_an_unreadable_dicom_is_named(tmp_path):
    path = tmp_path / "broken.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    with pytest.raises(UserError, match=f"^{path}: "):
        read_image(path)


def _cli(args):
    return CliRunner().invoke(app, ["match", *map(str, args)])


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("multi-frame", "multi-frame DICOM (3 frames)"),
        ("colour", "colour DICOM"),
        ("ct", "DICOM modality CT is not a projection radiograph"),
        ("missing", "file not found"),
        ("unreadable", "cannot read"),
    ],
)
def test_the_cli_refuses_bad_dicom_files_in_one_line(tmp_path, tiny_run, kind, reason):
    good = write_dicom(tmp_path / "good.dcm", _body())
    bad = tmp_path / f"{kind}.dcm"
    if kind == "multi-frame":
        write_dicom(bad, np.stack([_body()] * 3), NumberOfFrames=3)
    elif kind == "colour":
        rgb = dict(SamplesPerPixel=3, PhotometricInterpretation="RGB", PlanarConfiguration=0)
        write_dicom(bad, np.zeros((8, 8, 3)), BitsAllocated=8, BitsStored=8, HighBit=7, **rgb)
    elif kind == "ct":
        write_dicom(bad, _body(), Modality="CT")
    elif kind == "unreadable":
        bad.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)
    result = _cli([good, bad, "--run", tiny_run, "--out", tmp_path / "out"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith(f"error: {bad}: {reason}"), lines


def test_the_cli_records_spacing_and_crops_the_shutter_of_a_dicom_pair(tmp_path, tiny_run):
    shutter = np.full((64, 56), 4095, np.uint16)  # collimated: no dose, white in MONOCHROME2
    shutter[6:54, 8:48] = _body()
    a = write_dicom(tmp_path / "a.dcm", shutter, ImagerPixelSpacing=[0.139, 0.139])
    b = write_dicom(
        tmp_path / "b.dcm", 4095 - _body(seed=1), PhotometricInterpretation="MONOCHROME1"
    )
    out = tmp_path / "out"
    result = _cli([a, b, "--run", tiny_run, "--out", out])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "matches.json").read_text())
    assert record["a"]["imager_pixel_spacing_mm"] == [0.139, 0.139]
    assert record["a"]["pixel_spacing_mm"] is None
    assert record["a"]["visible_box"] == [8, 6, 48, 54]  # x0, y0, x1, y1 inside the shutter
    assert record["b"]["inverted"] and record["b"]["photometric"] == "MONOCHROME1"
    for entry in record["patches"]:
        x0, y0, x1, y1 = entry["box_a"]
        assert 8 <= x0 < x1 <= 48 and 6 <= y0 < y1 <= 54


def _pydicom_cr() -> Path | None:
    """A CR image pydicom ships in its own test data (no download), if this version has it."""
    import pydicom

    path = Path(pydicom.__file__).parent / "data/test_files/dicomdirtests/77654033/CR1/6154"
    return path if path.is_file() else None


@pytest.mark.skipif(_pydicom_cr() is None, reason="pydicom ships no CR test file offline here")
def test_a_real_cr_file_from_pydicom_is_read():
    image = read_image(_pydicom_cr())
    assert image.modality == "CR" and image.photometric == "MONOCHROME1" and image.inverted
    assert image.bits == 12 and image.imager_pixel_spacing_mm == (0.1, 0.1)
    assert image.voi is not None and prepare(image, 32).image.shape == (32, 32)
