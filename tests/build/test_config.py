from dataclasses import replace
from pathlib import Path

import pytest

from drrgen.build.config import BuildConfig, load_config, with_overrides
from drrgen.geometry.poses import SamplingConfig

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_valid_and_documented_in_the_default_yaml():
    cfg = BuildConfig().validate()
    assert (cfg.views, cfg.size, cfg.patch) == (2, 256, 16)
    assert cfg.pairs == [(0, 1)] and cfg.patches_per_view == 256
    assert load_config(ROOT / "pipelines" / "build_default.yaml") == BuildConfig()


def test_pairs_for_more_views():
    assert BuildConfig(views=4).pairs == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


def test_block_is_reduced_to_samples_per_ct_and_must_divide_it():
    assert BuildConfig(samples_per_ct=8, block=32).validate().block == 8
    with pytest.raises(ValueError, match="multiple of --block"):
        BuildConfig(samples_per_ct=10, block=4).validate()


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(views=1), "--views"),
        (dict(size=100, patch=16), "multiple of --patch"),
        (dict(seed=-1), "--seed"),
        (dict(mu_water=0.0), "--mu-water"),
        (dict(sampling=SamplingConfig(crop_fraction=(0.5, 1.5))), "crop_fraction"),
        (dict(sampling=SamplingConfig(primary_probs=(1.0,))), "equal lengths"),
    ],
)
def test_bad_values_are_refused_with_the_option_named(bad, match):
    with pytest.raises(ValueError, match=match):
        replace(BuildConfig(), **bad).validate()


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "size: 64\npatch: 8\nsampling:\n  crop_fraction: [0.7, 0.9]\n", encoding="utf-8"
    )
    cfg = load_config(path)
    assert cfg.size == 64 and cfg.sampling.crop_fraction == (0.7, 0.9)
    assert cfg.views == 2  # missing keys take the defaults
    cfg = with_overrides(cfg, {"size": 32, "views": None, "sampling.primary_sigma_deg": 3.0})
    assert (cfg.size, cfg.patch, cfg.views) == (32, 8, 2)
    assert cfg.sampling.primary_sigma_deg == 3.0 and cfg.sampling.crop_fraction == (0.7, 0.9)
    assert BuildConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_yaml_keys_are_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sise: 64\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"c.yaml: unknown key\(s\) \['sise'\]"):
        load_config(path)
