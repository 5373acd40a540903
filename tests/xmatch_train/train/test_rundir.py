"""The run folder's one layout: checkpoint lookup and the run of a checkpoint file."""

from __future__ import annotations

import pytest

from xmatch_train.train.rundir import RunDir


def test_best_falls_back_to_last_and_a_missing_checkpoint_names_the_run(tmp_path):
    run = RunDir(tmp_path / "r")
    with pytest.raises(FileNotFoundError, match=r"r: no checkpoint \(expected ckpt/best.pt"):
        run.find_checkpoint("best")
    run.ckpt("last").parent.mkdir(parents=True)
    run.ckpt("last").write_bytes(b"")
    assert run.find_checkpoint("best") == tmp_path / "r" / "ckpt" / "last.pt"
    run.ckpt("best").write_bytes(b"")
    assert run.find_checkpoint("best") == tmp_path / "r" / "ckpt" / "best.pt"
    assert run.find_checkpoint("last") == tmp_path / "r" / "ckpt" / "last.pt"


def test_the_run_of_a_checkpoint_file():
    assert RunDir.of_checkpoint("/a/run/ckpt/best.pt").root.as_posix() == "/a/run"
    assert RunDir.of_checkpoint("/a/run/model.pt").config.as_posix() == "/a/run/config.yaml"
