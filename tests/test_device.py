"""The CPU runtime settings: denormals flushed to zero inside a block, freed tensor memory kept in the process,
the warning for bf16 where it is emulated."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
import torch

from vaelab.device import flush_denormals, flushing_denormals, keep_freed_memory, native_bf16, resolve_device
from vaelab.errors import ConfigError
from vaelab.train import train

from vaelab_testing import small_config

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# An importance-sampling chunk: 4000 rows of Bernoulli logits (12.5 MB) and their log-mass, 100 times over;
# prints the minor page faults of the loop.
FAULTS = """
import ctypes, resource, sys, torch
from vaelab.device import _M_MMAP_THRESHOLD, keep_freed_memory
if sys.argv[1] == "tuned":
    keep_freed_memory()
else:  # glibc's policy at its most returning: every buffer over 1 MB mapped at malloc and unmapped at free
    ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 1 << 20)  # a fixed value also stops its adapting
torch.set_num_threads(1)
h, w, x = torch.ones(4000, 400), torch.ones(400, 784) / 400, torch.ones(784)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    logits = h @ w
    lp = (x * logits - torch.nn.functional.softplus(logits)).sum(-1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = 4000 * 784 * 4 // 4096  # pages of one such tensor


def test_denormals_are_flushed_inside_the_block_and_kept_after_it() -> None:
    tiny = torch.finfo(torch.float32).tiny
    assert not flushing_denormals()
    assert float(torch.tensor([tiny]) / 4) > 0.0  # IEEE gradual underflow outside
    with flush_denormals() as on:
        if not on:
            pytest.skip("this CPU cannot flush denormals (torch.set_flush_denormal returned False)")
        assert float(torch.tensor([tiny]) / 4) == 0.0
        assert float(torch.tensor([tiny]) * 1.0) == tiny  # normal numbers are untouched
        with flush_denormals():
            pass
        assert flushing_denormals()  # an inner block leaves the outer one's setting
    assert not flushing_denormals()
    assert float(torch.tensor([tiny]) / 4) > 0.0


def test_keeping_freed_memory_is_idempotent(monkeypatch) -> None:
    """mallopt is glibc's: on Linux with glibc the setting takes effect (True), elsewhere it cannot (False);
    a second call answers the same. The cached answer is cleared first so the first call really computes it."""
    monkeypatch.setitem(keep_freed_memory.__globals__, "_kept", None)
    assert keep_freed_memory() is GLIBC
    assert keep_freed_memory() is GLIBC


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's; other C libraries keep their own policy")
def test_freed_tensor_memory_is_reused_not_faulted_back() -> None:
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    # glibc's default threshold adapts to the sizes freed, so how often an untuned process hands such buffers
    # back varies from run to run (measured: 200,000 to 770,000 faults); the control pins the handing back to
    # show that the loop's faults are counted (at least one buffer per pass), and tuned, the first few
    # buffers' pages are reused (10-12 buffers' worth)
    assert faults("returning") > 100 * PAGES
    assert faults("tuned") < 25 * PAGES


def test_unknown_device_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


def test_training_leaves_the_callers_floating_point_state_as_it_found_it(config_factory) -> None:
    from vaelab.train import train

    assert not flushing_denormals()
    result = train(config_factory(**{"train.epochs": 1}))
    assert result.history and not flushing_denormals()


@pytest.mark.parametrize("native", [True, False])
def test_bf16_training_warns_only_where_bf16_is_emulated(native, monkeypatch, capsys):
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: native, raising=False)
    assert native_bf16(torch.device("cpu")) is native
    train(small_config(**{"train.precision": "bf16", "train.epochs": 1}))
    err = capsys.readouterr().err
    assert ("train.precision=bf16 on cpu without native bf16 arithmetic" in err) is not native
