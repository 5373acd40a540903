"""The phantom kinds, in the order of a "mixed" set; a module of its own so that the command
line lists them without loading the phantom code (NumPy, SimpleITK)."""

KINDS = ("forearm", "hand", "elbow", "knee", "leg", "foot")
