import pytest
from helpers import tiny_ct

from drrgen.volume import write_ct, write_dicom_series
from drrgen.volume.discover import discover_cts, hash_sources, sha256


@pytest.fixture
def mixed_dir(tmp_path):
    vol = tiny_ct(shape=(8, 10, 12))
    write_ct(vol, tmp_path / "n" / "a.nii.gz")
    write_ct(vol, tmp_path / "n" / "b.nrrd")
    write_ct(vol, tmp_path / "m" / "c.mha")
    import SimpleITK as sitk

    from drrgen.volume.io import volume_to_image

    sitk.WriteImage(volume_to_image(vol), str(tmp_path / "m" / "d.mhd"))  # + d.raw (or .zraw)
    write_dicom_series(vol, tmp_path / "dicom" / "one", name="one")
    write_dicom_series(vol, tmp_path / "dicom" / "two", name="s1")
    write_dicom_series(tiny_ct(2, shape=(8, 10, 12)), tmp_path / "dicom" / "two", name="s2")
    (tmp_path / "bad_dicom").mkdir()
    (tmp_path / "bad_dicom" / "x0.dcm").write_bytes(b"not dicom at all" * 10)
    write_ct(vol, tmp_path / ".hidden" / "h.nii.gz")
    write_ct(vol, tmp_path / "old.zarr" / "z.nii.gz")
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    return tmp_path


def test_finds_every_format_recursively_in_a_stable_order(mixed_dir):
    sources = discover_cts(mixed_dir)
    labels = [(s.rel, s.series_id is not None) for s in sources]
    assert labels == [
        ("bad_dicom", False),
        ("dicom/one", False),
        ("dicom/two", True),
        ("dicom/two", True),
        ("m/c.mha", False),
        ("m/d.mhd", False),
        ("n/a.nii.gz", False),
        ("n/b.nrrd", False),
    ]
    assert discover_cts(mixed_dir) == sources
    two = [s for s in sources if s.rel == "dicom/two"]
    assert two[0].series_id != two[1].series_id and all(len(s.files) == 8 for s in two)
    mhd = next(s for s in sources if s.rel == "m/d.mhd")
    assert len(mhd.files) == 2  # the header and its data file are both hashed


def test_sha256_follows_content(mixed_dir):
    sources = discover_cts(mixed_dir)
    hashes = hash_sources(sources)
    assert all(isinstance(h, str) and len(h) == 64 for h in hashes)
    two = [h for s, h in zip(sources, hashes, strict=True) if s.rel == "dicom/two"]
    assert two[0] != two[1]
    mhd = next(s for s in sources if s.rel == "m/d.mhd")
    before = sha256(mhd)
    raw = mhd.files[1]
    data = bytearray(raw.read_bytes())
    data[-1] ^= 0xFF
    raw.write_bytes(bytes(data))
    assert sha256(mhd) != before


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        discover_cts(tmp_path / "nope")
    assert discover_cts(tmp_path) == []


def test_only_detached_headers_name_other_files(tmp_path):
    # A NIfTI whose header text (the 80-byte descrip field at offset 148) looks like a
    # detached-header line: nothing else is hashed with it, and discovery never reads a whole
    # volume file as text.
    write_ct(tiny_ct(shape=(8, 10, 12)), tmp_path / "a.nii")
    with open(tmp_path / "a.nii", "r+b") as f:
        f.seek(148)
        f.write(b"\nElementDataFile = extra.raw\n".ljust(80, b"\0"))
    (tmp_path / "extra.raw").write_bytes(b"\0" * 16)
    (source,) = discover_cts(tmp_path)
    assert source.files == (tmp_path / "a.nii",)
