"""What `vaelab eval` measured, for the report: the estimator table and charts of the ELBO's decomposition.

The ELBO splits into reconstruction and KL (distortion and rate): -ELBO = -E_q log p(x|z) + KL(q || p),
and log p(x) = ELBO + KL(q(z|x) || p(z|x)), the gap. The charts show those parts, the IWAE bound
against K beside AIS and BDMC, and the KL of each latent dimension (collapsed units sit near zero).
Everything is read defensively: a missing part is left out, a value that is not a number shows as such.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

from vaelab.viz.grids import plt, save_figure

DECOMPOSITION_NAMES = {
    "rec": "E_q log p(x|z) (reconstruction)",
    "kl": "KL(q(z|x) || p(z)) (rate)",
    "elbo": "ELBO",
    "free_energy_elbo": "ELBO (free-energy form)",
    "gap": "gap log p(x) − ELBO",
    "active_units": "active units",
    "mutual_information": "mutual information I(x; z)",
    "forms_difference": "difference of the two ELBO forms",
    "gap_means": "gap is",
    "posterior_mean_variance_per_dim": "Var_x E_q[z] per dimension",
    "kl_per_dim": "KL per dimension",
}


def num(v: Any) -> float | None:
    """A finite float, or None for anything else (missing, text, NaN, booleans)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def first(*values: Any) -> float | None:
    """The first of `values` that is a finite number."""
    return next((num(v) for v in values if num(v) is not None), None)


def fmt(v: Any, digits: int = 2) -> str:
    """A number with `digits` decimals; other values escaped as text; missing as a dash."""
    if v is None:
        return "–"
    x = num(v)
    if x is not None:
        return f"{x:,.{digits}f}" if not isinstance(v, int) else f"{v:,}"
    return html.escape(str(v))


def _part(ev: dict[str, Any], key: str) -> dict[str, Any]:
    v = ev.get(key)
    return v if isinstance(v, dict) else {}


def _row(name: str, part: dict[str, Any], log_px_key: str, detail: str, pixels: int) -> str:
    """One estimator: log p(x) ± s.e., NLL and bits/dim (computed from the NLL when not given)."""
    lp = num(part.get(log_px_key))
    nll = first(part.get("nll"), part.get("nll_bound"), None if lp is None else -lp)
    bpd = first(part.get("bits_per_dim"), None if nll is None else nll / (pixels * math.log(2)))
    cells = [fmt(part.get(log_px_key)), fmt(part.get("stderr"), 3), fmt(nll), fmt(bpd, 4)]
    return (
        f"<tr><th>{html.escape(name)}</th>"
        + "".join(f"<td>{c}</td>" for c in cells)
        + f"<td>{detail}</td></tr>"
    )


def estimator_table(ev: dict[str, Any], pixels: int) -> str:
    """One row per estimator present: ELBO, importance sampling, AIS, the BDMC sandwich and the PSIS k-hat.

    Args:
        ev: eval.json as a dict.
        pixels: dimensions of one image (for bits/dim when eval.json has none).
    """
    rows = []
    elbo, imp, ais, bdmc = (_part(ev, k) for k in ("elbo", "importance", "ais", "bdmc"))
    if elbo:
        detail = f"E_q log p(x|z) = {fmt(elbo.get('rec'))}, KL = {fmt(elbo.get('kl'))}"
        rows.append(_row("ELBO (lower bound)", elbo, "estimate", detail, pixels))
    if imp:
        detail = f"K = {fmt(imp.get('num_samples'))}, ESS mean {fmt(imp.get('ess_mean'), 1)}"
        if "ess_min" in imp:
            detail += f", min {fmt(imp.get('ess_min'), 1)}"
        rows.append(_row("importance sampling", imp, "log_px", detail, pixels))
    if ais:
        detail = f"T = {fmt(ais.get('steps'))}, {fmt(ais.get('chains'))} chains"
        if "leapfrog" in ais:
            detail += f", {fmt(ais.get('leapfrog'))} leapfrog steps"
        detail += f", acceptance {fmt(ais.get('acceptance'), 3)}"
        rows.append(_row("AIS", ais, "log_px", detail, pixels))
    if bdmc:
        n = bdmc.get("num_data")
        rows.append(
            f"<tr><th>BDMC{' on ' + fmt(n) + ' simulated images' if n is not None else ''}</th>"
            f"<td colspan=4>{fmt(bdmc.get('lower'))} ≤ log p(x) ≤ {fmt(bdmc.get('upper'))}</td>"
            f"<td>gap {fmt(bdmc.get('gap'), 3)} ± {fmt(bdmc.get('gap_stderr'), 3)} nats "
            f"(the AIS error bound on simulated data)</td></tr>"
        )
    psis = _part(ev, "psis")
    if psis:
        share = num(psis.get("share_above_threshold"))
        rows.append(
            f"<tr><th>PSIS k̂ of the IS weights</th>"
            f"<td colspan=4>{fmt(None if share is None else 100 * share, 1)}% of images above "
            f"{fmt(psis.get('threshold'), 1)}</td>"
            f"<td>k̂ mean {fmt(psis.get('k_hat_mean'))}, max {fmt(psis.get('k_hat_max'))}, "
            f"K = {fmt(psis.get('num_samples'))} (Vehtari et al.: above 0.7 an image's IS log p(x) "
            f"is not to be trusted)</td></tr>"
        )
    if not rows:
        return ""
    head = (
        "<tr><th>estimator</th><th>log p(x)</th><th>± s.e.</th><th>NLL</th><th>bits/dim</th>"
        "<th>settings</th></tr>"
    )
    return f'<table class="grid">{head}{"".join(rows)}</table>'


