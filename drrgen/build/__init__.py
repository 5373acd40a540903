"""`drrgen build`: CT folders -> a resumable Zarr store of DRR samples and correspondences."""

from drrgen.build.cluster import ClusterOptions
from drrgen.build.config import BuildConfig, SamplingConfig, load_config
from drrgen.build.discover import CTSource, discover_cts
from drrgen.build.pipeline import BuildSummary, build
from drrgen.build.store import FORMAT, FORMAT_VERSION, Layout, StoreError, open_store

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "BuildConfig",
    "BuildSummary",
    "CTSource",
    "ClusterOptions",
    "Layout",
    "SamplingConfig",
    "StoreError",
    "build",
    "discover_cts",
    "load_config",
    "open_store",
]
