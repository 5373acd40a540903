"""CT volumes: the `Volume` type and readers."""

from drrgen.volume.volume import HU_AIR, Volume

__all__ = ["HU_AIR", "Volume"]
