"""The synthetic two-view fracture dataset: studies rendered from intact and fractured CTs.

`write_fracture_dataset` makes, for every volume (procedural limb phantoms with their own seeds,
plus any CTs of a folder), ``studies_per_volume`` studies of two radiographs each, half of them
fractured (`simulate_fracture`, label 1) and half intact (label 0). Both kinds draw their views
the same way: a bone point (`draw_site`; for a fracture, the cut point) jittered by up to
``jitter_mm`` is the isocenter of an AP/PA-like view (primary angle 0 or 180 deg) and a
lateral-like view (90 or 270 deg), each with Gaussian angle noise, drawn with the build's pose
sampler (`drrgen.build.sampling.draw_pose`) and a field of view of ``fov_mm`` at the isocenter.
The two images of a study come in random order. Studies are split into train / val / test by
volume (a volume's studies never straddle splits).

Images are line integrals (`drrgen.project` of ``mu``) shown in the log domain with a robust
0.5 / 99.5 percentile window, stored as 8-bit PNGs like the radiographs of MURA. The folder is
in the generic study format that `xmatch finetune` reads (``studies.csv``)::

    OUT/studies.csv      study_id,label,split,patient,images   (images: ';'-separated paths)
    OUT/images/*.png     <study_id>_<view>.png, uint8, size x size
    OUT/studies.jsonl    per study: volume, label, fracture parameters, view vectors (mm)
    OUT/dataset.json     parameters, volumes and their split, counts, "complete": true

The folder is written under a temporary name and renamed when complete; rerunning with the
same parameters keeps it.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from drrgen.fracture.simulate import FractureConfig, bone_components, draw_site, simulate_fracture
from drrgen.geometry import View, carm_view
from drrgen.geometry.poses import SamplingConfig, draw_pose
from drrgen.phantoms import KINDS, make_phantom
from drrgen.projector import project
from drrgen.volume import Volume, read_ct

FORMAT = "xmatch-studies/1"


@dataclass(frozen=True)
class StudyViewConfig:
    """How the two radiographs of a study are drawn.

    Attributes:
        size: image side, pixels.
        fov_mm: uniform range of the field of view at the isocenter (image side), mm.
        jitter_mm: isocenter offset from the bone point, uniform in a ball of this radius, mm.
        primary_sigma_deg: Gaussian noise of the primary angle around 0/180 and 90/270 deg.
        secondary_sigma_deg, secondary_max_deg: cranio-caudal tilt spread and clip, degrees.
        source_to_isocenter_mm, isocenter_to_detector_mm: uniform distance ranges, mm.
        mu_water: attenuation of water, 1/mm (HU -> mu).
    """

    size: int = 128
    fov_mm: tuple[float, float] = (45.0, 70.0)
    jitter_mm: float = 5.0
    primary_sigma_deg: float = 10.0
    secondary_sigma_deg: float = 8.0
    secondary_max_deg: float = 20.0
    source_to_isocenter_mm: tuple[float, float] = (1000.0, 1100.0)
    isocenter_to_detector_mm: tuple[float, float] = (50.0, 200.0)
    mu_water: float = 0.02

    def samplers(self) -> tuple[SamplingConfig, SamplingConfig]:
        """The build's pose samplers of the AP/PA-like and the lateral-like view."""
        common = dict(
            primary_probs=(0.5, 0.5),
            primary_sigma_deg=self.primary_sigma_deg,
            secondary_sigma_deg=self.secondary_sigma_deg,
            secondary_max_deg=self.secondary_max_deg,
            source_to_isocenter_mm=self.source_to_isocenter_mm,
            isocenter_to_detector_mm=self.isocenter_to_detector_mm,
        )
        ap = SamplingConfig(primary_angles_deg=(0.0, 180.0), **common).validate()
        lateral = SamplingConfig(primary_angles_deg=(90.0, 270.0), **common).validate()
        return ap, lateral


