"""Realistic X-ray rendering (`xmatch_train.data.xray`): each effect's known properties, the
whole renderer's determinism and contract, the config keys, training and eval with it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from helpers import tiny_config, write
from typer.testing import CliRunner

from drrgen.typed_config import ConfigError
from xmatch_train.cli import app
from xmatch_train.config import changed_settings, load_config, to_dict
from xmatch_train.data import PairStream, StreamOptions, make_loader, read_meta, sample_mask
from xmatch_train.data.batch import BatchTransform
from xmatch_train.data.xray import (
    XrayConfig,
    add_noise,
    beer_lambert,
    clahe,
    collimation_mask,
    draw_params,
    eval_entropy,
    field_box,
    field_fraction,
    gaussian_blur,
    heel_field,
    log_transform,
    lowpass,
    marker_mask,
    render,
    window,
)

ON = XrayConfig(enabled=True, bone_weight=0.5, clahe=0.5, collimation=1.0, markers=1.0)


def drrs(v: int = 4, side: int = 64, seed: int = 0) -> torch.Tensor:
    """(V, 1, side, side) smooth positive line integrals (a blob per view plus a slab)."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij")
    c = torch.rand(v, 2, generator=g) - 0.5
    blob = torch.exp(-((x - c[:, :1, None]) ** 2 + (y - c[:, 1:, None]) ** 2) / 0.1)
    return (0.5 + 2.5 * blob).unsqueeze(1)


def test_beer_lambert_of_zero_is_the_dose_and_the_log_inverts_it():
    zero = torch.zeros(3, 1, 8, 8)
    dose = torch.tensor([10.0, 1e3, 1e5])
    counts = beer_lambert(zero, dose)
    assert torch.allclose(counts, dose.view(3, 1, 1, 1).expand_as(counts))
    line = drrs(3, 16)
    back = log_transform(beer_lambert(line, dose), dose, floor=1e-9)
    assert torch.allclose(back, line, atol=1e-4)


def test_noise_variance_of_the_log_image_scales_with_one_over_dose():
    # Var(-log(I / I0)) ~ 1 / (I0 exp(-L)) for Poisson counts: 1 / dose at L = 0.
    doses = torch.tensor([400.0, 4000.0, 40000.0])
    counts = beer_lambert(torch.zeros(3, 1, 128, 128), doses)
    noisy = add_noise(counts, torch.zeros(3), torch.tensor([1, 2, 3]))
    var = log_transform(noisy, doses).flatten(1).var(dim=1)
    np.testing.assert_allclose((var * doses).numpy(), 1.0, rtol=0.1)
    assert torch.equal(noisy, add_noise(counts, torch.zeros(3), torch.tensor([1, 2, 3])))


def test_electronic_noise_adds_its_variance_in_counts():
    counts = torch.full((1, 1, 128, 128), 100.0)
    noisy = add_noise(counts, torch.tensor([5.0]), torch.tensor([7]))
    assert float(noisy.var()) == pytest.approx(100 + 25, rel=0.1)


def test_blur_keeps_the_mean_and_sigma_zero_is_the_identity():
    x = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    out = gaussian_blur(x, torch.tensor([0.5, 1.0, 2.0]))
    np.testing.assert_allclose(out.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), rtol=2e-3)
    assert out.std() < x.std()  # smoother
    assert torch.equal(gaussian_blur(x, torch.zeros(3)), x)
    assert torch.allclose(gaussian_blur(x, torch.tensor([0.0, 1.0, 0.0]))[0], x[0], atol=1e-6)


def test_scatter_lowpass_and_heel_keep_the_mean_of_a_flat_field():
    flat = torch.full((2, 1, 64, 64), 3.0)
    assert torch.allclose(lowpass(flat, 0.125), flat)
    heel = heel_field(flat.shape, torch.tensor([0.0, 0.2]), torch.tensor([0.0, 0.0]))
    assert torch.equal(heel[0], torch.ones_like(heel[0]))
    assert float(heel[1].mean()) == pytest.approx(1.0, abs=1e-5)
    assert float(heel[1, 0, 0, -1] - heel[1, 0, 0, 0]) == pytest.approx(0.4, abs=1e-5)


