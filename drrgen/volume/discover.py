"""Find the CT volumes under a folder: NIfTI, NRRD, MetaImage files and DICOM series folders.

Every file with a CT suffix is a candidate volume, and so is every DICOM series of a folder
holding DICOM files (each series is one volume). Candidates are not opened here: a file that
turns out unreadable is reported when the build reads it, so one bad file never stops the
others. The order (sorted relative paths) fixes the volume ids and the sample layout.
"""

from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from drrgen.volume.dicom import list_dicom_series
from drrgen.volume.io import is_ct_file

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
# Files that sit beside CTs but are never DICOM; skipping them avoids reading their headers.
_NOT_DICOM = (".raw", ".zraw", ".json", ".txt", ".csv", ".md", ".png", ".jpg", ".yaml", ".gz")
# Headers whose voxel data live in another file (hashed with them).
_DETACHED_HEADERS = (".mhd", ".nhdr")


@dataclass(frozen=True)
class CTSource:
    """One candidate CT volume.

    Args:
        path: absolute path of the file or DICOM folder.
        rel: POSIX path relative to the CT folder (the id users see).
        series_id: the DICOM SeriesInstanceUID for DICOM folders, None otherwise (and for
            DICOM folders where no series could be read).
        files: for DICOM, the series' files in slice order; for MetaImage/NRRD headers, the
            header and its detached data file(s); else the file itself. Hashed by `sha256`.
    """

    path: Path
    rel: str
    series_id: str | None
    files: tuple[Path, ...]

    @property
    def label(self) -> str:
        """`rel`, with the series id appended when a folder holds several series."""
        return self.rel if self.series_id is None else f"{self.rel} [series {self.series_id}]"


def _is_dicom_file(path: Path) -> bool:
    """DICOM by suffix, or a suffix-less file with the 'DICM' magic at byte 128."""
    name = path.name.lower()
    if name.endswith(DICOM_SUFFIXES):
        return True
    if "." in name.lstrip(".") and not name.endswith(DICOM_SUFFIXES):
        return False
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _detached_data_files(header: Path) -> list[Path]:
    """Data files named by a .mhd ('ElementDataFile = x') or .nhdr ('data file: x') header."""
    try:
        text = header.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    pattern = r"^\s*(?:ElementDataFile\s*=|data ?file\s*:)\s*(\S.*?)\s*$"
    out = []
    for name in re.findall(pattern, text, flags=re.MULTILINE | re.IGNORECASE):
        if name.upper() not in ("LOCAL", "LIST"):
            candidate = header.parent / name
            if candidate.is_file():
                out.append(candidate)
    return out


def _dicom_sources(folder: Path, rel: str, files: list[Path]) -> list[CTSource]:
    """One source per series of `folder`; one series-less source if none can be read."""
    quiet = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # GDCM warns on stderr for bad folders
    try:
        series = sorted(list_dicom_series(folder))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(quiet)
    if not series:
        return [CTSource(folder, rel, None, tuple(sorted(files)))]
    multi = len(series) > 1
    return [
        CTSource(folder, rel, sid if multi else None, tuple(Path(f) for f in names))
        for sid, names in series
    ]


def discover_cts(ct_dir) -> list[CTSource]:
    """All candidate CT volumes under `ct_dir`, searched recursively, in a stable order.

    Hidden files and folders and ``*.zarr`` folders are skipped.

    Args:
        ct_dir: the folder to search.

    Returns:
        Sources sorted by (relative path, series id); the index is the volume id.

    Raises:
        FileNotFoundError: `ct_dir` is not a folder.
    """
    root = Path(ct_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{ct_dir}: not a folder (--ct-dir must be a folder of CTs)")
    out: list[CTSource] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not d.endswith(".zarr"))
        folder = Path(folder)
        dicom = []
        for name in sorted(n for n in names if not n.startswith(".")):
            path = folder / name
            if is_ct_file(name):
                # Only headers name other files; reading a whole .nii.gz as text cost 0.5 s.
                detached = name.lower().endswith(_DETACHED_HEADERS)
                files = (path, *(_detached_data_files(path) if detached else ()))
                out.append(CTSource(path, path.relative_to(root).as_posix(), None, files))
            elif not name.lower().endswith(_NOT_DICOM) and _is_dicom_file(path):
                dicom.append(path)
        if dicom:
            rel = folder.relative_to(root).as_posix()
            out.extend(_dicom_sources(folder, rel, dicom))
    return sorted(out, key=lambda s: (s.rel, s.series_id or ""))


def sha256(source: CTSource) -> str:
    """Hex SHA-256 over the source's files (names relative to its folder, then contents)."""
    h = hashlib.sha256()
    base = source.path if source.path.is_dir() else source.path.parent
    for path in source.files:
        h.update(os.path.relpath(path, base).encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def _sha256_or_none(source: CTSource) -> str | None:
    try:
        return sha256(source)
    except OSError:
        return None  # the build reports why when it tries to read the volume


def hash_sources(sources: list[CTSource], threads: int = 4) -> list[str | None]:
    """`sha256` of every source (None where a file cannot be read), a few at a time."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return list(pool.map(_sha256_or_none, sources))
