"""End-to-end builds on tiny CTs: contents, resume, refusals, determinism across workers."""

import numpy as np
import pytest
import zarr

from drrgen.build import BuildConfig, ClusterOptions, StoreError, build
from drrgen.build.inspect import verify_store
from drrgen.build.store import open_store
from drrgen.correspondence import correspondence
from drrgen.geometry import View
from drrgen.projector import project
from drrgen.store_contract import ARRAY_NAMES, CHECKSUMMED
from drrgen.volume import read_ct

IN_PROCESS = ClusterOptions(workers=0)


def _arrays(url):
    group = zarr.open_group(str(url), mode="r")
    return {name: group[name][:] for name in ARRAY_NAMES}


def _assert_same(a, b):
    for name in ARRAY_NAMES:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.fixture(scope="module")
def reference(ct_dir, tmp_path_factory):
    """A clean in-process build of the tiny CTs."""
    url = tmp_path_factory.mktemp("ref") / "ref.zarr"
    cfg = BuildConfig(samples_per_ct=4, block=2, size=32, patch=8, seed=3)
    summary = build(ct_dir, url, cfg, IN_PROCESS, progress=False, echo=lambda s: None)
    return url, cfg, summary


def test_summary_times_the_warm_up_and_the_first_block(reference):
    summary = reference[2]
    assert 0 < summary.warm_s < summary.first_block_s <= summary.seconds
    assert f"first block {summary.first_block_s:.1f} s" in summary.format()


def test_summary_counts_the_page_faults_of_every_stage(reference):
    summary = reference[2]
    assert all(f"faults_{k}" in summary.timings for k in ("read", "sample", "drr", "corr"))
    after_read = sum(
        v for k, v in summary.timings.items() if k.startswith("faults_") and k != "faults_read"
    )
    assert f"memory     {after_read / summary.written:.0f} minor page faults per sample" in (
        summary.format()
    )


def test_the_clock_charges_page_faults_to_their_stage():
    from drrgen.build.tasks import Clock

    clock = Clock()
    clock.lap("idle")
    fresh = np.ones(64 << 20, np.uint8)  # 64 MiB written: mapped afresh, its pages faulted in
    clock.lap("fill")
    assert fresh[-1] == 1
    assert clock.seconds["faults_fill"] >= 32  # 2 MiB huge pages at most
    assert clock.seconds["faults_idle"] < clock.seconds["faults_fill"]


def test_a_failing_warm_up_is_one_warning_and_the_build_goes_on(ct_dir, tmp_path, monkeypatch):
    import drrgen.build.pipeline as pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler today")

    monkeypatch.setattr(pipeline, "warm_kernels", broken)
    lines = []
    cfg = BuildConfig(samples_per_ct=2, block=2, size=32, patch=8, seed=3)
    summary = build(ct_dir, tmp_path / "s.zarr", cfg, IN_PROCESS, progress=False, echo=lines.append)
    assert summary.complete and summary.warm_s == 0.0
    warning = "warning: kernel warm-up failed (RuntimeError: no compiler today); workers compile"
    assert warning in lines


def test_store_holds_exactly_what_project_and_correspondence_return(reference, ct_dir):
    url, cfg, summary = reference
    assert summary.complete and summary.written == 8 and not summary.failed
    group = open_store(url)
    attrs = dict(group.attrs)
    assert attrs["complete"] and attrs["pairs"] == [[0, 1]]
    assert [v["path"] for v in attrs["volumes"]] == ["a/ct0.nii.gz", "b/ct1.mha"]
    assert verify_store(str(url)).ok
    data = _arrays(url)
    np.testing.assert_array_equal(data["volume_id"], [0, 0, 0, 0, 1, 1, 1, 1])
    for i in (0, 5):
        vol = attrs["volumes"][int(data["volume_id"][i])]
        hu = read_ct(ct_dir / vol["path"])
        np.testing.assert_allclose(np.array(vol["affine"]), hu.affine)
        start, stop = data["crop"][i]
        views = [View.from_vector(g, (32, 32)) for g in data["geometry"][i]]
        mu = hu.to_mu(cfg.mu_water).crop(start, stop)
        for k, view in enumerate(views):
            expected = project(mu, view).astype(np.float16)
            np.testing.assert_array_equal(data["views"][i, k], expected)
        corr = correspondence(
            hu.crop(start, stop), views, patch=8, air_threshold_hu=cfg.air_threshold_hu
        )
        np.testing.assert_array_equal(data["corr"][i], corr.astype(np.float16))
        assert data["views"][i].max() > 0.5 and 0.5 < data["corr"][i].max() <= 1.0


