"""`drrgen fracture` end to end: the dataset, its preview picture, and an idempotent rerun."""

import csv

from PIL import Image
from typer.testing import CliRunner

from drrgen.cli import app


def test_fracture_command_writes_dataset_and_preview(tmp_path):
    out = tmp_path / "fx"
    args = ["fracture", "--out", str(out), "phantoms=3", "studies_per_volume=4"]
    args += ["views.size=32", "--workers", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(out / "studies.csv", encoding="utf-8")))
    assert len(rows) == 12 and {r["label"] for r in rows} == {"0", "1"}
    assert Image.open(out / "preview.png").format == "PNG"
    assert "preview:" in result.output
    again = CliRunner().invoke(app, args)  # complete with these parameters: kept
    assert again.exit_code == 0 and len(list((out / "images").iterdir())) == 24


def test_the_pipeline_config_holds_the_defaults_and_takes_overrides():
    from pathlib import Path

    from drrgen.fracture.dataset import FractureDatasetConfig, load_fracture_config

    path = Path(__file__).parents[3] / "pipelines" / "fracture_synthetic.yaml"
    assert load_fracture_config(path) == FractureDatasetConfig()
    cfg = load_fracture_config(path, ["phantoms=40", "views.size=64", "fracture.gap_mm=[2,4]"])
    assert (cfg.phantoms, cfg.views.size, cfg.fracture.gap_mm) == (40, 64, (2.0, 4.0))
