import numpy as np
import pytest

from drrgen.geometry import View, carm_view


def test_vector_round_trip_and_pixel_centres():
    view = View([0, -1000, 0], [0, 500, 0], [1.5, 0, 0], [0, 0, -2.0], (4, 6))
    vec = view.as_vector()
    assert vec.shape == (12,)
    np.testing.assert_array_equal(View.from_vector(vec, (4, 6)).as_vector(), vec)
    centres = view.pixel_centers()
    assert centres.shape == (4, 6, 3)
    # Pixel (r, c) = d + (c - (W-1)/2) u + (r - (H-1)/2) v.
    np.testing.assert_allclose(centres[0, 0], [0 - 2.5 * 1.5, 500, 0 + 1.5 * 2.0])
    np.testing.assert_allclose(centres[3, 5] - centres[3, 4], [1.5, 0, 0])
    np.testing.assert_allclose(centres[3, 5] - centres[2, 5], [0, 0, -2.0])


def test_project_points_inverts_pixel_centres():
    view = carm_view(
        33,
        -12,
        source_to_isocenter_mm=900,
        source_to_detector_mm=1300,
        pixel_mm=(1.1, 0.9),
        shape=(20, 30),
        isocenter=(5, -3, 8),
    )
    centres = view.pixel_centers()
    # Any point on the ray from the source to a pixel centre projects to that pixel.
    pts = view.source + 0.6 * (centres - view.source)
    rc = view.project_points(pts)
    rows, cols = np.mgrid[0:20, 0:30]
    np.testing.assert_allclose(rc[..., 0], rows, atol=1e-9)
    np.testing.assert_allclose(rc[..., 1], cols, atol=1e-9)
    # Points behind the source do not project.
    assert np.isnan(view.project_points(view.source - (view.detector_center - view.source))).all()


def test_downsample_pixels_are_mean_of_fine_pixels():
    view = carm_view(20, 5, shape=(32, 48), pixel_mm=0.7)
    coarse = view.downsample(16)
    assert coarse.shape == (2, 3)
    fine = view.pixel_centers().reshape(2, 16, 3, 16, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(coarse.pixel_centers(), fine, atol=1e-9)
    with pytest.raises(ValueError, match="divisible"):
        view.downsample(5)


def test_carm_view_distances_and_central_ray():
    iso = np.array([10.0, -20.0, 30.0])
    view = carm_view(
        47,
        13,
        source_to_isocenter_mm=1000,
        source_to_detector_mm=1400,
        pixel_mm=0.5,
        shape=(10, 10),
        isocenter=iso,
    )
    assert np.isclose(np.linalg.norm(view.source - iso), 1000)
    assert np.isclose(np.linalg.norm(view.detector_center - view.source), 1400)
    beam = (view.detector_center - view.source) / 1400
    # u, v orthogonal, pixel-sized, perpendicular to the beam, and u x v along the beam.
    assert np.isclose(np.linalg.norm(view.u), 0.5) and np.isclose(np.linalg.norm(view.v), 0.5)
    assert abs(view.u @ view.v) < 1e-12 and abs(view.u @ beam) < 1e-12
    np.testing.assert_allclose(np.cross(view.u, view.v) / 0.25, beam, atol=1e-12)
    # The isocenter projects to the detector centre.
    np.testing.assert_allclose(view.project_points(iso), [4.5, 4.5], atol=1e-9)


@pytest.mark.parametrize(
    "primary, point, expect",
    [
        # AP: patient's left (+x) on the image right, superior (+z) at the top.
        (0, [50, 0, 0], "right"),
        (0, [0, 0, 50], "top"),
        # Lateral with the source on the patient's left: posterior (+y) on the image right.
        (90, [0, 50, 0], "right"),
        # PA: the patient's left is on the image left.
        (180, [50, 0, 0], "left"),
    ],
)
def test_carm_orientation(primary, point, expect):
    view = carm_view(primary, 0, shape=(100, 100))
    assert np.isclose(view.source[2], 0)
    row, col = view.project_points(np.array(point, float))
    centre = 49.5
    got = {"right": col > centre + 10, "left": col < centre - 10, "top": row < centre - 10}
    assert got[expect], (row, col)


def test_secondary_tilt_moves_source_towards_feet():
    view = carm_view(0, 15)
    assert view.source[2] < 0  # LPS +z is superior


def test_invalid_distances():
    with pytest.raises(ValueError, match="exceed"):
        carm_view(0, 0, source_to_isocenter_mm=1000, source_to_detector_mm=900)
