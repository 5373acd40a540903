"""`drrgen phantom` and `drrgen data` from the command line."""

from typer.testing import CliRunner

from drrgen.cli import app
from drrgen.volume import read_ct


def test_phantom_command(tmp_path):
    args = ["phantom", "--out", str(tmp_path), "--count", "3", "--seed", "4", "--kind", "hand"]
    result = CliRunner().invoke(
        app, args + ["--shape", "40", "44", "48", "--spacing", "3", "3", "3"]
    )
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.glob("phantom_*.nii.gz"))
    assert [f.name for f in files] == [f"phantom_{n:03d}.nii.gz" for n in range(3)]
    vol = read_ct(files[0])
    assert vol.shape_ijk == (40, 44, 48)
    assert abs(vol.spacing - 3.0).max() < 1e-6
    assert "hand seed=4" in result.output


def test_data_command_without_network(tmp_path):
    args = ["data", "--out", str(tmp_path / "ct"), "--phantoms", "1", "--no-cxr"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1 CT volumes" in result.output and "(1 new)" in result.output
    assert (tmp_path / "ct" / "phantom_000.nii.gz").is_file()
    rerun = CliRunner().invoke(app, args)
    assert "(0 new)" in rerun.output
