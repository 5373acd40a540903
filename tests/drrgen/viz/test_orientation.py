import numpy as np
from typer.testing import CliRunner

from drrgen.cli import app
from drrgen.geometry import carm_view
from drrgen.phantoms import make_phantom
from drrgen.viz import direction_label
from drrgen.volume import write_ct


def test_direction_labels_follow_lps():
    assert direction_label([1, 0, 0]) == "L" and direction_label([-1, 0, 0]) == "R"
    assert direction_label([0, 1, 0]) == "P" and direction_label([0, 0, -1]) == "I"
    assert direction_label([0.0, 0.7, 0.7]) in ("PS", "SP")
    ap = carm_view(0, 0)
    # AP as radiographs are read: patient's left on the right edge, feet at the bottom edge.
    assert direction_label(ap.u) == "L" and direction_label(ap.v) == "I"
    lateral = carm_view(90, 0)
    assert direction_label(lateral.u) == "P"


def test_render_writes_a_labelled_png(tmp_path):
    path = tmp_path / "hand.nii.gz"
    write_ct(make_phantom(3, shape=(48, 48, 64), kind="hand"), path)
    out = tmp_path / "drr.png"
    result = CliRunner().invoke(
        app, ["render", str(path), "--out", str(out), "--size", "64", "--primary", "0,90", "--npy"]
    )
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 5000
    drrs = np.load(out.with_suffix(".npy"))
    assert drrs.shape == (2, 64, 64) and drrs.max() > 0.5
