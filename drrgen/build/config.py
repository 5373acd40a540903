"""Build parameters: a typed dataclass from YAML files and ``key=value`` command-line overrides.

Every field of `BuildConfig` is stored in the store's attributes (``params``): a rerun with
different values refuses to touch the store. Run-time options that do not change the arrays
(workers, threads, scheduler) are not part of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from drrgen.geometry.poses import SamplingConfig
from drrgen.typed_config import ConfigError, from_dict, load_typed


@dataclass(frozen=True)
class BuildConfig:
    """Everything that determines the arrays of a store.

    Args:
        samples_per_ct: samples (view tuples) drawn per CT volume.
        views: views per sample V >= 2; every pair (i < j) gets a correspondence matrix.
        size: detector size in pixels (square, H = W = size).
        patch: patch size in pixels; size must be a multiple of it.
        seed: base seed; block b of volume v draws from ``default_rng([seed, v, b])``.
        block: samples per block (one task, one shard). `samples_per_ct` must be a multiple
            of it; a block larger than `samples_per_ct` is reduced to it.
        mu_water: linear attenuation of water, 1/mm (HU -> mu for the DRRs).
        air_threshold_hu: HU below which voxels are air for the correspondence.
        corr_supersample: sub-rays per patch side of the correspondence footprints
            (`drrgen.correspondence`'s ``supersample``).
        corr_fraction: coarse cell width / patch width at the isocenter of the correspondence
            (`drrgen.correspondence`'s ``fraction``).
        corr_definition: ground-truth definition, ``paper`` (default) or ``peak`` (the
            definition before 2026-12), `drrgen.correspondence`'s ``definition``.
        sampling: view and crop sampling ranges.
    """

    samples_per_ct: int = 256
    views: int = 2
    size: int = 256
    patch: int = 16
    seed: int = 0
    block: int = 32
    mu_water: float = 0.02
    air_threshold_hu: float = -300.0
    corr_supersample: int = 3
    corr_fraction: float = 0.25
    corr_definition: str = "paper"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """View pairs (i, j), i < j, in the store contract's order (0,1), (0,2), ..., (V-2, V-1)."""
        from drrgen.store_contract import pairs_of  # imported here: reading a config loads no Zarr

        return pairs_of(self.views)

    @property
    def patches_per_view(self) -> int:
        """N = (size / patch)^2 patches per view, numbered row-major."""
        return (self.size // self.patch) ** 2

    def validate(self) -> BuildConfig:
        """Check values; raise `ValueError` naming the key at fault. Returns self (block may
        have been reduced to `samples_per_ct`: use the returned object)."""
        if self.views < 2:
            raise ValueError(f"views must be >= 2, got {self.views}")
        if self.size < 1 or self.patch < 1 or self.size % self.patch:
            raise ValueError(f"size={self.size} must be a positive multiple of patch={self.patch}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.samples_per_ct < 1 or self.block < 1:
            raise ValueError("samples_per_ct and block must be >= 1")
        if self.corr_definition not in ("paper", "peak"):
            raise ValueError(
                f"corr_definition must be 'paper' or 'peak', got {self.corr_definition!r}"
            )
        if self.mu_water <= 0:
            raise ValueError(f"mu_water must be > 0 (1/mm), got {self.mu_water}")
        cfg = replace(self, block=min(self.block, self.samples_per_ct))
        if cfg.samples_per_ct % cfg.block:
            raise ValueError(
                f"samples_per_ct={cfg.samples_per_ct} must be a multiple of block={cfg.block} "
                "(blocks are shards and must not straddle two volumes)"
            )
        cfg.sampling.validate()
        return cfg

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists), as stored in the store's ``params``."""
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> BuildConfig:
        """Build from a (possibly partial) dict, each value checked against its field's type
        (`drrgen.typed_config`).

        A store written before 2026-12-06 names ``air_threshold_hu`` ``hu_air``: read as such.

        Raises:
            ConfigError: unknown keys or ill-typed values; the message names `source` and the
                key (``c.yaml: sampling.crop_fraction: expected a list of 2 numbers, ...``).
        """
        from drrgen.store_contract import upgrade_params  # here: reading a YAML loads no Zarr

        try:
            return from_dict(cls, upgrade_params(data))
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> BuildConfig:
    """The checked `BuildConfig` of a YAML file (``defaults:`` includes resolved; missing keys
    take the defaults) and dotted ``key=value`` overrides (``size=128``,
    ``sampling.crop_fraction=[0.5,1]``), `validate`d.

    Raises:
        ConfigError: unreadable file, invalid YAML, unknown key, ill-typed or out-of-range
            value; the message names the file, the overrides and the key.
    """
    from drrgen.store_contract import upgrade_params  # here: reading a YAML loads no Zarr

    return load_typed(BuildConfig, path, overrides, BuildConfig.validate, upgrade_params)
