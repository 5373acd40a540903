"""A real CT resampled to an n^3 grid, shared by the benchmark scripts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

DEFAULT_CT = Path(__file__).resolve().parents[1] / "data" / "ct" / "cxr.nii.gz"


def cube_ct(ct: Path, n: int):
    """The CT at `ct` resampled (linear) to n^3 voxels over the same extent and orientation.

    Returns (HU `Volume` with the file's direction cosines, one-line description).
    """
    from drrgen.volume import read_ct
    from drrgen.volume.io import _to_volume, volume_to_image

    if ct.resolve() == DEFAULT_CT and not ct.exists():
        raise SystemExit(f"error: {ct}: no such file; `make data` writes the default CTs there")

    image = volume_to_image(read_ct(ct))
    size = np.array(image.GetSize())
    spacing = np.array(image.GetSpacing()) * size / n
    resampled = sitk.Resample(
        image,
        [n] * 3,
        sitk.Transform(),
        sitk.sitkLinear,
        image.GetOrigin(),
        spacing.tolist(),
        image.GetDirection(),
        -1000.0,
        sitk.sitkFloat32,
    )
    oblique = not np.allclose(np.reshape(image.GetDirection(), (3, 3)), np.eye(3))
    what = (
        f"{ct.name} {tuple(size.tolist())} resampled to {n}^3 "
        f"({spacing.round(3).tolist()} mm{', oblique axes' if oblique else ''})"
    )
    return _to_volume(ct, resampled), what
