"""A binary file (a PNG renamed .yaml) given as a config: one line naming the file, exit 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from drrgen.cli import app as drrgen_app
from drrgen.typed_config import ConfigError
from xmatch_train.cli import app as xmatch_app

from .conftest import assert_user_error

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x20\x00\x00\x00\x20\x08\x00\x00\x00\x00\xff"


@pytest.fixture
def binary_yaml(tmp_path):
    path = tmp_path / "photo.yaml"
    path.write_bytes(PNG)
    return path


def test_loaders_refuse_a_binary_file(binary_yaml):
    from drrgen.build.config import load_config as load_build
    from xmatch_train.config import load_config as load_train

    for load in (load_build, load_train):
        with pytest.raises(ConfigError, match="photo.yaml: not a YAML text file"):
            load(binary_yaml)


def test_drrgen_build_refuses_a_binary_config(binary_yaml, tmp_path):
    (tmp_path / "cts").mkdir()
    out = tmp_path / "s.zarr"
    args = ["build", "--ct-dir", str(tmp_path / "cts"), "--out", str(out)]
    result = CliRunner().invoke(drrgen_app, [*args, "--config", str(binary_yaml)])
    assert_user_error(result, str(binary_yaml), "not a YAML text file")
    assert not out.exists()


def test_xmatch_pretrain_refuses_a_binary_config(binary_yaml):
    result = CliRunner().invoke(xmatch_app, ["pretrain", "--config", str(binary_yaml)])
    assert_user_error(result, str(binary_yaml), "not a YAML text file")