def test_collimation_zeroes_outside_the_field_only():
    cfg = XrayConfig(collimation=1.0, field=(0.5, 0.8))
    p = draw_params(np.arange(6)[:, None], cfg)
    mask = collimation_mask((6, 1, 40, 40), p)
    top, bottom, left, right = field_box(p, 40, 40)
    for v in range(6):
        r = (torch.arange(40) + 0.5).view(-1, 1)
        c = (torch.arange(40) + 0.5).view(1, -1)
        inside = (r >= top[v]) & (r < bottom[v]) & (c >= left[v]) & (c < right[v])
        assert torch.equal(mask[v, 0] > 0.5, inside)
        assert 0.5**2 - 0.1 <= float(mask[v].mean()) <= 0.8**2 + 0.1
    # The whole renderer: a constant scene is the same inside, clipped white outside.
    bare = dataclasses.replace(
        cfg, dose=(0.0, 0.0), blur=(0.0, 0.0), scatter=(0.0, 0.0), heel=0.0, markers=0.0
    )
    out = render(torch.ones(6, 1, 40, 40), np.arange(6)[:, None], bare)
    assert torch.all(out[mask < 0.5] == 1.0)
    off = collimation_mask(
        (6, 1, 40, 40), draw_params(np.arange(6)[:, None], XrayConfig(collimation=0.0))
    )
    assert torch.all(off == 1)  # collimation probability 0: nothing masked
    frac = field_fraction(mask, (4, 4))
    assert frac.shape == (6, 16) and float(frac.min()) >= 0 and float(frac.max()) <= 1


def test_markers_are_letters_inside_the_field():
    cfg = XrayConfig(markers=1.0, collimation=1.0)
    p = draw_params(np.arange(8)[:, None], cfg)
    m = marker_mask((8, 1, 64, 64), p)
    exposed = collimation_mask((8, 1, 64, 64), p)
    assert m.shape == (8, 1, 64, 64) and float(m.min()) >= 0 and float(m.max()) <= 1
    assert torch.all(m.flatten(1).amax(1) > 0.5)  # every view got a letter
    assert float((m * (1 - exposed)).max()) < 0.05  # inside the field
    p["marker"][:] = 0
    assert torch.all(marker_mask((8, 1, 64, 64), p) == 0)


def test_clahe_stays_in_range_and_spreads_a_low_contrast_image():
    g = torch.Generator().manual_seed(0)
    x = 0.45 + 0.1 * torch.rand(2, 1, 64, 64, generator=g)
    out = clahe(x, tiles=8, clip=3.0)
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert out.std() > 2 * x.std()
    with pytest.raises(ValueError, match="clahe_tiles"):
        clahe(torch.rand(1, 1, 60, 60), tiles=8)


def test_window_ignores_pixels_outside_the_mask():
    x = torch.linspace(0, 1, 64 * 64).view(1, 1, 64, 64).clone()
    mask = torch.ones_like(x)
    mask[..., :, 48:] = 0
    x[..., :, 48:] = 100.0  # unexposed: huge
    out = window(x, torch.tensor([0.0]), torch.tensor([100.0]), mask, stride=1)
    assert float(out[mask > 0.5].max()) == 1.0 and float(out[mask > 0.5].min()) == 0.0


def test_render_contract_determinism_and_independence_of_the_batch():
    line = drrs(6, 64)
    ent = np.arange(6)[:, None] + 10
    out = render(line, ent, ON)
    assert out.shape == (6, 1, 64, 64) and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.equal(out, render(line, ent, ON))
    alone = render(line[2:3], ent[2:3], ON)  # the same alone as in a batch (conv rounding)
    assert torch.allclose(out[2:3], alone, atol=1e-5)
    assert not torch.equal(out, render(line, ent + 1, ON))
    assert torch.equal(render(line.half(), ent, ON), render(line.half().float(), ent, ON))


def test_switching_one_effect_off_leaves_the_other_draws():
    ent = np.arange(5)[:, None]
    a = draw_params(ent, ON)
    b = draw_params(ent, dataclasses.replace(ON, blur=(0.0, 0.0), markers=0.0))
    for key in a:
        if key not in ("blur", "marker"):
            assert torch.equal(a[key], b[key]), key
    assert torch.all(b["blur"] == 0) and torch.all(b["marker"] == 0)


def fake_batch(b: int = 3, side: int = 64, grid: int = 4, train: bool = True) -> dict:
    g = torch.Generator().manual_seed(1)
    batch = {
        "drr": drrs(2 * b, side).view(b, 2, side, side).half(),
        "photo": torch.tensor([1.0, 0.0, 0.0]).repeat(b, 2, 1),
        "corr_0to1": torch.rand(b, grid * grid, grid * grid, generator=g).half(),
        "info": torch.tensor([[0, 1, 0, 0, k] for k in range(b)]),
    }
    if train:
        batch["xray_seed"] = torch.arange(2 * b).view(b, 2)
    return batch


