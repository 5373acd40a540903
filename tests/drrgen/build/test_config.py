from dataclasses import replace
from pathlib import Path

import pytest

from drrgen.build.config import BuildConfig, load_config
from drrgen.geometry.poses import SamplingConfig

ROOT = Path(__file__).resolve().parents[3]


def test_defaults_are_valid_and_documented_in_the_default_yaml():
    cfg = BuildConfig().validate()
    assert (cfg.views, cfg.size, cfg.patch) == (2, 256, 16)
    assert cfg.pairs == [(0, 1)] and cfg.patches_per_view == 256
    assert load_config(ROOT / "pipelines" / "build_default.yaml") == BuildConfig()


def test_pairs_for_more_views():
    assert BuildConfig(views=4).pairs == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


def test_block_is_reduced_to_samples_per_ct_and_must_divide_it():
    assert BuildConfig(samples_per_ct=8, block=32).validate().block == 8
    with pytest.raises(ValueError, match="multiple of block=4"):
        BuildConfig(samples_per_ct=10, block=4).validate()


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(views=1), "views must be >= 2"),
        (dict(size=100, patch=16), "size=100 must be a positive multiple of patch=16"),
        (dict(seed=-1), "seed must be >= 0"),
        (dict(mu_water=0.0), "mu_water must be > 0"),
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
    cfg = load_config(path, ["size=32", "sampling.primary_sigma_deg=3"])
    assert (cfg.size, cfg.patch, cfg.views) == (32, 8, 2)
    assert cfg.sampling.primary_sigma_deg == 3.0 and cfg.sampling.crop_fraction == (0.7, 0.9)
    assert BuildConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_yaml_keys_are_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sise: 64\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"c.yaml: unknown key\(s\) \['sise'\]"):
        load_config(path)


def test_overrides_and_defaults_include_name_the_file_and_key(tmp_path):
    (tmp_path / "base.yaml").write_text("size: 64\npatch: 8\n", encoding="utf-8")
    (tmp_path / "top.yaml").write_text("defaults: base.yaml\nviews: 3\n", encoding="utf-8")
    cfg = load_config(tmp_path / "top.yaml", ["sampling.crop_fraction=[0.5, 1]"])
    assert (cfg.size, cfg.patch, cfg.views) == (64, 8, 3)
    assert cfg.sampling.crop_fraction == (0.5, 1.0)
    with pytest.raises(ValueError, match=r"top.yaml \+ overrides \['size=60'\]: size=60 must"):
        load_config(tmp_path / "top.yaml", ["size=60"])
    with pytest.raises(ValueError, match=r"sampling.sid: unknown key\(s\) \['sid'\]|unknown key"):
        load_config(None, ["sampling.sid=[900,1100]"])


def test_a_build_yaml_with_the_former_hu_air_key_still_loads(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("hu_air: -250.0\nsize: 64\n", encoding="utf-8")
    cfg = load_config(path)
    assert cfg.air_threshold_hu == -250.0 and cfg.size == 64
