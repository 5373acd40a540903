"""`xmatch eval` summarises runs that differ in their seed only as mean +- std."""

from __future__ import annotations

import json

from helpers import tiny_config, write
from typer.testing import CliRunner

from drrgen.typed_config import from_dict
from xmatch_train.cli import app
from xmatch_train.config import PretrainConfig, to_dict
from xmatch_train.pretrain.report import seed_groups, seeds_markdown


def config(**train) -> PretrainConfig:
    raw = to_dict(PretrainConfig())
    raw["train"].update(train)
    return from_dict(PretrainConfig, raw)


def test_runs_differing_in_seed_or_threads_only_are_grouped():
    configs = {
        "a": config(seed=0),
        "b": config(seed=1, threads=2),  # threads change no result
        "c": config(seed=0, steps=7),  # another setting: its own group
        "d": config(seed=2),
        "e": config(seed=2),  # a seed already grouped: not a fourth seed
    }
    assert seed_groups(configs) == [["a", "b", "d"], ["c"], ["e"]]


def test_the_seed_table_gives_mean_and_sample_std_of_each_group():
    rows = {
        n: dict(model="cnn", seed=s, mse=m, precision=0.5, recall=0.5, ap=ap, mean_ap=0.4)
        for n, s, m, ap in [("a", 0, 1e-3, 0.6), ("b", 1, 3e-3, 0.7), ("c", 0, 2e-3, 0.9)]
    }
    table = seeds_markdown(rows, [["a", "b"], ["c"]])
    assert "| a, b | - (CNN only) | 0, 1 | 2.00e-03 ± 1.41e-03 | 50.0 ± 0.0 | 50.0 ± 0.0 " in table
    assert "| 65.0 ± 7.1 | 25.0 ± 7.1 |" in table and "| c |" not in table
    assert seeds_markdown(rows, [["a"], ["c"]]) == ""


def test_eval_of_two_seeds_writes_their_spread(store, tmp_path):
    runner = CliRunner()
    path = write(tmp_path, tiny_config(store, tmp_path / "runs" / "s0"))
    for seed in (0, 1):
        args = ["pretrain", "--config", str(path), "train.steps=4", f"train.seed={seed}",
                f"run_dir={tmp_path / 'runs' / f's{seed}'}"]  # fmt: skip
        assert runner.invoke(app, args).exit_code == 0
    out = tmp_path / "eval"
    runs = [a for s in (0, 1) for a in ("--run", str(tmp_path / "runs" / f"s{s}"))]
    result = runner.invoke(app, ["eval", "--store", store, *runs, "--out", str(out),
                                 "--workers", "0", "--figures", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    table = (out / "table.md").read_text(encoding="utf-8")
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    aps = [100 * metrics[n]["ap"] for n in ("s0", "s1")]
    line = next(x for x in table.splitlines() if x.startswith("| s0, s1 |"))
    assert line.split(" | ")[6].split(" ± ")[0] == f"{sum(aps) / 2:.1f}", line
