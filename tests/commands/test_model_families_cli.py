"""The variants from the command line: listed in --help, their figures, denoising reconstructions, M2's error,
and one-line errors for what does not fit."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from vaelab.cli import main
from vaelab.models import MODELS

from vaelab_testing import TINY_TRAIN


def _size(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    extra = {
        "vae": ["--noise", "masking:0.3"],
        "cvae": [],
        "m2": ["--labelled", "30"],
        "hierarchical": ["--set", "model.extra={h1_dim: 4, h2_hidden: [8]}"],
    }
    for name, flags in extra.items():
        assert main(["train", *TINY_TRAIN, "--model", name, *flags, "--out", str(root / name)]) == 0
    return root


def test_help_lists_every_model(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for name in ("vae", "autoencoder", "iwae", "hierarchical", "vampprior", "cvae", "m2", "pixelcnn", "gan"):
        assert name in MODELS and f"\n  {name} " in out, name


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_trains_with_its_defaults_on_mnist_5k(name, tmp_path):
    """`vaelab train --model NAME` on the real digits, nothing but the model named: its defaults apply and
    the first epoch's training statistics are finite."""
    run = tmp_path / name
    argv = ["train", "--data", "mnist-5k", "--model", name, "--epochs", "1", "--quiet", "--threads", "1"]
    limit = 600 if name in ("m2", "adgm") else 128  # 100 labels, balanced, need ~10 images of every class
    assert main([*argv, "--set", f"data.train_limit={limit}", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    for key, value in MODELS[name].defaults.items():
        section, field = key.split(".")
        got = config[section][field]
        assert (tuple(got) if isinstance(got, list) else got) == value, (name, key, got)
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    trained = {k: v for k, v in record.items() if k.startswith("train_")}
    assert trained and all(math.isfinite(v) for v in trained.values()), (name, record)
    assert (run / "checkpoints" / "last.pt").is_file()


def test_figures_of_each_kind_of_model(runs):
    for name in ("cvae", "m2", "hierarchical"):
        figures = {p.stem for p in (runs / name / "figures").glob("*.png")}
        labelled = {"analogies"} if name != "hierarchical" else set()  # a style z at every label y
        assert figures == {"samples", "curves", *labelled}, (name, figures)
    w, h = _size(runs / "cvae" / "figures" / "samples.png")  # ten rows of samples, one per label
    assert h > 2 * w / 3
    assert {p.stem for p in (runs / "vae" / "figures").glob("*.png")} >= {"reconstructions", "manifold"}


def test_reconstruct_with_noise_shows_three_panels(runs, tmp_path):
    plain, noisy = tmp_path / "plain.png", tmp_path / "noisy.png"
    assert main(["reconstruct", str(runs / "vae"), "-n", "9", "--out", str(plain)]) == 0
    assert (
        main(["reconstruct", str(runs / "vae"), "-n", "9", "--noise", "gaussian:0.3", "--out", str(noisy)])
        == 0
    )
    (w2, _), (w3, _) = _size(plain), _size(noisy)
    assert 1.3 < w3 / w2 < 1.7  # three panels instead of two


def test_m2_prints_and_evaluates_its_classification_error(runs, capsys):
    """eval.json's error is argmax q(y|x) against the labels of the first 40 test images, counted here by hand,
    with its binomial standard error; the printed line quotes those numbers."""
    import torch

    from vaelab.commands.common import open_run

    assert main(["eval", str(runs / "m2"), "--importance", "3", "--limit", "40", "--quiet"]) == 0
    out = capsys.readouterr().out
    c = json.loads((runs / "m2" / "eval.json").read_text())["classification"]
    run = open_run(str(runs / "m2"))
    test = run.split("test")
    with torch.no_grad():
        predicted = run.model.classify(test.batch(slice(0, 40))).logits.argmax(-1)
    wrong = int((predicted != test.labels_at(slice(0, 40))).sum())
    assert (c["errors"], c["num_images"]) == (wrong, 40) and c["error"] == wrong / 40
    assert c["stderr"] == pytest.approx(math.sqrt(c["error"] * (1 - c["error"]) / 40), rel=1e-12)
    line = f"classification error   {100 * c['error']:.2f}% +- {100 * c['stderr']:.2f}%"
    assert f"{line}   argmax q(y|x), {wrong} of 40 images" in out.splitlines()


@pytest.fixture
def unlabelled(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(30):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    return f"folder:{tmp_path}"


@pytest.mark.parametrize(("model", "needle"), [("m2", "no labels"), ("cvae", "needs labels")])
def test_labelled_models_without_labels_are_one_line(
    model, needle, unlabelled, tmp_path, capsys, one_line_error
):
    args = ["--data", unlabelled, "--image-size", "8", "--binarize", "static", "--hidden", "8"]
    code = main(["train", *args, "--model", model, "--quiet", "--out", str(tmp_path / "r")])
    one_line_error(capsys, code, needle)
    assert not list((tmp_path / "r").rglob("*.*"))


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--model", "vampprior", "--kl", "analytic"], ("VampPrior is a mixture", "objective.kl=mc")),
        (["--model", "cvae", "--labelled", "20"], ("conditions on every image's label",)),
        (["--model", "vae", "--dreg"], ("objective.dreg", "iwae")),
        (["--noise", "blur:1"], ("unknown noise 'blur'",)),
        (["--model", "gann"], ("unknown model 'gann'; choose one of: vae, autoencoder",)),
        (["--model", "m2", "--objective", "iwae"], ("model 'm2' trains with objective m2",)),
        (
            ["--model", "pixelcnn", "--beta", "4", "--noise", "masking:0.3"],
            ("model 'pixelcnn' has no encoder", "objective.beta, objective.noise do not apply"),
        ),
        (["--model", "gan", "--warmup", "10"], ("model 'gan' has no encoder", "objective.warmup_epochs")),
        (["--model", "gan", "--free-bits", "0.5"], ("objective.free_bits do not apply",)),
        (
            ["--objective", "iwae", "--samples", "3", "--dreg", "--free-bits", "0.5"],
            ("use objective.dreg or",),
        ),
        (
            ["--model", "vampprior", "--set", "model.extra={pseudo_input: 50}"],
            ("model.extra has unknown key(s) pseudo_input for vampprior; it takes: pseudo_inputs",),
        ),
        (["--set", "model.extra={k: 5}"], ("model.extra has unknown key(s) k for vae; it takes: none",)),
        (["--hidden", "-5"], ("need every model.hidden size >= 1, got [-5]",)),
        (["--hidden", "0"], ("need every model.hidden size >= 1, got [0]",)),
        (["--set", "model.conv_channels=[8, 0]"], ("need every model.conv_channels size >= 1",)),
    ],
)
def test_bad_settings_are_one_line(args, needles, tmp_path, capsys, one_line_error):
    code = main(["train", *TINY_TRAIN, *args, "--out", str(tmp_path / "r")])
    one_line_error(capsys, code, *needles)
    assert not (tmp_path / "r").exists()


def test_figures_that_do_not_apply_are_refused(runs, capsys, one_line_error):
    one_line_error(
        capsys, main(["reconstruct", str(runs / "hierarchical")]), "do not apply to HierarchicalVAE"
    )
    code = main(["eval", str(runs / "cvae"), "--importance", "2", "--ais", "5", "--limit", "4", "--quiet"])
    one_line_error(capsys, code, "does not apply to CVAE", "takes a label")


@pytest.mark.parametrize(
    ("run", "flag", "needle"),
    [
        ("hierarchical", "--ais", "annealed importance sampling does not apply to HierarchicalVAE"),
        ("cvae", "--bdmc", "bidirectional Monte Carlo does not apply to CVAE"),
        ("hierarchical", "--decomposition", "the ELBO decomposition does not apply to HierarchicalVAE"),
    ],
)
def test_estimators_that_do_not_apply_are_refused_before_importance_sampling(
    run, flag, needle, runs, capsys, one_line_error, monkeypatch
):
    from vaelab.evaluate import importance as ev

    def never(*_a, **_k):
        raise AssertionError("importance sampling ran before the refusal")

    monkeypatch.setattr(ev, "importance_sampling", never)
    args = [flag] if flag == "--decomposition" else [flag, "5"]
    code = main(["eval", str(runs / run), "--importance", "2", *args, "--limit", "4", "--quiet"])
    one_line_error(capsys, code, needle)
