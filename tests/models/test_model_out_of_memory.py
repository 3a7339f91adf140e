"""A model too big for memory: one line naming the model and its sizes, not torch's allocator traceback, and
no half-written run folder. Nothing is really allocated: nn.Linear fails the way torch's CPU allocator does."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vaelab.cli import main
from vaelab.config import Config
from vaelab.errors import ConfigError
from vaelab.models import registry
from vaelab.models.registry import ModelSpec, build_model

from vaelab_testing import TINY_TRAIN

ALLOCATOR = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
    "allocate 3136000000000 bytes. Error code 12 (Cannot allocate memory)"
)


@pytest.fixture
def huge_linear_fails(monkeypatch):
    """nn.Linear with a side over 10^8 raises what torch raises when malloc fails (a real one would try)."""
    init = nn.Linear.__init__

    def linear(self, in_features, out_features, *args, **kwargs):
        if max(in_features, out_features) > 10**8:
            raise RuntimeError(ALLOCATOR)
        init(self, in_features, out_features, *args, **kwargs)

    monkeypatch.setattr(nn.Linear, "__init__", linear)


def _hidden(args: list[str], hidden: str) -> list[str]:
    args = list(args)
    args[args.index("--hidden") + 1] = hidden
    return args


def test_train_with_a_model_too_big_is_one_line_and_leaves_no_run(
    tmp_path, huge_linear_fails, capsys, one_line_error
):
    out = tmp_path / "X"
    code = main(["train", *_hidden(TINY_TRAIN, "1000000000"), "--out", str(out)])
    one_line_error(
        capsys,
        code,
        "vaelab train: error:",
        "model 'vae' (hidden [1000000000], latent_dim 2) does not fit in memory",
        "3136.0 GB",
        "--hidden",
    )
    assert not out.exists() or [p for p in out.rglob("*") if not p.is_dir()] == [], list(out.rglob("*"))


def test_an_existing_empty_run_folder_stays_empty(tmp_path, huge_linear_fails, capsys, one_line_error):
    out = tmp_path / "X"
    out.mkdir()
    code = main(["train", *_hidden(TINY_TRAIN, "1000000000"), "--out", str(out)])
    one_line_error(capsys, code, "does not fit in memory")
    assert list(out.rglob("*")) == []


def _failing_build(monkeypatch, error: BaseException) -> None:
    """The model's build (its constructor) raises `error`."""

    def build(cfg, shape):
        raise error

    spec = ModelSpec(build, "elbo", "a model whose construction fails")
    monkeypatch.setattr(registry, "get_spec", lambda name: spec)


def test_torch_out_of_memory_error_too(monkeypatch):
    _failing_build(monkeypatch, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"))
    cfg = Config().replace(**{"model.hidden": (7, 5), "model.latent_dim": 3})
    with pytest.raises(ConfigError) as e:
        build_model(cfg.model, (1, 8, 8))
    assert str(e.value) == (
        "model 'vae' (hidden [7, 5], latent_dim 3) does not fit in memory: choose smaller sizes (--hidden, "
        "--latent-dim)"
    )


def test_other_runtime_errors_are_not_disguised(monkeypatch):
    _failing_build(monkeypatch, RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(RuntimeError, match="^mat1 and mat2 shapes cannot be multiplied$"):
        build_model(Config().model, (1, 8, 8))