def test_rerun_builds_only_missing_blocks_and_matches(reference, ct_dir, tmp_path):
    url, cfg, _ = reference
    copy = tmp_path / "copy.zarr"
    build(ct_dir, copy, cfg, IN_PROCESS, progress=False, echo=lambda s: None)
    group = zarr.open_group(str(copy), mode="r+")
    group["volume_id"][2:4] = -1  # block 1 "lost"
    group["views"][2:4] = np.nan
    summary = build(ct_dir, copy, cfg, IN_PROCESS, progress=False, echo=lambda s: None)
    assert summary.present_before == 6 and summary.written == 2 and summary.complete
    _assert_same(_arrays(copy), _arrays(url))
    again = build(ct_dir, copy, cfg, IN_PROCESS, progress=False, echo=lambda s: None)
    assert again.written == 0 and again.complete


def test_other_parameters_are_refused_unless_overwrite(reference, ct_dir, tmp_path):
    url, cfg, _ = reference
    copy = tmp_path / "c.zarr"
    build(ct_dir, copy, cfg, IN_PROCESS, progress=False, echo=lambda s: None)
    other = BuildConfig(samples_per_ct=4, block=2, size=32, patch=8, seed=4)
    with pytest.raises(StoreError, match=r"(?s)seed: store has 3, this run asks 4.*--overwrite"):
        build(ct_dir, copy, other, IN_PROCESS, progress=False, echo=lambda s: None)
    summary = build(
        ct_dir, copy, other, IN_PROCESS, overwrite=True, progress=False, echo=lambda s: None
    )
    assert summary.written == 8 and open_store(copy).attrs["params"]["seed"] == 4


def test_a_store_written_with_the_former_hu_air_name_still_resumes(reference, ct_dir, tmp_path):
    url, cfg, _ = reference
    import shutil

    old = tmp_path / "old.zarr"
    shutil.copytree(url, old)
    group = zarr.open_group(str(old), mode="r+")
    params = dict(group.attrs["params"])
    params["hu_air"] = params.pop("air_threshold_hu")
    group.attrs["params"] = params
    group.attrs["hu_air"] = group.attrs["air_threshold_hu"]
    del group.attrs["air_threshold_hu"]
    again = build(ct_dir, old, cfg, IN_PROCESS, progress=False, echo=lambda s: None)
    assert again.written == 0 and again.complete
    verify_store(old)


def test_changed_input_is_refused(reference, ct_dir, tmp_path):
    url, cfg, _ = reference
    import shutil

    cts = tmp_path / "cts"
    shutil.copytree(ct_dir, cts)
    out = tmp_path / "c.zarr"
    build(cts, out, cfg, IN_PROCESS, progress=False, echo=lambda s: None)
    (cts / "b" / "ct1.mha").write_bytes((cts / "b" / "ct1.mha").read_bytes() + b"\0")
    with pytest.raises(StoreError, match="b/ct1.mha changed since its samples were built"):
        build(cts, out, cfg, IN_PROCESS, progress=False, echo=lambda s: None)
    (cts / "c").mkdir()
    shutil.copy(cts / "a" / "ct0.nii.gz", cts / "c" / "new.nii.gz")
    with pytest.raises(StoreError, match="other volumes"):
        build(cts, out, cfg, IN_PROCESS, progress=False, echo=lambda s: None)


def test_a_store_whose_creation_was_cut_short_is_recreated(reference, ct_dir, tmp_path):
    url, cfg, _ = reference
    out = tmp_path / "p.zarr"
    build(ct_dir, out, cfg, IN_PROCESS, progress=False, echo=lambda s: None)
    import shutil

    shutil.rmtree(out / "volume_id")  # as if killed while creating the arrays
    summary = build(ct_dir, out, cfg, IN_PROCESS, progress=False, echo=lambda s: None)
    assert summary.complete and summary.present_before == 0
    _assert_same(_arrays(out), _arrays(url))