META_KEYS = (
    "split",
    "num_images",
    "seed",
    "epoch",
    "device",
    "binarize",
    "binarize_seed",
    "seconds",
    "checkpoint",
)
KNOWN_KEYS = frozenset(
    (*META_KEYS, "run", "model", "data", "elbo", "importance", "psis", "ais", "bdmc", "decomposition")
)


def _value(v: Any, se: Any = None) -> str:
    """A value for a key-value table: numbers with 3 decimals (± s.e.), lists and objects as JSON."""
    if isinstance(v, list) and v and all(num(x) is not None for x in v):
        shown = ", ".join(f"{x:.3g}" for x in v[:12])
        return html.escape(f"[{shown}{', ...' if len(v) > 12 else ''}]")
    if isinstance(v, (list, dict)):
        text = json.dumps(v)
        return html.escape(text if len(text) <= 120 else text[:117] + "...")
    return fmt(v, 3) + (f" ± {fmt(se, 3)}" if num(se) is not None else "")


def _kv_card(title: str, part: dict[str, Any], names: dict[str, str] | None = None) -> str:
    names = names or {}
    body = "".join(
        f"<tr><th>{html.escape(names.get(k, k.replace('_', ' ')))}</th>"
        f"<td>{_value(v, part.get(k + '_stderr'))}</td></tr>"
        for k, v in part.items()
        if not k.endswith("_stderr")
    )
    if not body:
        return ""
    return f'<div class="card narrow"><h3>{html.escape(title)}</h3><table class="kv">{body}</table></div>'


def _chart(charts: dict[str, str | None], notes: dict[str, str], key: str, title: str) -> str:
    if charts.get(key):
        return f'<figure class="card"><h3>{title}</h3><img src="{charts[key]}" alt="{title}"></figure>'
    if key in notes:
        return f'<p class="note">{html.escape(title)}: {html.escape(notes[key])}</p>'
    return ""


def eval_section(
    ev: dict[str, Any] | None, note: str | None, pixels: int, charts: dict[str, str | None], notes: dict
) -> str:
    """The report's evaluation section: settings, the estimator table, the decomposition and its charts."""
    if ev is None:
        return f'<p class="warn">{html.escape(note or "no evaluation")}</p>'
    meta = [
        f"{html.escape(k.replace('_', ' '))} {fmt(ev[k], 1) if k == 'seconds' else fmt(ev[k])}"
        for k in META_KEYS
        if k in ev
    ]
    out = [f'<p class="meta">{" · ".join(meta)} · nats per image</p>' if meta else ""]
    out.append(estimator_table(ev, pixels))
    first_row = [
        _kv_card("decomposition", _part(ev, "decomposition"), DECOMPOSITION_NAMES),
        _chart(charts, notes, "decomposition", "The ELBO, taken apart"),
    ]
    second_row = [
        _chart(charts, notes, "iwae", "Bounds against K"),
        _chart(charts, notes, "kl_per_dim", "KL per latent dimension"),
        _kv_card("other", {k: v for k, v in ev.items() if k not in KNOWN_KEYS}),
    ]
    out += [f'<div class="cols">{"".join(row)}</div>' for row in (first_row, second_row) if any(row)]
    return "".join(out)


