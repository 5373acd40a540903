"""Damaged stores and interrupts in `xmatch pretrain` / `xmatch eval`: a damaged block stops the
run naming the store, block and samples before anything of it is saved (the store check); a
diverging run stops at its first non-finite step naming the batch (the training guard);
validation and evaluation name the damaged samples; Ctrl-C prints the command that resumes."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from helpers import finite, interrupted_when, tiny_config, write
from typer.testing import CliRunner

from xmatch_train.cli import app
from xmatch_train.interrupts import InterruptSafeLoader
from xmatch_train.testing import write_toy_store
from xmatch_train.train import load_checkpoint, save_checkpoint
from xmatch_train.train.logger import read_log
from xmatch_train.train.loop import EpochIterator


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    """3 phantoms x 8 samples in shards of 4 (shard k holds samples 4k .. 4k + 3)."""
    return write_toy_store(tmp_path_factory.mktemp("healthy") / "s.zarr", n_volumes=3)


def damaged(healthy, tmp_path, array: str, shard: int):
    """A copy of the store with one shard file of `array` deleted (read back as NaN fill)."""
    path = tmp_path / "damaged.zarr"
    shutil.copytree(healthy, path)
    (path / array / "c" / str(shard) / "0" / "0" / "0").unlink()
    return path


def test_a_damaged_block_stops_training_before_anything_of_it_is_saved(healthy, tmp_path):
    store = damaged(healthy, tmp_path, "views", shard=1)  # samples 4 .. 7
    cfg = tiny_config(str(store), tmp_path / "run", val_fraction=0.0, test_fraction=0.0)
    cfg["train"]["ckpt_every"] = 1
    result = CliRunner().invoke(app, ["pretrain", "--config", str(write(tmp_path, cfg))])
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert re.fullmatch(rf"error: {store}: block 1 is damaged: views: missing or unreadable "
                        r"\(reads as the fill value\) in samples \[4, 5, 6, 7\]\. Repair it "
                        rf"with `drrgen verify {store} --repair`", line), line  # fmt: skip
    last = tmp_path / "run" / "ckpt" / "last.pt"
    assert not last.exists() or finite(load_checkpoint(last)["model"])
    log = tmp_path / "run" / "log.jsonl"
    assert not log.exists() or all(math.isfinite(r["loss"]) for r in read_log(log))
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_diverging_run_stops_at_the_first_non_finite_step(healthy, tmp_path):
    # Healthy data, an absurd learning rate: the guard (not the store check) stops it.
    cfg = tiny_config(str(healthy), tmp_path / "run", val_fraction=0.0, test_fraction=0.0)
    cfg["train"]["ckpt_every"] = 1
    cfg["optim"]["lr"] = 1e30
    result = CliRunner().invoke(app, ["pretrain", "--config", str(write(tmp_path, cfg))])
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    found = re.match(rf"error: step (\d+): non-finite (loss|gradient)[^;]* on the batch of "
                     rf"{healthy} samples ([\d, ]+); stopped before saving anything of it",
                     line)  # fmt: skip
    assert found, line
    step = int(found[1])
    ckpt_path = tmp_path / "run" / "ckpt" / "last.pt"
    if step > 1:
        ckpt = load_checkpoint(ckpt_path)
        assert ckpt["step"] == step - 1 and finite(ckpt["model"])  # the last finite state
    log = read_log(tmp_path / "run" / "log.jsonl") if step > 1 else []
    assert [r["step"] for r in log] == list(range(1, step))
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_damaged_training_corr_is_named_before_training(healthy, tmp_path):
    store = damaged(healthy, tmp_path, "corr", shard=2)  # samples 8 .. 11
    cfg = tiny_config(str(store), tmp_path / "run", val_fraction=0.0, test_fraction=0.0)
    result = CliRunner().invoke(app, ["pretrain", "--config", str(write(tmp_path, cfg))])
    assert result.exit_code == 2, result.output
    expected = rf"error: {store}: block 2 is damaged: corr: [^\n]* in samples \[8, 9, 10, 11\]"
    assert re.fullmatch(expected + r"\. Repair it [^\n]*\n", result.output), result.output
    assert not (tmp_path / "run" / "ckpt").exists()


def test_validation_and_eval_name_damaged_samples(healthy, tmp_path):
    runner = CliRunner()
    store = tmp_path / "s.zarr"
    shutil.copytree(healthy, store)
    cfg = tiny_config(str(store), tmp_path / "run")
    cfg["train"].update(ckpt_every=1)
    args = ["pretrain", "--config", str(write(tmp_path, cfg))]
    assert runner.invoke(app, args + ["train.stop_after=2"]).exit_code == 0
    split = (tmp_path / "run" / "split.json").read_text(encoding="utf-8")
    vid = int(re.search(r'"val": \[\s*\{[^}]*"id": (\d+)', split)[1])
    (store / "views" / "c" / str(2 * vid) / "0" / "0" / "0").unlink()  # its first 4 samples
    result = runner.invoke(app, args)  # resumes; the validation at step 5 meets them
    assert result.exit_code == 2, result.output
    error = result.output.strip().splitlines()[-1]
    found = re.match(rf"error: {store}: block \d+ is damaged: views: [^\[]* samples \[([\d, ]+)\]",
                     error)  # fmt: skip
    assert found, error
    assert {int(s) for s in found[1].split(", ")} == set(range(8 * vid, 8 * vid + 4))
    assert load_checkpoint(tmp_path / "run" / "ckpt" / "last.pt")["step"] == 4
    out = ["--out", str(tmp_path / "eval"), "--workers", "0", "--figures", "0", "--split", "val"]
    result = runner.invoke(
        app, ["eval", "--store", str(store), "--run", str(tmp_path / "run")] + out
    )
    assert result.exit_code == 2 and "is damaged: views" in result.output, result.output


def test_eval_names_a_checkpoint_with_non_finite_weights(store, tmp_path):
    runner = CliRunner()
    cfg = tiny_config(store, tmp_path / "run")
    args = ["pretrain", "--config", str(write(tmp_path, cfg)), "train.steps=2"]
    assert runner.invoke(app, args).exit_code == 0
    for name in ("best", "last"):  # as written by versions without the guard
        path = tmp_path / "run" / "ckpt" / f"{name}.pt"
        ckpt = load_checkpoint(path)
        ckpt["model"]["encoder.proj.bias"].fill_(math.nan)
        save_checkpoint(path, ckpt)
    out = ["--out", str(tmp_path / "eval"), "--workers", "0", "--figures", "0"]
    result = runner.invoke(app, ["eval", "--store", store, "--run", str(tmp_path / "run")] + out)
    assert result.exit_code == 2, result.output
    assert "the model predicts non-finite values from finite inputs" in result.output


def test_ctrl_c_prints_the_resume_command(store, tmp_path):
    cfg = tiny_config(store, tmp_path / "run")
    cfg["train"].update(steps=100_000, ckpt_every=1, val_every=0)  # runs until interrupted
    config = write(tmp_path, cfg)
    last = tmp_path / "run" / "ckpt" / "last.pt"
    with interrupted_when(last):
        result = CliRunner().invoke(
            app, ["pretrain", "--config", str(config), "train.resume=false"]
        )
    assert result.exit_code == 130, result.output
    assert "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    saved = load_checkpoint(last)["step"]
    assert re.fullmatch(
        rf"interrupted at step \d+ of 100000; {last} holds step {saved}; resume with: xmatch "
        rf"pretrain --config {config} train.resume=true",
        line,
    ), line
    again = line.split("resume with: xmatch ")[1].split() + ["train.stop_after=1"]
    result = CliRunner().invoke(app, again)
    assert result.exit_code == 0 and f"resuming at step {saved}" in result.output, result.output
    assert load_checkpoint(last)["step"] == saved + 1


def _cli(*args):
    return [sys.executable, "-m", "xmatch_train", *map(str, args)]


@pytest.mark.slow
def test_torchrun_ranks_stop_together_naming_the_damaged_block(healthy, tmp_path):
    store = damaged(healthy, tmp_path, "views", shard=2)  # samples 8 .. 11
    cfg = tiny_config(str(store), tmp_path / "run", val_fraction=0.0, test_fraction=0.0)
    cfg["data"].update(batch_size=2, num_workers=1)
    cfg["train"]["ckpt_every"] = 1
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    cmd = torchrun + ["2"] + _cli("pretrain", "--config", write(tmp_path, cfg))[1:]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    # torchrun stops the other rank when the first exits: one or two lines, the same; the
    # block's check (before its NaN fill reaches a step) names the block and its samples
    assert proc.returncode != 0 and len(set(errors)) == 1, proc.stderr
    assert f"{store}: block 2 is damaged" in errors[0], errors[0]
    assert "in samples [8, 9, 10, 11]" in errors[0], errors[0]
    last = tmp_path / "run" / "ckpt" / "last.pt"
    assert not last.exists() or finite(load_checkpoint(last)["model"])


def test_ctrl_c_while_an_epoch_starts_waits_until_its_loader_iterator_exists():
    # A terminal's Ctrl-C landing while a DataLoader spawns its workers cut torch's iterator
    # off half-built, whose __del__ then printed a traceback: the trainer's loaders
    # (`InterruptSafeLoader`) hold it until their iterator exists, then deliver it.
    built = []

    class Loader(InterruptSafeLoader):
        def _get_iterator(self):  # where DataLoader.__iter__ builds the iterator
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # signal handlers run here, between bytecodes
            built.append(True)
            return super()._get_iterator()

    batches = EpochIterator(lambda epoch, skip: Loader([{"x": 1}], batch_size=None))
    # Python's own handler, as in `xmatch pretrain` (imports elsewhere in this test process,
    # e.g. dask_jobqueue's runner, install their own).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            next(batches)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert built == [True]


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_with_loader_workers(store, tmp_path):
    """SIGINT to the whole process group, as a terminal sends it, DataLoader workers included."""
    cfg = tiny_config(store, tmp_path / "run", num_workers=1)
    cfg["train"].update(steps=100_000, ckpt_every=2, val_every=0)
    last = tmp_path / "run" / "ckpt" / "last.pt"
    proc = subprocess.Popen(_cli("pretrain", "--config", write(tmp_path, cfg)), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))  # fmt: skip
    deadline = time.time() + 120
    while not last.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert re.search(rf"{last} holds step \d+; resume with: xmatch pretrain --config ", line), line
    assert load_checkpoint(last)["step"] % 2 == 0
