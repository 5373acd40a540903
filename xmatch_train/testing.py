"""Tiny stores for tests and examples, written exactly to the `drrgen build` contract.

`write_toy_store` renders small procedural phantoms (a soft-tissue cylinder around two long
bones with cortical shells and a few bony blobs, varied by seed) with the real projector and
ground truth of `drrgen` (`drrgen.projector.project`, `drrgen.correspondence.correspondence`),
so views, geometry and correspondence are consistent. It is small and fast (64 x 64 detectors,
32^3 volumes), not a replacement for `drrgen build`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import zarr

from drrgen.store_contract import (
    CHECKSUMMED,
    FORMAT,
    FORMAT_VERSION,
    Layout,
    create_arrays,
    pairs_of,
    write_block,
)

HU_AIR, HU_SOFT, HU_MARROW, HU_CORTEX = -1000.0, 40.0, 300.0, 1500.0


def toy_volume(seed: int, n: int = 32, spacing_mm: float = 3.0):
    """A limb-like HU phantom.

    Args:
        seed: varies bone positions, radii and blobs.
        n: voxels per axis.
        spacing_mm: isotropic voxel size, mm.

    Returns:
        A `drrgen.volume.Volume` (HU), centred on the LPS origin.
    """
    from drrgen.volume.volume import Volume

    rng = np.random.default_rng([seed, 11])
    k, j, i = np.mgrid[:n, :n, :n].astype(np.float32)
    c = (n - 1) / 2
    data = np.full((n, n, n), HU_AIR, np.float32)
    data[(i - c) ** 2 + (j - c) ** 2 < (0.45 * n) ** 2] = HU_SOFT
    for side in (-1, 1):  # two long bones along k, slightly tilted
        x0 = c + side * n * rng.uniform(0.12, 0.2)
        y0 = c + n * rng.uniform(-0.08, 0.08)
        tilt = rng.uniform(-0.15, 0.15)
        r = n * rng.uniform(0.07, 0.11)
        d2 = (i - x0 - tilt * (k - c)) ** 2 + (j - y0) ** 2
        data[d2 < r**2] = HU_CORTEX
        data[d2 < (0.6 * r) ** 2] = HU_MARROW
    for _ in range(3):  # carpal-like blobs
        p = rng.uniform(0.25 * n, 0.75 * n, size=3)
        r = n * rng.uniform(0.05, 0.09)
        data[(i - p[0]) ** 2 + (j - p[1]) ** 2 + (k - p[2]) ** 2 < r**2] = HU_CORTEX
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = -c * spacing_mm
    return Volume(data, affine, f"toy-phantom-{seed}")


def toy_views(volume, rng: np.random.Generator, n_views: int, size: int):
    """Draw `n_views` C-arm views around `volume`'s centre, primary angles near 0/90/180/270.

    Returns:
        (views, pose): the `View` list and (V, 6) float32 C-arm parameters in the store's
        ``pose_fields`` order (primary, secondary deg; SID, SDD, pixel mm; in-plane deg).
    """
    from drrgen.geometry.carm import carm_view

    extent = float(np.max(volume.spacing * np.array(volume.shape_ijk)))
    views, pose = [], []
    for _ in range(n_views):
        primary = 90.0 * rng.integers(4) + rng.normal(0, 10)
        sid, idd = rng.uniform(1000, 1100), rng.uniform(800, 1200)
        pixel = extent * (sid + idd) / sid / (size * rng.uniform(0.8, 0.95))
        secondary = float(np.clip(rng.normal(0, 15), -40, 40))
        views.append(
            carm_view(
                primary,
                secondary,
                source_to_isocenter_mm=sid,
                source_to_detector_mm=sid + idd,
                pixel_mm=pixel,
                shape=(size, size),
                isocenter=volume.center,
            )
        )
        pose.append([primary, secondary, sid, sid + idd, pixel, 0.0])
    return views, np.asarray(pose, np.float32)


def toy_sample(volume, rng: np.random.Generator, n_views: int, size: int, patch: int) -> dict:
    """Render one sample: name -> one sample of the store's arrays (``views`` (V, H, W),
    ``corr`` (P, N, N), ``geometry`` (V, 12), ``pose`` (V, 6), ``crop`` (2, 3))."""
    from drrgen.correspondence import correspondence
    from drrgen.projector import project

    shape = np.array(volume.shape_ijk)
    ext = np.maximum(4, (shape * rng.uniform(0.6, 1.0, size=3)).astype(int))
    start = rng.integers(0, shape - ext + 1)
    crop = volume.crop(start, start + ext)
    views, pose = toy_views(crop, rng, n_views, size)
    mu = crop.to_mu()
    return {
        "views": np.stack([project(mu, v, threads=1) for v in views]),
        "corr": correspondence(crop, views, patch=patch, threads=1),
        "geometry": np.stack([v.as_vector() for v in views]),
        "pose": pose,
        "crop": np.stack([start, start + ext]),
    }


def write_toy_store(
    path: str | Path,
    *,
    n_volumes: int = 3,
    samples_per_volume: int = 8,
    views: int = 2,
    size: int = 64,
    patch: int = 16,
    block: int = 4,
    seed: int = 0,
    complete: bool = True,
    unwritten_blocks: tuple[int, ...] = (),
) -> Path:
    """Write a small store to the `drrgen.store_contract` (arrays, checksums, attributes).

    Args:
        path: store directory (created; must not exist).
        n_volumes: phantoms (volume ids 0..n_volumes-1), each owning consecutive samples.
        samples_per_volume: samples per phantom, a multiple of `block`.
        views: V views per sample.
        size: detector side in pixels.
        patch: patch side in pixels (grid = size / patch).
        block: samples per shard.
        seed: seed of phantoms and views.
        complete: value of the ``complete`` attribute.
        unwritten_blocks: global block indices left unwritten (NaN / -1 fill), as an
            interrupted build leaves them.

    Returns:
        The store path.
    """
    from drrgen.build.sampling import POSE_FIELDS

    if samples_per_volume % block:
        raise ValueError("samples_per_volume must be a multiple of block")
    path = Path(path)
    layout = Layout(n_volumes, samples_per_volume, block, views, size, patch)
    group = zarr.open_group(str(path), mode="w-")
    create_arrays(group, layout)
    table = []
    for vid in range(n_volumes):
        volume = toy_volume(seed * 1000 + vid)
        table.append(
            dict(
                id=vid,
                path=f"toy/phantom_{seed}_{vid}.nii.gz",
                sha256=hashlib.sha256(f"toy-{seed}-{vid}".encode()).hexdigest(),
                shape=list(volume.shape_ijk),
                spacing=[float(x) for x in volume.spacing],
            )
        )
        for b in layout.volume_blocks(vid):
            if b in unwritten_blocks:
                continue
            rng = np.random.default_rng([seed, vid, layout.block_volume(b)[1]])
            out = [toy_sample(volume, rng, views, size, patch) for _ in range(block)]
            arrays = {name: np.stack([o[name] for o in out]) for name in CHECKSUMMED}
            write_block(group, layout, b, arrays | {"volume_id": np.full(block, vid)})
    group.attrs.update(
        dict(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            params=dict(
                samples_per_ct=samples_per_volume,
                views=views,
                size=size,
                patch=patch,
                seed=seed,
                block=block,
                toy=True,
            ),
            patch=patch,
            corr_definition="paper",
            size=size,
            views=views,
            block=block,
            samples_per_ct=samples_per_volume,
            pairs=[list(p) for p in pairs_of(views)],
            pose_fields=list(POSE_FIELDS),
            volumes=table,
            failed=[],
            complete=bool(complete),
        )
    )
    return path


def build_toy_store(
    path: str | Path,
    ct_dir: str | Path,
    *,
    n_volumes: int = 3,
    samples_per_volume: int = 8,
    views: int = 2,
    size: int = 64,
    patch: int = 16,
    block: int = 4,
    seed: int = 0,
) -> Path:
    """Build a real store with `drrgen build` (in this process) from `toy_volume` phantoms.

    The phantoms are written as NIfTI files into `ct_dir` (created), then
    `drrgen.build.build` runs without Dask. Prefer this over `write_toy_store` whenever the
    test is about reading what the builder writes.

    Returns:
        The store path.
    """
    from drrgen.build import BuildConfig, ClusterOptions, build
    from drrgen.volume import write_ct

    ct_dir = Path(ct_dir)
    ct_dir.mkdir(parents=True, exist_ok=True)
    for vid in range(n_volumes):
        write_ct(toy_volume(seed * 1000 + vid), ct_dir / f"phantom_{vid:02d}.nii.gz")
    cfg = BuildConfig(
        samples_per_ct=samples_per_volume,
        views=views,
        size=size,
        patch=patch,
        block=block,
        seed=seed,
    )
    summary = build(
        ct_dir,
        str(path),
        cfg,
        ClusterOptions(workers=0, threads=1),
        progress=False,
        echo=lambda _: None,
    )
    if not summary.complete:
        raise RuntimeError(f"{path}: toy build incomplete: {summary.failed}")
    return Path(path)


def write_dicom(path: str | Path, stored: np.ndarray, **elements) -> Path:
    """Write a real DICOM file (explicit VR little endian, DX for presentation) holding the
    stored values `stored` (H, W) or (frames, H, W) (or (H, W, 3) with ``SamplesPerPixel=3``).

    Defaults: Modality DX, MONOCHROME2, 16 bits allocated, 12 stored, unsigned; any data
    element can be set or overridden by keyword (``Modality="CT"``,
    ``PhotometricInterpretation="MONOCHROME1"``, ``RescaleSlope=2.0``,
    ``ImagerPixelSpacing=[0.14, 0.14]``, ``NumberOfFrames=2``, ...). The pixel bytes are
    written as given (so unused high bits may carry garbage, as old files do).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        DigitalXRayImageStorageForPresentation,
        ExplicitVRLittleEndian,
        generate_uid,
    )

    stored = np.asarray(stored)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    colour = int(elements.get("SamplesPerPixel", 1)) > 1
    rows, cols = stored.shape[:2] if colour else stored.shape[-2:]  # (H, W[, 3]) / (F, H, W)
    ds.Rows, ds.Columns = int(rows), int(cols)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    for key, value in elements.items():
        setattr(ds, key, value)
    dtype = {(8, 0): np.uint8, (16, 0): np.uint16, (16, 1): np.int16}
    ds.PixelData = stored.astype(dtype[(ds.BitsAllocated, ds.PixelRepresentation)]).tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