def decomposition_chart(ev: dict[str, Any], path: str | os.PathLike) -> Path | None:
    """-ELBO as distortion + rate beside -log p(x) and the gap between them (None if rec or KL is missing)."""
    dec = _part(ev, "decomposition") or _part(ev, "elbo")
    rec, kl = num(dec.get("rec")), num(dec.get("kl"))
    if rec is None or kl is None:
        return None
    elbo = first(dec.get("elbo"), dec.get("estimate"), rec - kl)
    if elbo is None:  # rec - kl overflowed (an edited or absurd eval.json): nothing sensible to draw
        return None
    gap = num(dec.get("gap"))
    log_px = first(_part(ev, "importance").get("log_px"), _part(ev, "ais").get("log_px"))
    if gap is None and log_px is not None:
        gap = log_px - elbo
    fig, ax = plt.subplots(figsize=(5.6, 2.6 if gap is not None else 1.7))
    ax.barh(1, -rec, color="#4c78a8", label=f"distortion −E_q log p(x|z) = {-rec:.2f}")
    ax.barh(1, kl, left=-rec, color="#f58518", label=f"rate KL(q || p) = {kl:.2f}")
    ax.text(-rec + kl, 1, f"  −ELBO = {-elbo:.2f}", va="center", fontsize=9)
    ticks, names = [1], ["−ELBO"]
    if gap is not None:
        nll = -(elbo + gap)
        ax.barh(0, nll, color="#54a24b", label=f"−log p(x) = {nll:.2f}")
        ax.barh(
            0,
            gap,
            left=nll,
            color="none",
            edgecolor="#333",
            hatch="///",
            label=f"gap KL(q(z|x) || p(z|x)) = {gap:.2f}",
        )
        ax.text(max(nll + gap, nll), 0, f"  −log p(x) = {nll:.2f}", va="center", fontsize=9)
        ticks, names = [1, 0], ["−ELBO", "−log p(x)"]
    ax.set_yticks(ticks, names)
    ax.set_xlabel("nats per image")
    right = max(-rec + kl, -rec, 0) * 1.28 + 1e-9
    ax.set_xlim(min(0, -rec) * 1.1, right)
    ax.legend(
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.32 if gap is not None else -0.6),
        ncol=2,
        frameon=False,
    )
    ax.spines[["top", "right"]].set_visible(False)
    return save_figure(fig, path)


def _curve(imp: dict[str, Any]) -> list[tuple[int, float, float | None]]:
    """(K, bound, s.e.) points of the IWAE curve; values are numbers or {"log_px", "stderr"} objects."""
    curve = imp.get("iwae_curve")
    pts = []
    for k, v in curve.items() if isinstance(curve, dict) else ():
        try:
            kk = int(k)
        except (TypeError, ValueError):
            continue
        value, se = (v.get("log_px"), v.get("stderr")) if isinstance(v, dict) else (v, None)
        if kk > 0 and num(value) is not None:
            pts.append((kk, num(value), num(se)))
    return sorted(pts)


def iwae_chart(ev: dict[str, Any], path: str | os.PathLike) -> Path | None:
    """The IWAE bound against K (log scale, ±2 s.e.), with the ELBO and AIS as horizontal lines."""
    pts = _curve(_part(ev, "importance"))
    if not pts:
        return None
    ks, values, ses = zip(*pts)
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    errors = [2 * se if se is not None else 0.0 for se in ses]
    ax.errorbar(
        ks, values, yerr=errors, fmt="o-", color="#4c78a8", capsize=3, label="IWAE bound L_K (±2 s.e.)"
    )
    elbo = num(_part(ev, "elbo").get("estimate"))
    if elbo is not None:
        ax.axhline(elbo, color="#999", ls="--", lw=1, label=f"ELBO {elbo:.2f}")
    ais = _part(ev, "ais")
    a, se = num(ais.get("log_px")), num(ais.get("stderr"))
    if a is not None:
        ax.axhline(a, color="#e45756", lw=1.2, label=f"AIS {a:.2f}" + (" (±2 s.e.)" if se else ""))
        if se is not None:
            ax.axhspan(a - 2 * se, a + 2 * se, color="#e45756", alpha=0.12, lw=0)
    ax.set_xscale("log")
    ax.set_xlabel("K (importance samples)")
    ax.set_ylabel("log p(x) bound (nats per image)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def kl_per_dim_chart(ev: dict[str, Any], path: str | os.PathLike) -> Path | None:
    """A bar per latent dimension: its KL(q || p) averaged over the data (None when not in eval.json)."""
    dec = _part(ev, "decomposition")
    values = dec.get("kl_per_dim")
    if not isinstance(values, list) or not values:
        return None
    kl = [num(v) or 0.0 for v in values]
    fig, ax = plt.subplots(figsize=(max(4.0, min(9.0, 0.35 * len(kl) + 2)), 3.2))
    ax.bar(range(len(kl)), kl, color="#4c78a8")
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("KL (nats)")
    au = dec.get("active_units")
    ax.set_title(
        f"active units: {fmt(au)} of {len(kl)}" if au is not None else f"{len(kl)} dimensions", fontsize=10
    )
    if len(kl) <= 32:
        ax.set_xticks(range(len(kl)))
    ax.spines[["top", "right"]].set_visible(False)
    return save_figure(fig, path)