@dataclass(frozen=True)
class FractureDatasetConfig:
    """Everything that determines the dataset (recorded in ``dataset.json``).

    Attributes:
        phantoms: procedural limb phantoms; phantom i is of kind ``phantom_kinds[i % len]``.
        phantom_kinds: the phantom kinds used in turn (`drrgen.phantoms.KINDS`). Default: the
            long bones (forearm, leg), whose shafts lie across the AP and lateral beams; in
            hands and feet many views look along the bones, where a break does not show.
        phantom_seed: seed of the first phantom (then +1, ...); the default data's phantoms
            (`make data`, seeds 0-5) are what the correspondence pretraining sees, so the
            fracture phantoms use other seeds.
        phantom_shape: phantom grid (i, j, k), 1 mm voxels.
        ct_dir: optional folder of further CTs (HU) to use as well (None: phantoms only).
        studies_per_volume: studies drawn per volume.
        positive_fraction: fraction of a volume's studies that are fractured.
        val_fraction, test_fraction: fractions of volumes held out (split by volume).
        seed: seed of the split and of every study.
        views: view sampling.
        fracture: fracture parameter ranges.
    """

    phantoms: int = 160
    phantom_kinds: tuple[str, ...] = ("forearm", "leg")
    phantom_seed: int = 1000
    phantom_shape: tuple[int, int, int] = (128, 128, 160)
    ct_dir: str | None = None
    studies_per_volume: int = 16
    positive_fraction: float = 0.5
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    seed: int = 0
    views: StudyViewConfig = field(default_factory=StudyViewConfig)
    fracture: FractureConfig = field(default_factory=FractureConfig)

    def validate(self) -> FractureDatasetConfig:
        """Check values; raise `ValueError` naming the key. Returns self."""
        if self.phantoms < 0 or self.studies_per_volume < 1:
            raise ValueError("phantoms must be >= 0 and studies_per_volume >= 1")
        if not 0 <= self.positive_fraction <= 1:
            raise ValueError(f"positive_fraction must be in [0, 1], got {self.positive_fraction}")
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1) or (
            self.val_fraction + self.test_fraction >= 1
        ):
            raise ValueError("val_fraction and test_fraction must be in [0, 1) with sum < 1")
        if not self.phantom_kinds or set(self.phantom_kinds) - set(KINDS):
            raise ValueError(f"phantom_kinds must be a non-empty subset of {KINDS}")
        if self.views.size < 16 or self.views.fov_mm[0] <= 0:
            raise ValueError("views.size must be >= 16 and views.fov_mm positive")
        self.fracture.validate()
        return self

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples as lists)."""
        return json.loads(json.dumps(asdict(self)))


def load_fracture_config(
    path: str | Path | None, overrides: list[str] | None = None
) -> FractureDatasetConfig:
    """The checked `FractureDatasetConfig` of a YAML file (``defaults:`` includes resolved) and
    ``key=value`` overrides (``phantoms=40``, ``views.size=64``), as `drrgen fracture` reads it.

    Raises:
        ConfigError: unreadable file, invalid YAML, unknown key, ill-typed or out-of-range value
            (names the file, the overrides and the key).
    """
    from drrgen.typed_config import load_typed

    return load_typed(FractureDatasetConfig, path, overrides, FractureDatasetConfig.validate)


@dataclass(frozen=True)
class VolumeEntry:
    """One volume of the dataset: a phantom (kind, seed) or a CT file."""

    key: str
    kind: str | None = None
    seed: int | None = None
    path: str | None = None
    series_id: str | None = None

    def load(self, shape: tuple[int, int, int]) -> Volume:
        """The HU volume."""
        if self.path is not None:
            return read_ct(self.path, self.series_id)
        # No cast or metal: the simulator cuts what is denser than bone's threshold, and a
        # "fractured" cast would be a positive without a broken bone.
        return make_phantom(self.seed, shape=shape, kind=self.kind, devices=False)


def plan_volumes(cfg: FractureDatasetConfig) -> list[VolumeEntry]:
    """The dataset's volumes in a fixed order: phantoms first, then the CTs of ``ct_dir``."""
    kinds = cfg.phantom_kinds
    entries = [
        VolumeEntry(
            f"phantom:{kinds[i % len(kinds)]}:seed={cfg.phantom_seed + i}",
            kinds[i % len(kinds)],
            cfg.phantom_seed + i,
        )
        for i in range(cfg.phantoms)
    ]
    if cfg.ct_dir is not None:
        from drrgen.volume.discover import discover_cts

        sources = discover_cts(cfg.ct_dir)
        if not sources:
            raise ValueError(f"{cfg.ct_dir}: no CT volumes found")
        entries += [
            VolumeEntry(f"ct:{s.label}", path=str(s.path), series_id=s.series_id) for s in sources
        ]
    if not entries:
        raise ValueError("the dataset has no volumes (phantoms = 0 and no ct_dir)")
    return entries