def test_batch_transform_renders_without_touching_corr():
    batch = fake_batch()
    plain = BatchTransform(image_size=32)(batch)
    real = BatchTransform(image_size=32, xray=ON)(batch)
    assert real["view0"].shape == plain["view0"].shape == (3, 1, 32, 32)
    assert real["view0"].dtype == torch.float32
    assert torch.equal(real["corr_0to1"], plain["corr_0to1"])
    assert torch.equal(real["corr_0to1"], batch["corr_0to1"].float())
    assert not torch.allclose(real["view0"], plain["view0"])
    # Without worker seeds (evaluation): fixed by render_seed, store, sample, pair and view.
    ev = fake_batch(train=False)
    first = BatchTransform(xray=ON)(ev)["view1"]
    assert torch.equal(first, BatchTransform(xray=ON)(ev)["view1"])
    other = BatchTransform(xray=dataclasses.replace(ON, render_seed=1))(ev)["view1"]
    assert not torch.equal(first, other)
    rows = eval_entropy(ev["info"], 0)
    assert rows.shape == (6, 6) and rows[1].tolist() == [0, 0, 0, 0, 1, 1]


def test_config_keys_and_range_errors():
    cfg = load_config(None, ["data.xray.enabled=true", "data.xray.dose=[100, 1000]"])
    assert cfg.data.xray.enabled and cfg.data.xray.dose == (100.0, 1000.0)
    assert not load_config(None).data.xray.enabled  # off by default
    bad = {
        "data.xray.heel=1.5": "data.xray.heel: must be in \\[0, 1\\)",
        "data.xray.field=[0.9, 0.5]": "data.xray.field: must be a range",
        "data.xray.dose=[-1, 10]": "data.xray.dose",
        "data.xray.clahe=2": "data.xray.clahe: must be a probability",
        "data.xray.window_low=[0, 99]": "data.xray.window_high: must be above",
        "data.xray.blur=1": "data.xray.blur",  # a range needs two values
        "data.xray.gamma=[0, 1]": "data.xray.gamma: must be > 0",
        "data.xray.colour=1": "colour",  # unknown key
    }
    for override, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            load_config(None, [override])


def test_training_items_carry_fixed_render_seeds(store):
    meta = read_meta(store)
    opts = StreamOptions(batch_size=4, seed=3, train=True, geometry=False)
    stream = PairStream([meta], [sample_mask(meta, None)], opts)
    stream.set_epoch(0)
    a = next(iter(make_loader(stream)))
    stream.set_epoch(0)
    b = next(iter(make_loader(stream)))
    assert a["xray_seed"].shape == (4, 2) and a["xray_seed"].dtype == torch.int64
    assert torch.equal(a["xray_seed"], b["xray_seed"])
    stream.set_epoch(1)
    assert not torch.equal(next(iter(make_loader(stream)))["xray_seed"], a["xray_seed"])


@pytest.mark.slow
def test_train_with_realism_then_eval_plain_and_realistic(store, tmp_path):
    runner = CliRunner()
    run = tmp_path / "runs" / "xr"
    path = write(tmp_path, tiny_config(store, run))
    args = ["pretrain", "--config", str(path), "train.steps=2", "data.xray.enabled=true"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    aps = {}
    for render_mode in ("plain", "realistic", "run"):
        out = tmp_path / render_mode
        result = runner.invoke(app, ["eval", "--store", store, "--run", str(run), "--out",
                                     str(out), "--workers", "0", "--figures", "0",
                                     "--render", render_mode])  # fmt: skip
        assert result.exit_code == 0, result.output
        aps[render_mode] = json.loads((out / "metrics.json").read_text())["xr"]["ap"]
    assert aps["run"] != aps["plain"]  # the run renders realistically by its config
    result = runner.invoke(app, ["eval", "--store", store, "--run", str(run), "--out",
                                 str(tmp_path / "x"), "--render", "pretty"])  # fmt: skip
    assert result.exit_code == 2 and "--render" in result.output


def test_runs_saved_before_the_option_resume_unchanged():
    cfg = load_config(None)
    saved = to_dict(cfg)
    del saved["data"]["xray"]  # a config.yaml written before data.xray existed
    assert changed_settings(cfg, saved) == {}
    on = load_config(None, ["data.xray.enabled=true"])
    assert changed_settings(on, saved) == {"data.xray.enabled": (False, True)}
