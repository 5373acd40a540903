"""CT volumes: the `Volume` type, readers, and the discovery of CTs under a folder."""

from drrgen.volume.dicom import list_dicom_series, write_dicom_series
from drrgen.volume.discover import CTSource, discover_cts
from drrgen.volume.io import CT_SUFFIXES, is_ct_file, read_ct, write_ct
from drrgen.volume.volume import HU_AIR, Volume

__all__ = [
    "CTSource",
    "CT_SUFFIXES",
    "HU_AIR",
    "Volume",
    "discover_cts",
    "is_ct_file",
    "list_dicom_series",
    "read_ct",
    "write_ct",
    "write_dicom_series",
]
