"""Small builders shared by tests (volumes with non-trivial affines; Ctrl-C during a run)."""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager

import numpy as np
import torch
import yaml
from scipy.spatial.transform import Rotation

from drrgen.volume import Volume


def rotation(axis, deg: float) -> np.ndarray:
    """(3, 3) right-handed rotation about `axis` by `deg` degrees (SciPy's, independent of
    `drrgen.geometry.rotation_matrix`)."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    return Rotation.from_rotvec(a * np.deg2rad(deg)).as_matrix()


def oblique_affine(spacing=(0.8, 1.1, 1.6), deg=(17.0, -23.0), origin=(-40.0, 25.0, -30.0)):
    """A rotated, anisotropic, offset-origin affine: (i, j, k, 1) -> LPS mm."""
    rot = rotation((0, 0, 1), deg[0]) @ rotation((1, 0.3, 0), deg[1])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def centred(affine: np.ndarray, shape_ijk) -> np.ndarray:
    """Shift `affine` so the grid centre sits at the physical origin."""
    out = affine.copy()
    centre = affine[:3, :3] @ ((np.asarray(shape_ijk) - 1) / 2.0)
    out[:3, 3] = -centre
    return out


def ball_volume(shape_ijk, affine, centre_mm, radius_mm, supersample: int = 4) -> Volume:
    """Partial-volume ball of value 1 (fraction of each voxel inside), elsewhere 0."""
    ni, nj, nk = shape_ijk
    offs = (np.arange(supersample) + 0.5) / supersample - 0.5
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    frac = np.zeros((nk, nj, ni), np.float32)
    for oi in offs:
        for oj in offs:
            for ok in offs:
                ijk = np.stack([i + oi, j + oj, k + ok], -1).reshape(-1, 3)
                xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
                inside = np.linalg.norm(xyz - centre_mm, axis=1) <= radius_mm
                frac += inside.reshape(frac.shape)
    return Volume(frac / supersample**3, affine, "ball")


def finite(state: dict) -> bool:
    """Whether every floating-point tensor of a state dict is finite."""
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


@contextmanager
def interrupted_when(path, min_step: int = 2, timeout: float = 60):
    """Within the block, send this process SIGINT (Ctrl-C) once checkpoint `path` holds
    `min_step` steps (never after the block). Python's own SIGINT handler is installed for the
    block, as in a fresh process: other tests' imports replace it (dask_jobqueue's runner)."""
    done = threading.Event()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def watch():
        deadline = time.time() + timeout
        while not done.is_set() and time.time() < deadline:
            try:
                if torch.load(path, weights_only=True)["step"] >= min_step:
                    os.kill(os.getpid(), signal.SIGINT)
                    return
            except Exception:  # not there yet, or being replaced
                pass
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        signal.signal(signal.SIGINT, previous)


def box_chords(volume: Volume, view) -> np.ndarray:
    """(H, W) mm length of each source->pixel segment inside the voxel box [-0.5, n - 0.5]."""
    inv = np.linalg.inv(volume.affine)
    s = inv[:3, :3] @ view.source + inv[:3, 3]
    p = view.pixel_centers() @ inv[:3, :3].T + inv[:3, 3]
    d = p - s
    lo, hi = -0.5, np.array(volume.shape_ijk) - 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        t_a, t_b = (lo - s) / d, (hi - s) / d
    t0 = np.clip(np.nanmax(np.minimum(t_a, t_b), axis=-1), 0, 1)
    t1 = np.clip(np.nanmin(np.maximum(t_a, t_b), axis=-1), 0, 1)
    length = np.linalg.norm(view.pixel_centers() - view.source, axis=-1)
    return np.maximum(t1 - t0, 0) * length


def tiny_ct(shift: int = 0, shape=(40, 36, 32)) -> Volume:
    """A (nk, nj, ni) HU volume: an elliptic soft-tissue cylinder with an off-centre bone rod,
    on an anisotropic, rotated grid with an offset origin."""
    nk, nj, ni = shape
    k, j, i = np.mgrid[:nk, :nj, :ni].astype(np.float32)
    data = np.full(shape, -1000.0, np.float32)
    body = ((i - ni / 2) / (0.42 * ni)) ** 2 + ((j - nj / 2) / (0.38 * nj)) ** 2 < 1
    data[body] = 40.0
    rod = (i - ni / 2 - 3 - shift) ** 2 + (j - nj / 2 + 2) ** 2 < 9
    data[rod & (k > 4) & (k < nk - 4)] = 1200.0
    c, s = np.cos(0.3), np.sin(0.3)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([1.6, 1.4, 2.0])
    affine[:3, 3] = [-25.0, 10.0, 40.0]
    return Volume(data, affine, "tiny")


# The trainer tests' tiny joint transformer (about 40 k parameters).
TINY_MODEL = dict(name="transformer", backbone="convstem", width=32, depth=2, heads=2, mlp_dim=64)


def tiny_config(store, run_dir, **data):
    """A few-step pretraining config on a toy store (`data` overrides the data section)."""
    return {
        "run_dir": str(run_dir),
        "data": {
            "stores": [store],
            "batch_size": 4,
            "num_workers": 0,
            "buffer": 8,
            "val_fraction": 0.3,
            "test_fraction": 0.3,
            "augment": {"brightness": 0.1, "contrast": 0.2, "invert": 0.2, "hflip": 0.5},
            **data,
        },
        "model": TINY_MODEL,
        "optim": {"lr": 2e-3, "warmup_steps": 2},
        "train": {
            "steps": 10,
            "log_every": 1,
            "val_every": 5,
            "val_batches": 2,
            "ckpt_every": 100,
            "threads": 1,
        },
    }


def write(tmp_path, cfg, name="cfg.yaml"):
    """`cfg` as a YAML file in `tmp_path`; returns its path."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path
