"""What the figures call things: a model with a prior has a posterior (posterior means, E_q log p(x|z)); an
autoencoder has codes f(x) and a reconstruction log p(x|f(x)) (issue 22, item 22). And every run's curves
plot what it records (a GAN's losses, PixelCNN's log p(x)), not a blank chart."""

from __future__ import annotations

import pytest
import torch

from vaelab.data import prepare_split
from vaelab.models.registry import build_model
from vaelab.viz import curves
from vaelab.viz import figures as fig
from vaelab.viz.grids import NotDrawn, plt

from vaelab_testing import small_config

VAE_HISTORY = [
    {"epoch": e, "train_elbo": -40.0 + e, "train_rec": -35.0 + e, "train_kl": 5.0, "test_elbo": -41.0 + e}
    for e in (1, 2)
]


@pytest.fixture
def saved(monkeypatch):
    """The titles of every axes of the figures the plots would save (then closed, not saved)."""
    seen: dict = {}

    def save_figure(f, path):
        seen["titles"] = [ax.get_title() for ax in f.axes]
        seen["labels"] = [(ax.get_xlabel(), ax.get_ylabel()) for ax in f.axes]
        seen["lines"] = [len(ax.lines) for ax in f.axes]
        plt.close(f)
        return path

    def save_panels(path, panels, title=None, inches=4.5):
        seen["title"] = title
        return path

    monkeypatch.setattr(fig, "save_figure", save_figure)
    monkeypatch.setattr(curves, "save_figure", save_figure)
    monkeypatch.setattr(fig, "save_panels", save_panels)
    return seen


def _model(name: str):
    cfg = small_config(**{"model.name": name})
    torch.manual_seed(0)
    test = prepare_split(cfg.data, "test")
    return build_model(cfg.model, test.shape).eval(), test


@pytest.mark.parametrize(
    ("name", "codes", "rec"),
    [("autoencoder", "codes", "log p(x|f(x)) (nats)"), ("vae", "posterior means", "E_q log p(x|z) (nats)")],
)
def test_the_figures_name_codes_and_the_reconstruction_term_by_the_models_prior(
    name, codes, rec, saved, tmp_path
):
    model, test = _model(name)
    assert fig.code_name(model) == codes
    fig.latents_figure(model, test, tmp_path / "l.png")
    assert saved["titles"][0] == f"{codes} of 300 images of digits/test"
    fig.interpolations_figure(model, test, tmp_path / "i.png")
    assert saved["title"] == f"interpolations between 6 pairs of test images ({codes})"
    history = [{k: v for k, v in r.items() if k.endswith(("epoch", "rec"))} for r in VAE_HISTORY]
    fig.curves_figure(history, tmp_path / "c.png", model=model)
    assert saved["titles"] == [rec]
    fig.curves_figure(history, tmp_path / "c.png")  # `vaelab curves` without the model: a neutral name
    assert saved["titles"] == ["reconstruction log-likelihood (nats)"]


def test_the_curves_plot_every_statistic_a_run_records(saved, tmp_path):
    gan = [
        {"epoch": 1, "train_d_loss": 0.9, "train_g_loss": 1.1, "test_d_loss": 0.7, "train_d_real": 0.6},
        {"epoch": 2, "train_d_loss": 0.8, "train_g_loss": 1.2, "test_d_loss": 0.6, "train_d_real": 0.7},
    ]
    fig.curves_figure(gan, tmp_path / "c.png")
    assert saved["titles"] == ["discriminator loss", "generator loss", "D(x) on real images"]
    assert saved["lines"] == [2, 1, 1]  # train and test; train; train
    assert curves.curves_title(gan) == (
        "discriminator loss, generator loss and D(x) on real images per epoch"
    )
    pixelcnn = [{"epoch": 1, "train_log_px": -43.0, "test_log_px": -40.5, "valid_log_px": -40.7, "lr": 0.001}]
    fig.curves_figure(pixelcnn, tmp_path / "c.png")
    assert saved["titles"] == ["log p(x) (nats)"] and saved["lines"] == [3]
    fig.curves_figure([{"epoch": 1, "train_accuracy": 0.5, **VAE_HISTORY[0]}], tmp_path / "c.png")
    assert saved["titles"] == [
        "ELBO (nats)",
        "reconstruction log-likelihood (nats)",
        "KL(q || p) (nats)",
        "accuracy",
    ]
    assert curves.curves_title(VAE_HISTORY) == "ELBO, reconstruction and KL per epoch"
    with pytest.raises(NotDrawn, match="^metrics.jsonl records no per-split statistic to plot$"):
        fig.curves_figure([{"epoch": 1, "lr": 0.1}], tmp_path / "c.png")
