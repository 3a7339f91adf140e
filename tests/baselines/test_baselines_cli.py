"""PixelCNN and the GAN through the generic trainer, checkpoints and `vaelab eval` (exact path, AIS-only path,
sample quality), with their one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

import vaelab
from vaelab.cli import main
from vaelab.train import read_checkpoint, train

from vaelab_testing import small_config

PIXELCNN = {"model.name": "pixelcnn", "model.extra": {"channels": 8, "blocks": 1, "first_kernel": 3}}
GAN = {"model.name": "gan", "model.body": "conv", "model.conv_channels": (8, 16), "model.latent_dim": 8}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    pixel = train(small_config(**PIXELCNN, **{"train.epochs": 3, "train.lr": 3e-3}), out=root / "pixelcnn")
    gan = train(small_config(**GAN, **{"model.likelihood": "gaussian", "train.lr": 2e-4}), out=root / "gan")
    return root, pixel, gan


def test_pixelcnn_trains_and_round_trips_through_its_checkpoint(runs):
    root, pixel, _ = runs
    h = pixel.history
    assert h[-1]["train_log_px"] > h[0]["train_log_px"] + 1.0  # the exact log-likelihood rises
    assert "test_log_px" in h[-1]
    loaded = vaelab.load(root / "pixelcnn", which="last")
    x = torch.bernoulli(torch.full((4, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.exact_log_px(x), pixel.model.exact_log_px(x))
    a = loaded.generate(3, torch.Generator().manual_seed(5))
    b = pixel.model.generate(3, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_pixelcnn_keeps_the_epoch_of_best_exact_log_px_as_best_pt(runs):
    root, pixel, _ = runs
    key = "valid_log_px" if "valid_log_px" in pixel.history[0] else "train_log_px"
    scores = [r[key] for r in pixel.history]
    best = read_checkpoint(root / "pixelcnn" / "checkpoints" / "best.pt")
    assert best["epoch"] == pixel.history[scores.index(max(scores))]["epoch"]


def test_train_prints_pixelcnn_exact_nll_and_the_gan_discriminator(tmp_path, capsys):
    tiny = ["--data", "digits", "--epochs", "1", "--quiet", "--no-figures", "--threads", "1"]
    pixel = ["--set", "model.extra={channels: 4, blocks: 1, first_kernel: 3}"]
    assert main(["train", *tiny, "--model", "pixelcnn", *pixel, "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    rec = json.loads((tmp_path / "p" / "metrics.jsonl").read_text().splitlines()[-1])
    assert f"test exact log p(x): {rec['test_log_px']:.2f} nats per image (epoch 1)" in out
    gan = ["--set", "model.conv_channels=[4, 8]", "--latent-dim", "4"]
    assert main(["train", *tiny, "--model", "gan", *gan, "--out", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    rec = json.loads((tmp_path / "g" / "metrics.jsonl").read_text().splitlines()[-1])
    assert f"test discriminator: D(x) {rec['test_d_real']:.3f} on images, {rec['test_d_fake']:.3f}" in out


def test_gan_trains_and_round_trips_through_its_checkpoint(runs):
    root, _, gan = runs
    h = gan.history
    assert {"train_d_loss", "train_g_loss", "test_d_real", "test_d_fake"} <= set(h[-1])
    saved = read_checkpoint(root / "gan" / "checkpoints" / "last.pt")
    betas = [tuple(g["betas"]) for g in saved["optimizer"]["param_groups"]]
    assert betas == [(0.5, 0.999)] * 2  # DCGAN's Adam, through the model's parameter groups
    loaded = vaelab.load(root / "gan")
    assert torch.equal(
        loaded.generate(6, torch.Generator().manual_seed(1)),
        gan.model.generate(6, torch.Generator().manual_seed(1)),
    )
    assert not (root / "gan" / "checkpoints" / "best.pt").exists()  # no likelihood to pick a best by
    assert not (root / "gan" / "figures").exists()  # figures are drawn by the CLI, not by train()


def test_eval_of_pixelcnn_is_exact_and_draws_nothing(runs, capsys):
    root, pixel, _ = runs
    assert main(["eval", str(root / "pixelcnn"), "--checkpoint", "last", "--limit", "40", "--quiet"]) == 0
    out = capsys.readouterr().out
    r = json.loads((root / "pixelcnn" / "eval.json").read_text())
    assert "importance" not in r and "elbo" not in r
    assert r["exact"]["method"].startswith("exact (chain rule)") and r["num_images"] == 40
    assert "exact (chain rule)" in out
    from vaelab.data import prepare_split

    data = prepare_split(pixel.config.data, "test")
    with torch.no_grad():
        want = pixel.model.exact_log_px(data.batch(slice(0, 40))).double().mean().item()
    assert r["exact"]["log_px"] == pytest.approx(want, rel=1e-6)


def test_eval_of_pixelcnn_refuses_ais(runs, capsys, one_line_error):
    root, _, _ = runs
    code = main(["eval", str(root / "pixelcnn"), "--ais", "5", "--quiet"])
    one_line_error(capsys, code, "exactly", "--ais")


def test_pixelcnn_on_grey_levels_is_refused(tmp_path, capsys, one_line_error):
    code = main(
        [
            "train",
            "--data",
            "digits",
            "--model",
            "pixelcnn",
            "--binarize",
            "none",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    one_line_error(capsys, code, "pixelcnn", "binarize")
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_eval_of_a_gan_needs_ais_and_labels_its_observation_model(runs, capsys, one_line_error):
    root, _, _ = runs
    code = main(["eval", str(root / "gan"), "--quiet"])
    one_line_error(capsys, code, "GAN has no encoder", "--ais")
    args = [
        "eval",
        str(root / "gan"),
        "--ais",
        "4",
        "--chains",
        "2",
        "--leapfrog",
        "2",
        "--limit",
        "6",
        "--quiet",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    r = json.loads((root / "gan" / "eval.json").read_text())
    assert "importance" not in r and r["ais"]["num_images"] == 6
    assert "N(x; G(z), 0.1^2 I)" in r["ais"]["observation_model"]
    assert (
        "not a likelihood of the GAN itself" in r["likelihood"]
        and "not a likelihood of the GAN itself" in out
    )


@pytest.mark.slow
def test_eval_quality_writes_fd_precision_recall_and_says_it_is_not_inception(runs, tmp_path, capsys):
    root, _, _ = runs
    train(small_config(**{"train.epochs": 2}), out=tmp_path / "vae")
    assert (
        main(
            [
                "eval",
                str(tmp_path / "vae"),
                "--importance",
                "4",
                "--limit",
                "10",
                "--quality",
                "60",
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    q = json.loads((tmp_path / "vae" / "eval.json").read_text())["quality"]
    assert q["num_samples"] == 60 and q["k"] == 3
    assert q["frechet_distance"] > 0 and 0 <= q["precision"] <= 1 and 0 <= q["recall"] <= 1
    assert "Inception weights cannot be downloaded here" in q["features"] and "Inception" in out
    assert q["classifier"]["test_accuracy"] > 0.8
    # the GAN and the autoencoder (no prior: codes of a fitted Gaussian) are scored by the same classifier
    assert main(["eval", str(root / "gan"), "--quality", "60", "--quiet"]) == 0
    g = json.loads((root / "gan" / "eval.json").read_text())["quality"]
    assert (
        g["classifier"]["cache_key"] == q["classifier"]["cache_key"] and g["classifier"]["source"] == "cache"
    )
    train(small_config(**{"train.epochs": 1, "model.name": "autoencoder"}), out=tmp_path / "ae")
    assert main(["eval", str(tmp_path / "ae"), "--quality", "60", "--quiet"]) == 0
    a = json.loads((tmp_path / "ae" / "eval.json").read_text())
    assert "fitted to training codes" in a["quality"]["samples"] and "importance" not in a
