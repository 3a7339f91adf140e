"""The model card (`README.md`) of an exported safetensors folder: the model, its data, what `vaelab eval`
measured (each estimate with its method and standard error, in nats per image), and how to load it.

The card is made from the run's config, the checkpoint and eval.json alone; an eval.json of another checkpoint
or epoch than the one exported is named as such, and its numbers are left out.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torch import nn

from vaelab.models.registry import MODELS
from vaelab.runs import read_eval


def _cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def estimate_rows(ev: dict[str, Any]) -> list[dict[str, Any]]:
    """eval.json's estimates of log p(x) (or a bound on it): name, method, settings, value, standard error,
    bits/dim, in eval.json's order.

    Args:
        ev: eval.json as a dict.
    """
    rows = []
    for name, block in ev.items():
        if not isinstance(block, dict) or "method" not in block:
            continue
        key = "log_px" if "log_px" in block else "estimate" if "estimate" in block else None
        value = _num(block.get(key)) if key else None
        if value is None:
            continue
        keys = list(block)
        settings = {k: block[k] for k in keys[keys.index("method") + 1 : keys.index(key)]}
        rows.append(
            {
                "name": name,
                "method": block["method"],
                "settings": settings,
                "value": value,
                "stderr": _num(block.get("stderr")),
                "bits_per_dim": _num(block.get("bits_per_dim")),
            }
        )
    return rows


def _eval_section(
    ev: dict[str, Any] | None, why: str | None, checkpoint: str, epoch: int | None
) -> list[str]:
    if ev is None:
        return [
            why
            or "The run has no eval.json: run `vaelab eval RUN` before exporting to have its numbers here."
        ]
    scored, at = Path(str(ev.get("checkpoint", ""))).name, ev.get("epoch")
    if (scored and scored != checkpoint) or (at is not None and epoch is not None and at != epoch):
        return [
            f"The run's eval.json scored {scored or 'another checkpoint'} at epoch {at}, not the exported "
            f"{checkpoint} at epoch {epoch}: its numbers are of another model and are left out "
            "(run `vaelab eval RUN` again, then export)."
        ]
    rows = estimate_rows(ev)
    if not rows:
        return ["The run's eval.json holds no estimate of log p(x)."]
    lines = [
        f"What `vaelab eval` measured on the {ev.get('split', '?')} split of {ev.get('data', '?')} "
        f"({ev.get('num_images', '?')} images, seed {ev.get('seed', '?')}), in nats per image; the standard error "
        "is over the images.",
        "",
        "| estimate | method | settings | log p(x) | standard error | bits/dim |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        se = f"{r['stderr']:.3f}" if r["stderr"] is not None else ""
        bpd = f"{r['bits_per_dim']:.4f}" if r["bits_per_dim"] is not None else ""
        lines.append(
            f"| {r['name']} | {_cell(r['method'])} | {_cell(settings)} | {r['value']:.2f} | {se} | {bpd} |"
        )
    return lines


def model_card(
    *,
    title: str,
    folder: str,
    model: nn.Module,
    config: dict[str, Any],
    shape: tuple[int, int, int],
    checkpoint: str,
    epoch: int | None,
    history: list[dict[str, Any]],
    eval_json: Path,
) -> str:
    """The card's Markdown.

    Args:
        title: the run's name.
        folder: where the card's folder is (for the loading example).
        model: the exported model (its parameter count).
        config: the run's config as a dict.
        shape: one datum's shape (C, H, W).
        checkpoint: the exported checkpoint's file name.
        epoch: its epoch.
        history: its metrics records (the last one's ELBOs are quoted).
        eval_json: the run's eval.json (read if present).
    """
    m, d = config.get("model", {}), config.get("data", {})
    name = m.get("name", "?")
    spec = MODELS.get(name)
    params = sum(p.numel() for p in model.parameters())
    body = f"{m.get('body')} body, hidden {m.get('hidden')}, {m.get('activation')}"
    last = history[-1] if history else {}
    elbos = ", ".join(
        f"{k.replace('_', ' ')} {v:.2f}"
        for k, v in last.items()
        if k.endswith("elbo") and _num(v) is not None
    )
    ev, why = read_eval(eval_json)
    why = f"The run's {why}: no numbers here." if why else None
    c, h, w = shape
    lines = [
        f"# {title}: a vaelab `{name}` model",
        "",
        (spec.description if spec is not None else f"A model registered as '{name}'.") + ".",
        "",
        "| | |",
        "| --- | --- |",
        f"| model | `{name}`, {m.get('latent_dim')} latent dimensions, {body} |",
        f"| likelihood | {m.get('likelihood')} |",
        f"| data | `{d.get('name')}`, one datum {c}x{h}x{w}, binarization {d.get('binarize')} |",
        f"| checkpoint | {checkpoint}, epoch {epoch}"
        + (f" ({elbos}, nats per image)" if elbos else "")
        + " |",
        f"| parameters | {params:,} |",
        "",
        "## Evaluation",
        "",
        *_eval_section(ev, why, checkpoint, epoch),
        "",
        "## Files",
        "",
        "- `model.safetensors`: the weights (the state dict); its metadata holds the datum shape [C, H, W].",
        "- `config.json`: the run's whole config, enough to rebuild the model.",
        "- `README.md`: this card.",
        "",
        "## Load it",
        "",
        "```python",
        "import vaelab",
        "",
        f"model = vaelab.load({folder!r})",
        "# this folder: config.json through the model registry, the weights from model.safetensors;",
        "# no torch.load, no pickle. Then model.encode(x), model.decode(z), ... as for a run folder.",
        "```",
        "",
        'Without vaelab, the tensors alone: `safetensors.torch.load_file("model.safetensors")`.',
        "",
    ]
    return "\n".join(lines)
