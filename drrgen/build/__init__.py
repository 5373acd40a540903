"""`drrgen build`: CT folders -> a resumable Zarr store of DRR samples and correspondences.

Names are imported on first use (PEP 562): reading a `BuildConfig` does not load Numba, Dask
or Zarr.
"""

from drrgen._lazy import lazy_names

# public name -> the module that defines it
_API = {
    "ClusterOptions": "drrgen.build.cluster",
    "BuildConfig": "drrgen.build.config",
    "SamplingConfig": "drrgen.geometry.poses",
    "load_config": "drrgen.build.config",
    "CTSource": "drrgen.volume.discover",
    "discover_cts": "drrgen.volume.discover",
    "BuildSummary": "drrgen.build.pipeline",
    "build": "drrgen.build.pipeline",
    "FORMAT": "drrgen.store_contract",
    "FORMAT_VERSION": "drrgen.store_contract",
    "Layout": "drrgen.store_contract",
    "StoreError": "drrgen.store_contract",
    "open_store": "drrgen.build.store",
}

__all__ = sorted(_API)


__getattr__, __dir__ = lazy_names("drrgen.build", _API, globals())