def split_volumes(n: int, val: float, test: float, seed: int) -> list[str]:
    """Split name per volume index: a seeded permutation, test first, then val, rest train;
    a positive fraction gets at least one volume when n >= 3, train keeps at least one."""

    def count(fraction: float, m: int) -> int:
        return 0 if fraction <= 0 else max(1 if m >= 3 else 0, int(round(fraction * n)))

    order = np.random.default_rng([seed, 99]).permutation(n)
    n_test = min(count(test, n), n - 1)
    n_val = min(count(val, n), n - n_test - 1)
    names = ["train"] * n
    for rank, index in enumerate(order):
        if rank < n_test:
            names[index] = "test"
        elif rank < n_test + n_val:
            names[index] = "val"
    return names


def check_split_sizes(n: int, cfg: FractureDatasetConfig) -> None:
    """Refuse a dataset whose train split, or a held-out split with a positive fraction, would
    get no volume (e.g. one phantom: an empty test split).

    Raises:
        ValueError: naming the volume count and the minimum the fractions need.
    """
    fractions = {"val": cfg.val_fraction, "test": cfg.test_fraction}
    needed = ["train", *(name for name, f in fractions.items() if f > 0)]

    def fits(m: int) -> bool:
        names = split_volumes(m, cfg.val_fraction, cfg.test_fraction, cfg.seed)
        return all(name in names for name in needed)

    if fits(n):
        return
    least = next((m for m in range(n + 1, n + 1000) if fits(m)), None)
    source = f"phantoms={cfg.phantoms}" + (f" + {n - cfg.phantoms} CTs" if cfg.ct_dir else "")
    splits = " and ".join([", ".join(needed[:-1]), needed[-1]] if len(needed) > 1 else needed)
    raise ValueError(
        f"{source}: {n} volume{'s' if n != 1 else ''}, but the {splits} split"
        f"{'s' if len(needed) > 1 else ''} need at least one volume each (split by volume; "
        f"val_fraction {cfg.val_fraction:g}, test_fraction {cfg.test_fraction:g})"
        + (f": use at least {least} volumes" if least else "")
    )


