"""Shared by the command-line error tests: tiny inputs and the one assertion they all make."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from drrgen.volume import Volume, write_ct


def assert_user_error(result, *names: str) -> str:
    """A user's mistake: exit code 2, exactly one line on stderr, ``error: ...`` naming each of
    `names`, and no traceback. Returns the line."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    for name in names:
        assert str(name) in line, (name, line)
    assert "Traceback" not in result.output
    return line


def tiny_volume() -> Volume:
    """24^3 voxels of 2 mm: soft tissue with a bone rod, in air."""
    k, j, i = np.mgrid[:24, :24, :24]
    data = np.full((24, 24, 24), -1000.0, np.float32)
    data[(i - 12) ** 2 + (j - 12) ** 2 < 64] = 40.0
    data[(i - 10) ** 2 + (j - 13) ** 2 < 6] = 1200.0
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    return Volume(data, affine, "tiny")


@pytest.fixture(scope="session")
def ct_file(tmp_path_factory):
    """A small, valid CT (NIfTI)."""
    return write_ct(tiny_volume(), tmp_path_factory.mktemp("ct") / "tiny.nii.gz")


@pytest.fixture(scope="session")
def png_as_nifti(tmp_path_factory):
    """A PNG photo named ``.nii.gz``."""
    root = tmp_path_factory.mktemp("png")
    image = sitk.GetImageFromArray(np.arange(32 * 32, dtype=np.uint8).reshape(32, 32))
    sitk.WriteImage(image, str(root / "photo.png"))
    return (root / "photo.png").rename(root / "photo.nii.gz")


@pytest.fixture
def a_file(tmp_path):
    """An existing plain file, where a folder is expected."""
    path = tmp_path / "not_a_folder"
    path.write_text("x", encoding="utf-8")
    return path
