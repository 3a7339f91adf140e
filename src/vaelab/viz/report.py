"""A run as one self-contained HTML page: config, training curves, pictures and, when present, the evaluation.

Every figure is a PNG drawn by `vaelab.viz.figures` (or the evaluation charts below) and embedded as a
base64 data URI; the page has no external reference, so the single file opens offline. Its only script is
the label selector of a labelled model's manifold (`vaelab.viz.label_manifold`), a few inline lines.
The evaluation (`eval.json`, written by `vaelab eval`) is read defensively: whatever parts are present
are shown, numbers that are missing or not numbers are shown as such, and an unreadable file becomes a
note on the page rather than a failure. Figures that need the run's data say so when it cannot be found.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaelab import __version__
from vaelab.commands.common import OpenRun, open_run
from vaelab.data.sources import FOLDER_PREFIX
from vaelab.errors import ConfigError, VaelabError
from vaelab.io import atomic_write_text
from vaelab.models.protocol import Capabilities, capabilities
from vaelab.runs import read_eval
from vaelab.viz import figures as fig
from vaelab.viz.curves import curves_title
from vaelab.viz.evalcharts import decomposition_chart, eval_section, iwae_chart, kl_per_dim_chart, num
from vaelab.viz.figureset import figure_plan
from vaelab.viz.label_manifold import label_manifold_card
from vaelab.viz.page import PAGE_CSS
from vaelab.viz.page import draw as _draw
from vaelab.viz.page import esc as _esc
from vaelab.viz.page import figure_html as _figure
from vaelab.viz.tables import NOT_PICTURES, is_table_model

LATENT_PICTURES = ("reconstructions", "manifold", "interpolations", "latents")

# {codes}: "posterior means" for a model with a prior, "codes" for one without (figures.code_name)
PICTURES = (
    ("samples", "Samples", ""),  # samples_caption
    (
        "reconstructions",
        "Reconstructions",
        "Test images (as the model sees them) beside the decoded means of their {codes}.",
    ),
    (
        "manifold",
        "Latent manifold",
        "A grid of z at Gaussian quantiles of a latent plane, decoded (Kingma & Welling 2014, figure 4).",
    ),
    (
        "interpolations",
        "Interpolations",
        "Linear and spherical paths between the {codes} of pairs of test images.",
    ),
    (
        "latents",
        "Latent scatter",
        "The {codes} of test images coloured by label (the top two "
        "principal components when the latent space has more than two dimensions).",
    ),
)

PICTURES_ROWS = (("samples", "manifold"), ("reconstructions", "latents"), ("interpolations",))
# A model whose decoder takes a label: its analogies beside its samples, its manifold at a chosen label (the
# other latent pictures are notes).
LABELLED_ROWS = (("samples", "analogies"), ("reconstructions", "manifold"), ("interpolations", "latents"))


def analogies_caption(model: object) -> str:
    """The analogies figure's caption: where each row's style comes from.

    Args:
        model: a labelled run's model.
    """
    at = "its classifier's label" if capabilities(model).label_for_encode == "optional" else "its own label"
    return (
        "Kingma et al. 2014, figure 1: each row keeps the style z of the test image on its left (the mean of "
        f"q(z|x,y) at {at}) and decodes it at every label y; along a row only the label changes."
    )


# A table run's pictures in place of the image ones (`vaelab.viz.tables`), in the columns' own units.
TABLE_PICTURES = (
    (
        "columns",
        "Columns",
        "Each column of the test rows beside its reconstruction (the decoded mean of its posterior mean): a "
        "scatter about the diagonal, or a confusion matrix of levels.",
    ),
    (
        "marginals",
        "Marginals",
        "Each column's distribution in the test rows against 2,000 rows drawn from the model (z ~ p(z), then "
        "x ~ p(x | z)).",
    ),
    (
        "latents",
        "Latent scatter",
        "The {codes} of test rows (the top two principal components when the latent space has more than two "
        "dimensions).",
    ),
)


# How the samples figure draws (figures.samples_figure, in its order): the first that applies.
SAMPLES_CAPTIONS: tuple[tuple[Callable[[Capabilities], bool], str], ...] = (
    (lambda c: c.labelled, "One row per label: along a row only z ~ p(z) changes."),
    (
        lambda c: c.sampler,
        "Images the model draws itself (ancestral sampling, or its generator fed z ~ p(z)).",
    ),
    (lambda c: c.prior, "Decoded draws from the prior p(z)."),
    (
        lambda c: True,
        "A model without a prior: decoded draws of N(0, I) and of a Gaussian fitted to its codes.",
    ),
)


def samples_caption(model: object) -> str:
    """The samples figure's caption: how this model's samples are drawn.

    Args:
        model: the run's model.
    """
    caps = capabilities(model)
    return next(text for applies, text in SAMPLES_CAPTIONS if applies(caps))


def _stale_eval(o: OpenRun, ev: dict[str, Any] | None) -> str | None:
    """Why eval.json does not describe the checkpoint shown (another file or epoch), or None if it does."""
    if ev is None or ("epoch" not in ev and "checkpoint" not in ev):
        return None
    scored = Path(str(ev.get("checkpoint", ""))).name
    if ev.get("epoch") == o.epoch and scored == o.checkpoint.name:
        return None
    return (
        f"eval.json scored {scored or 'another checkpoint'} at epoch {ev.get('epoch')}, but this report shows "
        f"{o.checkpoint.name} at epoch {o.epoch}: its numbers are of another model (run vaelab eval again); "
        "they are left out of the headline"
    )


def _pictures(o: OpenRun, tmp: Path, data_dir: str | None, seed: int) -> tuple[dict[str, str | None], dict]:
    """The figures `vaelab figures` draws for this model (`figure_plan`); the others get a note saying why not."""
    notes: dict[str, str] = {}
    uris: dict[str, str | None] = {}
    model = o.model
    can = fig.applicable(model)
    test = train_codes = None
    no_test = "the run's test data is not loaded"
    # the four latent pictures apply together (one latent layer); a labelled model's analogies need it too
    if capabilities(model).labelled or any(can[k] for k in LATENT_PICTURES):
        try:
            test = o.split("test", data_dir)
        except VaelabError as e:
            no_test = f"the run's test data could not be loaded ({' '.join(str(e).split())})"
    if can["samples"] and not capabilities(model).generative:
        try:
            train_codes = fig.codes(model, o.split("train", data_dir), limit=10000)
        except VaelabError as e:
            notes["samples"] = (
                f"not drawn: the training codes could not be computed ({' '.join(str(e).split())})"
            )
    for key, make in figure_plan(model, test, train_codes, None, seed, no_test).items():
        if key == "curves" or key in notes:
            continue
        if isinstance(make, str):
            notes[key] = f"not drawn: {make}"
        else:
            uris[key] = _draw(tmp, key, make, notes)
    return uris, notes


FOLDER_ONLY = ("image_size", "channels")  # data settings that only an image folder uses


def config_value(v: Any) -> str:
    """A config value as config.json writes it: null, true, 0.001, [32], {"h1_dim": 4}; strings bare.

    Args:
        v: the value.
    """
    return v if isinstance(v, str) else json.dumps(v, default=str)


def _config_tables(cfg: dict[str, Any]) -> str:
    """The config as one table per section; a named data set's image_size and channels (which only an image
    folder uses) are left out."""
    out = []
    for section, values in cfg.items():
        items = values.items() if isinstance(values, dict) else [("value", values)]
        if section == "data" and isinstance(values, dict):
            folder = str(values.get("name", "")).startswith(FOLDER_PREFIX)
            items = [(k, v) for k, v in items if folder or k not in FOLDER_ONLY]
        rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(config_value(v))}</td></tr>" for k, v in items)
        out.append(f'<div class="card"><h3>{_esc(section)}</h3><table class="kv">{rows}</table></div>')
    return f'<div class="cols">{"".join(out)}</div>'


def _last_epoch(history: list[dict[str, Any]]) -> str:
    if not history:
        return '<p class="note">No metrics.jsonl yet: the run has no training curves.</p>'
    last = history[-1]
    cells = "".join(
        f"<tr><th>{_esc(k)}</th><td>{_esc(f'{v:.4g}' if isinstance(v, float) else v)}</td></tr>"
        for k, v in last.items()
        if isinstance(v, (int, float, str)) and not isinstance(v, bool)
    )
    return f'<div class="card narrow"><h3>last epoch</h3><table class="kv">{cells}</table></div>'


def _headline(o: OpenRun, history: list[dict], ev: dict | None) -> str:
    cards = []
    last = history[-1] if history else {}
    best = num(last.get("test_elbo"))
    if best is not None:
        cards.append(("test ELBO (last epoch)", f"{best:.2f}", "nats per image"))
    imp = ev.get("importance") if isinstance(ev, dict) and isinstance(ev.get("importance"), dict) else {}
    lp = num(imp.get("log_px"))
    if lp is not None:
        cards.append((f"log p(x), IS K={_esc(imp.get('num_samples', '?'))}", f"{lp:.2f}", "nats per image"))
    bpd = num(imp.get("bits_per_dim"))
    if bpd is not None:
        cards.append(("bits per dimension", f"{bpd:.4f}", "importance sampled"))
    cards.append(("parameters", f"{sum(p.numel() for p in o.model.parameters()):,}", type(o.model).__name__))
    if history:
        cards.append(("epochs", str(last.get("epoch", len(history))), "trained"))
    return (
        '<div class="stats">'
        + "".join(
            f'<div class="stat"><div class="label">{a}</div><div class="value">{b}</div>'
            f'<div class="unit">{_esc(c)}</div></div>'
            for a, b, c in cards
        )
        + "</div>"
    )


def build_report(
    run: str | os.PathLike,
    device: str = "cpu",
    data_dir: str | None = None,
    seed: int = 0,
    which: str = "best",
) -> str:
    """The report page of a run, as one HTML string with every image embedded.

    Args:
        run: the run folder.
        device: where the model is loaded.
        data_dir: where the run's data set lives, if not where it was.
        seed: the seed of the samples and interpolation pairs.
        which: the checkpoint shown, best or last.
    """
    return render(open_run(str(run), device, which), data_dir, seed)


def render(o: OpenRun, data_dir: str | None = None, seed: int = 0) -> str:
    """The report page of an opened run.

    Args:
        o: the run, opened (`commands.common.open_run`).
        data_dir: where the run's data set lives, if not where it was.
        seed: the seed of the samples and interpolation pairs.
    """
    notes: dict[str, str] = {}
    try:
        history = o.run.read_metrics()
    except VaelabError as e:
        history, notes["curves"] = [], f"not drawn: {e}"
    ev, ev_note = read_eval(o.run.eval)
    stale = _stale_eval(o, ev)
    cfg = o.config
    generative = capabilities(o.model).generative  # a prior to decode, or a sampler: not an autoencoder
    table = is_table_model(o.model)
    columns = len(cfg.model.table.get("columns", ())) or len(cfg.data.table.get("columns", ()))
    pixels = columns if table and columns else math.prod(o.shape)  # bits/dim: a table's per column
    labelled = capabilities(o.model).labelled and not table
    with tempfile.TemporaryDirectory(prefix="vaelab-report-") as tmpdir:
        tmp = Path(tmpdir)
        uris, pic_notes = _pictures(o, tmp, data_dir, seed)
        if labelled:  # one manifold per label, behind a selector
            manifold = label_manifold_card(o.model, lambda: o.split("test", data_dir), tmp)
        notes.update(pic_notes)
        if history:
            uris["curves"] = _draw(
                tmp, "curves", lambda p: fig.curves_figure(history, p, model=o.model), notes
            )
        charts = {}
        if ev is not None:
            for key, draw in (
                ("decomposition", decomposition_chart),
                ("iwae", iwae_chart),
                ("kl_per_dim", kl_per_dim_chart),
            ):
                charts[key] = _draw(tmp, key, lambda p, draw=draw: draw(ev, p), notes)
    title = f"{o.run.root.name}: {cfg.model.name} on {cfg.data.name}"
    parts = [
        f"<header><h1>{_esc(title)}</h1><p>{_esc(type(o.model).__name__)} with a "
        f"{cfg.model.latent_dim}-d latent space, {cfg.model.likelihood} likelihood, "
        + (
            f"table rows of {pixels} columns"
            if table
            else f"images {'x'.join(map(str, o.shape))}, binarization {_esc(cfg.data.binarize)}"
        )
        + f". Checkpoint <code>{_esc(o.checkpoint.name)}</code>.</p></header>",
        _headline(o, history, None if stale else ev),
    ]
    if not generative:
        parts.append(
            '<p class="warn">This model has no prior: it is a deterministic autoencoder, not a generative '
            "model. Its “samples” decode draws from N(0, I) and from a Gaussian fitted to its training "
            "codes, to show that neither lands reliably on its code manifold.</p>"
        )
    parts.append("<h2>Training curves</h2>")
    curves = uris.get("curves")
    parts.append(
        '<div class="cols">'
        + (
            _figure(curves, curves_title(history), "From metrics.jsonl.", notes.get("curves"))
            if history or "curves" in notes
            else ""
        )
        + _last_epoch(history)
        + "</div>"
    )
    if ev is not None or ev_note:
        parts.append("<h2>Evaluation</h2>")
        if stale:
            parts.append(f'<p class="warn">{_esc(stale)}</p>')
        parts.append(eval_section(ev, ev_note, pixels, charts, notes))
    parts.append("<h2>Pictures</h2>")
    pictures = {}
    for key, name, caption in TABLE_PICTURES if table else PICTURES:
        cap = samples_caption(o.model) if key == "samples" else caption.format(codes=fig.code_name(o.model))
        pictures[key] = _figure(uris.get(key), name, cap, notes.get(key))
    if labelled:
        pictures["analogies"] = _figure(
            uris.get("analogies"), "Analogies", analogies_caption(o.model), notes.get("analogies")
        )
        pictures["manifold"] = manifold
    if table:  # samples, reconstructions, manifold and interpolations are images: one line for all four
        parts.append(
            f'<p class="note">Samples, reconstructions, manifold, interpolations: {NOT_PICTURES}.</p>'
        )
    rows = (("columns",), ("marginals", "latents")) if table else LABELLED_ROWS if labelled else PICTURES_ROWS
    for row in rows:
        parts.append(f'<div class="cols">{"".join(pictures[k] for k in row)}</div>')
    parts.append("<h2>Config</h2>")
    parts.append(_config_tables(cfg.to_dict()))
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(
        f"<footer>Written by vaelab {_esc(__version__)} (<code>vaelab report</code>) on {stamp} from "
        f"<code>{_esc(o.run.root)}</code>. One self-contained file: every image is embedded.</footer>"
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)} — vaelab report</title><style>{PAGE_CSS}</style></head>"
        f"<body><main>{''.join(parts)}</main></body></html>\n"
    )


def write_report(
    run: str | os.PathLike,
    out: str | os.PathLike | None = None,
    device: str = "cpu",
    data_dir: str | None = None,
    seed: int = 0,
    which: str = "best",
) -> Path:
    """Write the report page (default RUN/report.html) atomically and return its path.

    Args:
        run: the run folder.
        out: the HTML file (default RUN/report.html).
        device: where the model is loaded.
        data_dir: where the run's data set lives, if not where it was.
        seed: the seed of the samples and interpolation pairs.
        which: the checkpoint shown, best or last.
    """
    if out is not None and Path(out).suffix.lower() not in (".html", ".htm"):  # "" too: not the default
        raise ConfigError(f"{str(out) or repr('')}: the report is an HTML page; name a file ending in .html")
    o = open_run(str(run), device, which)
    return atomic_write_text(Path(out) if out is not None else o.run.report, render(o, data_dir, seed))
