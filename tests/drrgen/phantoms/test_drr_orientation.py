"""An AP DRR of a phantom shows the limb vertically with its superior end at the top."""

import numpy as np
import pytest

from drrgen.geometry.carm import carm_view
from drrgen.phantoms import make_phantom

project = pytest.importorskip("drrgen.projector").project


@pytest.mark.parametrize("kind", ["forearm", "hand", "leg"])
def test_ap_view_is_vertical_and_superior_up(kind):
    vol = make_phantom(0, shape=(64, 64, 80), spacing_mm=(2.0, 2.0, 2.0), kind=kind)
    view = carm_view(0, 0, source_to_isocenter_mm=1000, source_to_detector_mm=1200,
                     pixel_mm=1.0, shape=(128, 128), isocenter=vol.center)  # fmt: skip
    drr = project(vol.to_mu(), view)
    # Bones: the brightest pixels lie along the image columns' direction (vertical).
    rows, cols = np.nonzero(drr > np.percentile(drr[drr > 0], 80))
    assert np.var(rows) > 3 * np.var(cols)
    # Row r of an AP view looks at height z decreasing with r (magnification 1.2 at the
    # isocenter): the DRR's row profile follows the volume's slice profile read from the
    # superior end down, and not the flipped one.
    slices = vol.to_mu().data.sum(axis=(1, 2))
    z = vol.center[2] - (np.arange(128) - 63.5) * 1.0 * 1000 / 1200
    k = (z - vol.origin[2]) / vol.spacing[2]
    nk = len(slices)
    up = np.corrcoef(np.interp(k, np.arange(nk), slices), drr.sum(axis=1))[0, 1]
    down = np.corrcoef(np.interp(nk - 1 - k, np.arange(nk), slices), drr.sum(axis=1))[0, 1]
    assert up > 0.9 and up > down + 0.2
