"""Projector speed: ms per 256x256 DRR from a 256^3 float32 volume, beside RTK's CPU Joseph.

Run: ``make bench`` or
``.venv/bin/python benchmarks/bench_projector.py [--threads 2] [--ct [PATH]]``
(RTK comes from the optional extra: ``pip install -e '.[bench]'``).

Prints, per view angle: drrgen at 1 and N threads, RTK's JosephForwardProjectionImageFilter
with N threads on the same geometry, the ratio RTK / drrgen, the relative difference of the
two images (a check that both compute the same DRR), and the time to read the volume once
(the memory-bound floor). Medians over repeats; the machine is noisy, so read the ratios.
The volume is smooth blobs, or with ``--ct`` a real CT (default: the embedded chest CT
``data/ct/cxr.nii.gz``) resampled to size^3 with its own spacing and direction cosines, as mu
in 1/mm, the views centred on it and the detector covering it. Its outermost 2 voxels are set
to 0 there: where a CT cuts through the body, rays grazing the cut faces meet the two
projectors' different border conventions (drrgen: zero outside, ramping over one voxel),
which would make the difference column measure the border, not the projection (measured on
the chest CT: up to 30 % at such pixels with the rim, 1.7e-6 without it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ct import DEFAULT_CT, cube_ct
from timing import machine, median_ms

from drrgen.geometry import carm_view
from drrgen.projector import kernels, project
from drrgen.volume import Volume


def make_volume(n: int, seed: int = 0) -> Volume:
    """A smooth (n, n, n) mu volume (1/mm): Gaussian blobs, 1 mm voxels, centred at 0."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32),) * 3, indexing="ij")
    data = np.zeros((n, n, n), np.float32)
    for _ in range(12):
        c = rng.uniform(-0.6, 0.6, 3).astype(np.float32)
        s = np.float32(rng.uniform(0.1, 0.3))
        data += np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * s * s))
    affine = np.eye(4)
    affine[:3, 3] = -(n - 1) / 2.0
    return Volume(data * np.float32(0.02), affine, "benchmark blobs")


# (primary, secondary) C-arm angles in degrees of the benchmark's views.
ANGLES = [(0, 0), (30, 10), (45, 0), (90, 0), (135, 20)]


def ct_framing(vol: Volume, n: int) -> tuple[np.ndarray, float]:
    """(centre (3,) LPS mm, pixel mm) putting a volume's corner voxels at the isocentre and its
    largest extent across an n-pixel detector (magnification 1.5)."""
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    world = vol.index_to_world(corners * (np.array(vol.shape_ijk) - 1))
    return world.mean(axis=0), 1.5 * float(np.ptp(world, axis=0).max()) / n


def bench_views(n: int, pixel_mm: float, centre) -> list:
    """The benchmark's (angles, View) pairs: an n x n detector, source 1000 mm from the
    isocentre, detector 1500 mm from the source."""
    return [
        (
            angles,
            carm_view(
                *angles,
                source_to_isocenter_mm=1000.0,
                source_to_detector_mm=1500.0,
                pixel_mm=pixel_mm,
                shape=(n, n),
                isocenter=tuple(centre),
            ),
        )  # fmt: skip
        for angles in ANGLES
    ]


