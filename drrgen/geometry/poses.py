"""Radiographic view poses: how a C-arm's angles and distances are drawn.

`SamplingConfig` holds the distributions, `draw_pose` draws one view's parameters. The build
stage (views of random crops) and the fracture stage (AP/lateral-like studies) both use them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingConfig:
    """How views and crops are drawn (`draw_pose`; shared by `drrgen build` and `fracture`).

    Args:
        primary_angles_deg: standard radiographic primary angles (0 = AP, 90 = left lateral,
            180 = PA, 270 = right lateral; rotation about the patient's superior axis).
        primary_probs: probability of each standard angle (normalised).
        primary_sigma_deg: Gaussian noise added to the primary angle, degrees.
        secondary_sigma_deg: spread of the cranio-caudal tilt around 0, degrees.
        secondary_max_deg: tilts are clipped to +- this, degrees.
        source_to_isocenter_mm: uniform range of the source-isocenter distance, mm.
        isocenter_to_detector_mm: uniform range of the isocenter-detector distance, mm.
        crop_fraction: uniform range of the fraction of each volume axis the crop covers.
        fill_fraction: uniform range of the fraction of the detector's width the projected crop
            spans (sets the pixel pitch at the drawn magnification).
        in_plane_sigma_deg: spread of the detector rotation about the central ray, degrees.
    """

    primary_angles_deg: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)
    primary_probs: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)
    primary_sigma_deg: float = 10.0
    secondary_sigma_deg: float = 15.0
    secondary_max_deg: float = 40.0
    source_to_isocenter_mm: tuple[float, float] = (1000.0, 1100.0)
    isocenter_to_detector_mm: tuple[float, float] = (800.0, 1200.0)
    crop_fraction: tuple[float, float] = (0.5, 1.0)
    fill_fraction: tuple[float, float] = (0.8, 0.95)
    in_plane_sigma_deg: float = 0.0

    def validate(self) -> SamplingConfig:
        """Check ranges; raise `ValueError` naming the field. Returns self."""
        if len(self.primary_angles_deg) != len(self.primary_probs) or not self.primary_probs:
            raise ValueError("sampling.primary_angles_deg and primary_probs need equal lengths")
        if min(self.primary_probs) < 0 or sum(self.primary_probs) <= 0:
            raise ValueError("sampling.primary_probs must be >= 0 with a positive sum")
        for name in ("source_to_isocenter_mm", "isocenter_to_detector_mm"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"sampling.{name} must satisfy 0 < low <= high, got {lo, hi}")
        for name in ("crop_fraction", "fill_fraction"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"sampling.{name} must satisfy 0 < low <= high <= 1, got {lo, hi}")
        for name in (
            "primary_sigma_deg",
            "secondary_sigma_deg",
            "secondary_max_deg",
            "in_plane_sigma_deg",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"sampling.{name} must be >= 0")
        return self


def draw_pose(rng, cfg: SamplingConfig) -> dict:
    """One view's C-arm parameters (degrees, mm) and its fill fraction; 7 draws, always.

    Args:
        rng: a ``numpy.random.Generator``.
    """
    import numpy as np  # here, not at the top: the config above is read by `--help`

    probs = np.asarray(cfg.primary_probs, dtype=np.float64)
    base = np.asarray(cfg.primary_angles_deg)[rng.choice(len(probs), p=probs / probs.sum())]
    primary = float((base + rng.normal(0.0, cfg.primary_sigma_deg)) % 360.0)
    secondary = float(
        np.clip(
            rng.normal(0.0, cfg.secondary_sigma_deg), -cfg.secondary_max_deg, cfg.secondary_max_deg
        )
    )
    sid = float(rng.uniform(*cfg.source_to_isocenter_mm))
    sdd = sid + float(rng.uniform(*cfg.isocenter_to_detector_mm))
    in_plane = float(rng.normal(0.0, cfg.in_plane_sigma_deg))
    fill = float(rng.uniform(*cfg.fill_fraction))
    return dict(
        primary_deg=primary,
        secondary_deg=secondary,
        source_to_isocenter_mm=sid,
        source_to_detector_mm=sdd,
        in_plane_deg=in_plane,
        fill=fill,
    )
