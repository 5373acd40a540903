"""``xmatch finetune-corr`` on the tiny stand-in, and ``xmatch eval --annotations``."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import TINY_MODEL
from typer.testing import CliRunner

from xmatch_train.cli import app
from xmatch_train.config import load_config
from xmatch_train.corr_finetune import CorrFinetuneConfig, finetune_corr, read_annotations
from xmatch_train.corr_finetune.data import split_pairs


def _config(tmp_path, standin, **top) -> CorrFinetuneConfig:
    cfg = dict(
        run_dir=str(tmp_path / "run"),
        data=dict(annotations=str(standin), batch_size=4, val_fraction=0.2, test_fraction=0.3),
        train=dict(steps=3, log_every=1, val_every=3, ckpt_every=100, threads=1),
        optim=dict(lr=1e-4),
        **top,
    )
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return load_config(path, cls=CorrFinetuneConfig)


def test_split_by_pair_is_seeded_and_respects_the_file():
    class P:
        def __init__(self, i, split=None):
            self.id, self.split = f"p{i}", split

    pairs = [P(i) for i in range(10)]
    s = split_pairs(pairs, 0.1, 0.3, 0)
    assert [len(s[k]) for k in ("train", "val", "test")] == [6, 1, 3]
    assert s == split_pairs(pairs, 0.1, 0.3, 0) != split_pairs(pairs, 0.1, 0.3, 1)
    given = split_pairs([P(0, "test"), P(1, "train")], 0.1, 0.3, 0)
    assert given == dict(train=["p1"], val=[], test=["p0"])


def test_finetune_from_the_pretrained_run(tmp_path, standin, tiny_pretrained, one_thread):
    run = finetune_corr(_config(tmp_path, standin, init_from=str(tiny_pretrained)))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["head"] == "prior" and saved["data"]["image_size"] == 64
    split = json.loads((run / "split.json").read_text())["pairs"]
    assert [len(split[k]) for k in ("train", "val", "test")] == [6, 2, 4]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["score"] == "ap"
    assert (run / "ckpt" / "best.pt").is_file() and (run / "train_mean.npz").is_file()
    out = tmp_path / "eval"
    args = ["eval", "--annotations", standin, "--run", tiny_pretrained, "--run", run,
            "--out", out, "--split", "test", "--device", "cpu", "--paper"]  # fmt: skip
    result = CliRunner().invoke(app, list(map(str, args)))
    assert result.exit_code == 0, result.output
    record = json.loads((out / "metrics.json").read_text())
    rows = [r["row"] for r in record["runs"]]
    assert rows[0].startswith("zero-shot") and rows[1].startswith("pretrained + fine-tuned")
    assert record["runs"][0]["pairs"] == record["runs"][1]["pairs"] == sorted(split["test"])
    assert record["runs"][0]["metrics"]["entries"] == 4 * 7
    assert record["runs"][0]["chance"]["ap"] == pytest.approx(2 / 7)
    text = (out / "table.md").read_text()
    assert "chance" in text and "training mean matrix" in text and "83.8" in text
    pair = read_annotations(standin)[0]
    args = ["match", pair.image0, pair.image1, "--run", run, "--out", tmp_path / "m",
            "--no-figure", "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(app, list(map(str, args)))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m" / "matches.json").read_text())["grid"] == [4, 4]


def test_finetune_from_scratch(tmp_path, standin, one_thread):
    model = {**TINY_MODEL, "head": "prior", "grid": 4}
    _config(tmp_path, standin, model=model)  # writes cfg.yaml
    cfg = load_config(
        tmp_path / "cfg.yaml", ["data.image_size=64", "data.augment.contrast=0.2"],
        cls=CorrFinetuneConfig,
    )  # fmt: skip
    run = finetune_corr(cfg)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r.get("split") == "val"] == [3]
    assert 0 <= log[-1]["ap"] <= 1


def test_cli_errors_are_one_line(tmp_path, standin):
    result = CliRunner().invoke(app, ["finetune-corr", "--config", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "none.yaml" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    result = CliRunner().invoke(app, ["eval", "--annotations", str(bad), "--run", str(tmp_path),
                                      "--out", str(tmp_path / "o")])  # fmt: skip
    assert result.exit_code == 2 and "bad.json: invalid JSON" in result.output
    cfg = dict(data=dict(annotations=str(standin)), model=TINY_MODEL, run_dir=str(tmp_path / "r"))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    result = CliRunner().invoke(app, ["finetune-corr", "--config", str(path)])
    assert result.exit_code == 2 and "data.image_size: required" in result.output