def rtk_projector(volume: Volume, view, threads: int):
    """A callable running RTK's CPU Joseph projector for `view`; returns (H, W) float32."""
    import itk
    from itk import RTK as rtk

    itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(threads)
    image_t = itk.Image[itk.F, 3]
    vol = itk.image_from_array(volume.data)
    vol.SetSpacing(volume.spacing.tolist())
    vol.SetOrigin(volume.origin.tolist())
    vol.SetDirection(itk.matrix_from_array(volume.direction.copy()))
    h, w = view.shape
    pitch_c, pitch_r = np.linalg.norm(view.u), np.linalg.norm(view.v)
    geometry = rtk.ThreeDCircularProjectionGeometry.New()
    geometry.AddProjection(
        itk.Point[itk.D, 3](view.source.tolist()),
        itk.Point[itk.D, 3](view.detector_center.tolist()),
        itk.Vector[itk.D, 3]((view.u / pitch_c).tolist()),
        itk.Vector[itk.D, 3]((view.v / pitch_r).tolist()),
    )
    source = rtk.ConstantImageSource[image_t].New()
    source.SetOrigin([-(w - 1) / 2.0 * pitch_c, -(h - 1) / 2.0 * pitch_r, 0.0])
    source.SetSpacing([pitch_c, pitch_r, 1.0])
    source.SetSize([w, h, 1])
    source.SetConstant(0.0)
    joseph = rtk.JosephForwardProjectionImageFilter[image_t, image_t].New()
    joseph.SetInput(0, source.GetOutput())
    joseph.SetInput(1, vol)
    joseph.SetGeometry(geometry)
    joseph.SetNumberOfWorkUnits(threads)

    def run():
        joseph.Modified()
        joseph.Update()
        return itk.array_from_image(joseph.GetOutput())[0].copy()

    run.keep_alive = (source, vol, geometry)  # ITK filters die with their Python handles

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="volume edge and detector size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-rtk", action="store_true")
    parser.add_argument(
        "--ct", nargs="?", type=Path, const=DEFAULT_CT, help="a real CT (default: chest CT)"
    )
    args = parser.parse_args()

    n = args.size
    # Blobs: 1 mm voxels centred at 0, a 384 mm detector (256 mm at the isocentre).
    vol, centre, pixel_mm, what = make_volume(n), np.zeros(3), 1.5 * 256 / n, "blobs"
    if args.ct is not None:
        hu, what = cube_ct(args.ct, n)
        vol = hu.to_mu()
        vol.data[:2], vol.data[-2:], vol.data[:, :2], vol.data[:, -2:] = 0, 0, 0, 0
        vol.data[:, :, :2], vol.data[:, :, -2:] = 0, 0
        centre, pixel_mm = ct_framing(vol, n)
    floor_ms = median_ms({"read": lambda: vol.data.max()}, args.repeats)["read"]
    print(machine())
    scale = kernels.value_scale(vol)
    read_as = "float32" if scale is None else f"16-bit counts of {scale:.3g}"
    print(
        f"volume {what}, {n}^3 float32 ({vol.data.nbytes / 2**20:.0f} MiB, read as {read_as}); "
        f"detector {n}x{n}; threads {args.threads}; read-once floor {floor_ms:.1f} ms"
    )
    cols = ("view", "drrgen 1t", "drrgen", "RTK", "RTK/drrgen", "rel.diff")
    widths = (14, 10, 8, 8, 10, 9)
    header = " ".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True))
    print(header)
    print("-" * len(header))
    ratios, best, rtk = [], [], []
    for (primary, secondary), view in bench_views(n, pixel_mm, centre):
        fns = {
            "1t": lambda v=view: project(vol, v, threads=1),
            "nt": lambda v=view: project(vol, v, threads=args.threads),
        }
        if not args.no_rtk:
            fns["rtk"] = rtk_projector(vol, view, args.threads)
        ms = median_ms(fns, args.repeats)
        best.append(ms["nt"])
        rtk_ms, ratio, diff = ms.get("rtk", float("nan")), float("nan"), float("nan")
        if not args.no_rtk:
            ratio = rtk_ms / ms["nt"]
            ratios.append(ratio)
            rtk.append(rtk_ms)
            ours, theirs = project(vol, view), fns["rtk"]()
            diff = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
        print(
            f"{primary:>5},{secondary:>3} deg {ms['1t']:>9.1f}m {ms['nt']:>7.1f}m "
            f"{rtk_ms:>7.1f}m {ratio:>10.1f} {diff:>9.1e}"
        )
    print(f"drrgen median over views: {np.median(best):.1f} ms per DRR ({args.threads} threads)")
    if ratios:
        print(f"median speed-up over RTK ({args.threads} threads each): {np.median(ratios):.1f}x")
        total = sum(rtk) / sum(best)
        print(f"all views together (sum of RTK times / sum of drrgen times): {total:.1f}x")


if __name__ == "__main__":
    main()
