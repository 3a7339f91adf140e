"""The pure helpers of benchmarks/eval_speed.py, reproduce_iwae.py, throughput.py and precision.py."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import eval_speed
import precision
import reproduce_iwae
import throughput
from vaelab.config import build_config
from vaelab.models.registry import build_model


def test_throughput_is_image_samples_per_second():
    assert eval_speed.throughput(1000, 5000, 250.0) == 20_000
    assert math.isnan(eval_speed.throughput(10, 10, 0.0))


def test_vaelab_weights_in_the_peer_layout_compute_the_same_q_and_decoder():
    """The encoder/decoder layout the pythae worker builds, loaded by split_state, gives vaelab's q(z|x) and logits."""
    cfg = build_config(eval_speed.CONFIG)
    torch.manual_seed(0)
    model = build_model(cfg.model, (1, 28, 28)).eval()
    enc_state, dec_state = eval_speed.split_state(model.state_dict())
    assert set(enc_state) == {"net.0.weight", "net.0.bias", "head.weight", "head.bias"}
    assert set(dec_state) == {"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"}
    enc = nn.Module()
    enc.net = nn.Sequential(nn.Linear(784, 400), nn.ReLU())
    enc.head = nn.Linear(400, 40)
    enc.load_state_dict(enc_state)
    dec = nn.Sequential()
    dec.net = nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784))
    dec.load_state_dict(dec_state)
    x = (torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    with torch.no_grad():
        loc, raw = enc.head(enc.net(x.flatten(1))).chunk(2, dim=-1)
        q = model.encode(x)
        torch.testing.assert_close(loc, q.mean)
        torch.testing.assert_close(torch.exp(0.5 * eval_speed.peer_log_covariance(raw)), q.stddev)
        z = torch.randn(3, 20, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(dec.net(z), model.decode(z).base_dist.logits.flatten(1))


def test_split_state_refuses_other_models():
    with pytest.raises(ValueError, match="unexpected parameter 'prior_net.means'"):
        eval_speed.split_state({"encoder.net.0.weight": 0, "prior_net.means": 0})


def test_checkpoint_marks_double_up_to_the_budget():
    marks = reproduce_iwae.checkpoint_marks(1200.0, 6)
    assert marks == pytest.approx([37.5, 75, 150, 300, 600, 1200])
    assert reproduce_iwae.checkpoint_marks(60.0, 1) == [60.0]
    assert reproduce_iwae.checkpoint_marks(60.0, 0) == []


def test_paired_difference_mean_and_stderr():
    mean, se = reproduce_iwae.paired_difference([-85.0, -86.0, -87.5], [-86.0, -87.0, -88.0])
    d = [1.0, 1.0, 0.5]
    m = sum(d) / 3
    assert mean == pytest.approx(m)
    assert se == pytest.approx(math.sqrt(sum((v - m) ** 2 for v in d) / 2 / 3))
    assert math.isnan(reproduce_iwae.paired_difference([1.0], [0.5])[1])
    with pytest.raises(ValueError):
        reproduce_iwae.paired_difference([1.0], [])


def test_variant_names_and_published_values():
    assert reproduce_iwae.variant_name("iwae", 50) == "iwae-k50"
    assert reproduce_iwae.variant_name("elbo", 1, quick=True) == "elbo-k1-quick"
    assert reproduce_iwae.PUBLISHED[("elbo", 1)] == 86.76 and reproduce_iwae.PUBLISHED[("iwae", 50)] == 84.78


def test_throughput_turns_rotate_so_no_system_always_runs_first():
    names = ["a", "b", "c"]
    orders = [throughput.rotated(names, r) for r in range(3)]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    assert {o[0] for o in orders} == set(names) and all(sorted(o) == names for o in orders)


def test_throughput_pairs_epochs_of_the_same_turn_after_the_warm_up():
    ours, peer = [1.0, 10.0, 30.0, 8.0], [9.0, 5.0, 10.0, 4.0]
    assert throughput.paired_ratios(ours, peer, warmup=1) == [2.0, 3.0, 2.0]
    assert throughput.paired_ratios(ours, peer[:2], warmup=1) == [2.0]  # a peer that stopped early


def test_throughput_gate_without_a_harness_never_waits():
    gate = throughput.Gate(-1)
    assert gate.out is None and gate("epoch") is None


def test_precision_pairs_bf16_with_fp32_of_its_seed_and_fp32_across_seeds():
    def run(prec, seed, log_px):
        return {"precision": prec, "seed": seed, "per_datum": log_px}

    runs = [
        run("fp32", 0, [-90.0, -100.0, -80.0]),
        run("bf16", 0, [-91.0, -100.5, -80.5]),
        run("fp32", 1, [-89.0, -101.0, -80.0]),
    ]
    d = precision.comparisons(runs)
    assert [(x["a"], x["b"]) for x in d] == [("bf16 seed 0", "fp32 seed 0"), ("fp32 seed 1", "fp32 seed 0")]
    # NLL differences per image: bf16 is worse by 1.0, 0.5, 0.5 nats; fp32 seed 1 by -1, +1, 0
    assert d[0]["nll_diff"] == pytest.approx(2.0 / 3.0)
    assert d[0]["stderr"] == pytest.approx(math.sqrt((1 / 9 + 1 / 36 + 1 / 36) / 2 / 3))
    assert d[1]["nll_diff"] == pytest.approx(0.0) and d[1]["stderr"] == pytest.approx(math.sqrt(1 / 3))


def test_the_floor_step_does_exactly_the_training_steps_matrix_multiplies():
    """The floor bounds any implementation from above only if it does all the step's GEMMs: its FLOPs equal the
    roofline's GEMM list, which equals torch's flop counter on a real vaelab step."""
    import argparse

    from torch.utils.flop_counter import FlopCounterMode

    import roofline

    a = argparse.Namespace(data="mnist-5k", data_dir="", limit=64, batch_size=16, hidden=400, latent=20)
    run, steps = roofline.floor_step(a)
    assert steps >= 1
    with FlopCounterMode(display=False) as counter:
        run()
    listed = sum(g.flops for g in roofline.step_gemms(16, roofline.vae_layers()))
    assert counter.get_total_flops() == listed == 16 * roofline.counted_flops_per_sample(16)


def test_families_budget_runs_whole_epochs_in_one_training_call(tmp_path, config_factory):
    """A zero budget still trains one whole epoch; an ample one stops at max_epochs; the folder matches."""
    import families
    from vaelab.runs import RunDir

    cfg = config_factory(**{"data.train_limit": 128})
    one = families.train_for_budget(cfg, tmp_path / "zero", budget_s=0.0, max_epochs=5)
    assert one["epochs"] == 1 and len(one["curve"]) == 1
    three = families.train_for_budget(cfg, tmp_path / "ample", budget_s=3600.0, max_epochs=3)
    assert three["epochs"] == 3 and [r["epoch"] for r in RunDir(tmp_path / "ample").read_metrics()] == [
        1,
        2,
        3,
    ]
    assert three["train_seconds"] <= three["wall_seconds"]
