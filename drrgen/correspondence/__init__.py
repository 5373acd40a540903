"""Many-to-many patch correspondence ground truth from a CT and its views."""

from drrgen.correspondence.ground_truth import correspondence

__all__ = ["correspondence"]