def to_uint8(line_integral: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> np.ndarray:
    """(H, W) line integrals -> (H, W) uint8: log-domain image in a robust percentile window."""
    lo, hi = np.percentile(line_integral, [low_pct, high_pct])
    x = (line_integral - lo) / max(float(hi - lo), 1e-6)
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def draw_views(
    rng: np.random.Generator, point: np.ndarray, cfg: StudyViewConfig
) -> tuple[View, View]:
    """The two views of a study around bone point `point` (LPS mm), in random order."""
    offset = rng.normal(size=3)
    offset *= cfg.jitter_mm * rng.uniform() ** (1 / 3) / max(np.linalg.norm(offset), 1e-9)
    isocenter = np.asarray(point, dtype=np.float64) + offset
    fov = rng.uniform(*cfg.fov_mm)
    views = []
    for sampler in cfg.samplers():
        pose = draw_pose(rng, sampler)
        magnification = pose["source_to_detector_mm"] / pose["source_to_isocenter_mm"]
        views.append(
            carm_view(
                pose["primary_deg"],
                pose["secondary_deg"],
                source_to_isocenter_mm=pose["source_to_isocenter_mm"],
                source_to_detector_mm=pose["source_to_detector_mm"],
                pixel_mm=fov * magnification / cfg.size,
                shape=(cfg.size, cfg.size),
                isocenter=isocenter,
            )
        )
    if rng.random() < 0.5:
        views.reverse()
    return views[0], views[1]


def _visible_fracture(volume, rng, cfg, bones, regions, entry, tries: int = 5):
    """`simulate_fracture`, drawn again (same stream) while it changed no voxel: a positive
    study must show a fracture."""
    for _ in range(tries):
        fractured, fracture = simulate_fracture(volume, rng, cfg.fracture, bones, regions)
        if fracture.changed_voxels > 0:
            return fractured, fracture
    raise ValueError(f"{entry.key}: {tries} simulated fractures changed no voxel")


def volume_studies(
    index: int,
    entry: VolumeEntry,
    split: str,
    cfg: FractureDatasetConfig,
    out: str,
    threads: int | None = None,
) -> list[dict]:
    """Render and save the studies of one volume; returns one record per study.

    Study s of volume v draws from ``default_rng([seed, v, s])``; its label from a seeded
    permutation of the volume's positives and negatives.
    """
    volume = entry.load(cfg.phantom_shape)
    bones = bone_components(volume, cfg.fracture)
    n = cfg.studies_per_volume
    n_pos = int(round(cfg.positive_fraction * n))
    labels = np.random.default_rng([cfg.seed, index, 1 << 20]).permutation(
        np.r_[np.ones(n_pos, int), np.zeros(n - n_pos, int)]
    )
    intact_mu = volume.to_mu(cfg.views.mu_water)
    regions: dict = {}  # each bone's region is computed once per volume
    records = []
    for s in range(n):
        rng = np.random.default_rng([cfg.seed, index, s])
        study_id = f"v{index:03d}_s{s:03d}"
        if labels[s]:
            fractured, fracture = _visible_fracture(volume, rng, cfg, bones, regions, entry)
            mu, point, info = (
                fractured.to_mu(cfg.views.mu_water),
                fracture.point,
                fracture.to_dict(),
            )
        else:
            site = draw_site(volume, rng, cfg.fracture, bones)
            mu, point, info = intact_mu, site.point, None
        images = []
        views = draw_views(rng, point, cfg.views)
        for k, view in enumerate(views):
            name = f"images/{study_id}_{k}.png"
            Image.fromarray(to_uint8(project(mu, view, threads=threads))).save(Path(out) / name)
            images.append(name)
        records.append(
            dict(
                study_id=study_id,
                label=int(labels[s]),
                split=split,
                patient=entry.key,
                images=images,
                volume=index,
                centre=np.round(point, 3).tolist(),
                fracture=info,
                views=[v.as_vector().tolist() for v in views],
            )
        )
    return records


def _write_tables(out: Path, records: list[dict]) -> None:
    with open(out / "studies.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["study_id", "label", "split", "patient", "images"])
        for r in records:
            writer.writerow(
                [r["study_id"], r["label"], r["split"], r["patient"], ";".join(r["images"])]
            )
    with open(out / "studies.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def is_complete(out: str | Path, cfg: FractureDatasetConfig) -> bool:
    """True when `out` holds a complete dataset written with exactly these parameters."""
    meta = Path(out) / "dataset.json"
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return bool(info.get("complete")) and info.get("config") == cfg.to_dict()


def write_fracture_dataset(
    out: str | Path,
    cfg: FractureDatasetConfig = FractureDatasetConfig(),
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Write the dataset to `out` (see the module docstring); keep it if already complete.

    Args:
        out: dataset folder (must not exist, unless it holds this very dataset).
        cfg: parameters.
        workers: processes rendering volumes in parallel (each with 1 Numba thread when > 1).
        progress: show a tqdm bar over volumes.

    Returns:
        `out` as a Path.

    Raises:
        FileExistsError: `out` exists but is not this dataset (names the folder).
        ValueError: bad parameters, no volumes, too few volumes for the splits
            (`check_split_sizes`), or a volume without a bone to fracture.
    """
    from tqdm import tqdm

    cfg.validate()
    out = Path(out)
    if is_complete(out, cfg):
        return out
    if out.exists():
        raise FileExistsError(
            f"{out}: exists but is not a complete fracture dataset with these parameters; "
            "delete it or choose another --out"
        )
    entries = plan_volumes(cfg)
    check_split_sizes(len(entries), cfg)
    splits = split_volumes(len(entries), cfg.val_fraction, cfg.test_fraction, cfg.seed)
    partial = out.with_name(f".partial-{os.getpid()}-{out.name}")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "images").mkdir(parents=True)
    try:
        jobs = [(i, e, splits[i], cfg, str(partial)) for i, e in enumerate(entries)]
        results: list[list[dict]] = [[] for _ in jobs]
        bar = tqdm(total=len(jobs), desc="fracture dataset", unit="volume", disable=not progress)
        if workers <= 1:
            for job in jobs:
                results[job[0]] = volume_studies(*job)
                bar.update(1)
        else:
            context = multiprocessing.get_context("spawn")  # Numba/OpenMP do not survive fork
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = {pool.submit(volume_studies, *job, threads=1): job[0] for job in jobs}
                for future in futures:
                    results[futures[future]] = future.result()
                    bar.update(1)
        bar.close()
        records = [r for rows in results for r in rows]
        _write_tables(partial, records)
        counts = {
            name: dict(
                studies=sum(r["split"] == name for r in records),
                positive=sum(r["split"] == name and r["label"] == 1 for r in records),
                volumes=splits.count(name),
            )
            for name in ("train", "val", "test")
        }
        info = dict(
            format=FORMAT,
            complete=True,
            config=cfg.to_dict(),
            volumes=[dict(asdict(e), split=splits[i]) for i, e in enumerate(entries)],
            counts=counts,
        )
        (partial / "dataset.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out