def test_never_overwrites_something_that_is_not_a_drrgen_store(ct_dir, tiny_cfg, tmp_path):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work", encoding="utf-8")
    with pytest.raises(StoreError, match="(?s)no Zarr store.*Refusing"):
        build(
            ct_dir,
            target,
            tiny_cfg,
            IN_PROCESS,
            overwrite=True,
            progress=False,
            echo=lambda s: None,
        )
    assert (target / "thesis.tex").exists()


def test_fsspec_url_store(reference, ct_dir, tmp_path):
    url, cfg, _ = reference
    uri = (tmp_path / "f.zarr").as_uri()  # file://... goes through zarr's FsspecStore
    summary = build(ct_dir, uri, cfg, IN_PROCESS, progress=False, echo=lambda s: None)
    assert summary.complete
    assert type(open_store(uri).store).__name__ == "FsspecStore"
    assert verify_store(uri).ok
    _assert_same(_arrays(tmp_path / "f.zarr"), _arrays(url))


@pytest.mark.timeout(180)
def test_one_local_worker_and_two_external_workers_give_identical_stores(
    reference, ct_dir, tmp_path
):
    """A LocalCluster started by `build` (1 worker), then a running scheduler (2 workers)."""
    from distributed import LocalCluster

    url, cfg, _ = reference
    out = tmp_path / "w1.zarr"
    summary = build(
        ct_dir, out, cfg, ClusterOptions(workers=1, threads=1), progress=False, echo=lambda s: None
    )
    assert summary.complete and "local Dask cluster, 1 workers" in summary.where
    _assert_same(_arrays(out), _arrays(url))

    env = {"NUMBA_NUM_THREADS": "1", "NUMBA_THREADING_LAYER": "omp"}
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, env=env, dashboard_address=None
    ) as cluster:
        out = tmp_path / "w2.zarr"
        summary = build(
            ct_dir,
            out,
            cfg,
            ClusterOptions(scheduler=cluster.scheduler_address),
            progress=False,
            echo=lambda s: None,
        )
    assert summary.complete and summary.where.startswith("Dask scheduler tcp://")
    _assert_same(_arrays(out), _arrays(url))


@pytest.mark.timeout(240)
def test_a_cluster_without_workers_is_reported_not_waited_for_forever(ct_dir, tiny_cfg, tmp_path):
    from distributed import Client, LocalCluster

    from drrgen.build.cluster import Runner
    from drrgen.build.pipeline import _run_tasks
    from drrgen.build.tasks import BlockTask, Job

    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            runner = Runner(client, 1, "an empty cluster", no_workers_timeout_s=0.5)
            job = Job(str(tmp_path / "x.zarr"), None, tiny_cfg.to_dict(), None)
            tasks = [BlockTask(0, 0, 0, str(ct_dir / "a" / "ct0.nii.gz"))]
            with pytest.raises(RuntimeError, match="no Dask worker for 0 s.*rerun"):
                list(_run_tasks(runner, tasks, job))


def test_torch_device_store_agrees_with_the_cpu_store(reference, ct_dir, tmp_path):
    # `device` is a run-time option: same parameters, so the same store (no --overwrite
    # needed to resume on another device), DRRs equal to float16 rounding of 1e-5 relative
    # differences, everything else bitwise (correspondence stays on the CPU).
    url, cfg, _ = reference
    out = tmp_path / "torch.zarr"
    build(ct_dir, out, cfg, IN_PROCESS, progress=False, echo=lambda s: None, device="torch:cpu")
    ref, got = _arrays(url), _arrays(out)
    for name in ARRAY_NAMES:
        if name not in ("views", "checksum"):
            np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
    # The checksums of everything but the views (both paths read the same 16-bit steps, but
    # their sums round differently: a view may differ in its last float16 bit, and so its
    # checksum).
    others = [i for i, name in enumerate(CHECKSUMMED) if name != "views"]
    np.testing.assert_array_equal(got["checksum"][:, others], ref["checksum"][:, others])
    a, b = ref["views"].astype(np.float32), got["views"].astype(np.float32)
    # float16 keeps 11 bits: a 1e-6 difference may flip the last one (2**-11 relative).
    assert np.all(np.abs(a - b) <= 2.0**-10 * np.abs(a)), "views differ beyond float16 rounding"
    assert np.mean(a == b) > 0.99
