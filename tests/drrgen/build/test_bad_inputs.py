"""Bad CTs are reported by file and reason, recorded in the store, and do not stop the others."""

import shlex

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import tiny_ct
from typer.testing import CliRunner

from drrgen.build.inspect import verify_store
from drrgen.build.store import open_store
from drrgen.cli import app
from drrgen.store_contract import written_blocks
from drrgen.volume import Volume, write_ct

BAD = {
    "truncated.nii": "truncated file",
    "photo.nii.gz": "not a CT volume: the file is a PNG image",
    "flat.nii.gz": "not 3-D",
    "air.nii.gz": "all-air volume",
    "lung.nrrd": "no tissue: every voxel is below air_threshold_hu = -300 HU",
    "broken_dicom": "no DICOM series found",
    "huge.nii.gz": "too large for the C-arm",
}


def _bad_dir(root):
    write_ct(tiny_ct(0), root / "good" / "ok.nii.gz")
    write_ct(tiny_ct(0), root / "truncated.nii", compress=False)
    raw = (root / "truncated.nii").read_bytes()
    (root / "truncated.nii").write_bytes(raw[: len(raw) // 2])
    png = sitk.GetImageFromArray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64))
    sitk.WriteImage(png, str(root / "photo.png"))
    (root / "photo.png").rename(root / "photo.nii.gz")
    sitk.WriteImage(
        sitk.GetImageFromArray(np.zeros((30, 30), np.float32)), str(root / "flat.nii.gz")
    )
    noise = np.random.default_rng(0).uniform(-1005, -995, (12, 12, 12)).astype(np.float32)
    write_ct(Volume(noise, np.eye(4)), root / "air.nii.gz")
    write_ct(Volume(noise + 500, np.eye(4)), root / "lung.nrrd")  # -505..-495 HU
    (root / "broken_dicom").mkdir()
    for k in range(3):
        (root / "broken_dicom" / f"IM{k}.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x07" * 50)
    huge = tiny_ct(0, (64, 64, 64))  # 64 voxels of 45 mm (the checks accept up to 50): 2.9 m
    affine = huge.affine.copy()
    affine[:3, :3] *= 45.0 / np.linalg.norm(affine[:3, :3], axis=0)
    write_ct(Volume(huge.data, affine), root / "huge.nii.gz")
    write_ct(tiny_ct(3), root / "zz" / "ok2.mha")
    return root


@pytest.fixture(scope="module")
def bad_build(tmp_path_factory):
    root = _bad_dir(tmp_path_factory.mktemp("bad"))
    out = root.parent / "bad.zarr"
    args = [
        "build",
        "--ct-dir",
        str(root),
        "--out",
        str(out),
        "samples_per_ct=2",
        "block=2",
        "size=32",
        "patch=8",
        "--workers",
        "0",
        "--no-progress",
    ]
    result = CliRunner().invoke(app, args)
    return root, out, result, args


def _hint(result) -> list[str]:
    """The words of the rerun hint printed after failed volumes."""
    line = next(ln for ln in result.stderr.splitlines() if ln.startswith("  ") and "--out" in ln)
    return shlex.split(line)


def test_exit_code_and_a_pasteable_rerun_hint(bad_build):
    _, _, result, args = bad_build
    assert result.exit_code == 1, result.output
    assert "7 volume(s) failed" in result.stderr
    assert "rerun the same command" in result.stderr
    words = _hint(result)
    assert words[:2] == ["drrgen", "build"]  # each its own word: the line runs as pasted
    options = [w for w in args[1:] if w.startswith("--")]
    assert sorted(w for w in words[2:] if w.startswith("--")) == sorted(options)


@pytest.mark.parametrize("name, reason", BAD.items())
def test_each_bad_input_is_reported_and_recorded(bad_build, name, reason):
    _, out, result, _ = bad_build
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("FAILED") and name in ln)
    assert reason in line
    failed = {f["path"]: f for f in open_store(out).attrs["failed"]}
    assert reason in failed[name]["reason"]


def test_good_volumes_are_built_and_failed_ones_stay_empty(bad_build):
    _, out, _, _ = bad_build
    group = open_store(out)
    attrs = dict(group.attrs)
    paths = [v["path"] for v in attrs["volumes"]]
    done = written_blocks(group)
    assert done.tolist() == [p in ("good/ok.nii.gz", "zz/ok2.mha") for p in paths]
    assert not attrs["complete"]
    vid = group["volume_id"][:]
    assert set(vid[vid >= 0].tolist()) == {paths.index("good/ok.nii.gz"), paths.index("zz/ok2.mha")}
    assert np.isnan(group["views"][int(np.flatnonzero(vid < 0)[0])]).all()
    assert not verify_store(str(out)).ok
    report = verify_store(str(out), allow_failed=True)
    assert report.ok and report.checked_blocks == 2


def test_rerun_retries_only_the_failed_volumes(bad_build):
    _, _, result, _ = bad_build
    rerun = CliRunner().invoke(app, _hint(result)[1:])  # the hint, as pasted
    assert rerun.exit_code == 1
    assert "2 done, 7 to build" in rerun.stderr


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("s3fs") is not None, reason="s3fs is installed"
)
def test_a_url_without_its_fsspec_backend_is_one_line(ct_dir):
    args = ["build", "--ct-dir", str(ct_dir), "--out", "s3://bucket/x.zarr", "--workers", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output.startswith("error: s3://bucket/x.zarr: Install s3fs"), result.output


def test_an_unreachable_scheduler_is_one_line(ct_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("drrgen.build.cluster.SCHEDULER_TIMEOUT_S", 1)
    args = ["build", "--ct-dir", str(ct_dir), "--out", str(tmp_path / "s.zarr"),
            "size=32", "patch=16", "samples_per_ct=2", "--no-progress",
            "--scheduler", "tcp://127.0.0.1:1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert (
        result.output.strip()
        .splitlines()[-1]
        .startswith("error: tcp://127.0.0.1:1: no Dask scheduler answered within 1 s")
    ), result.output
