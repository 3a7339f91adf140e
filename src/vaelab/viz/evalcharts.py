"""What `vaelab eval` measured, for the report: the estimator table and charts of the ELBO's decomposition.

The ELBO splits into reconstruction and KL (distortion and rate): -ELBO = -E_q log p(x|z) + KL(q || p),
and log p(x) = ELBO + KL(q(z|x) || p(z|x)), the gap. The charts show those parts, the IWAE bound
against K beside AIS and BDMC, and the KL of each latent dimension (collapsed units sit near zero).
Everything is read defensively: a missing part is left out, a value that is not a number shows as such.
"""

from __future__ import annotations

import html
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


def _row(name: str, log_px: Any, se: Any, nll: Any, bpd: Any, detail: str, pixels: int) -> str:
    lp = num(log_px)
    nll_v = first(nll, None if lp is None else -lp)
    bpd_v = first(bpd, None if nll_v is None else nll_v / (pixels * math.log(2)))
    cells = [fmt(log_px), fmt(se, 3), fmt(nll_v), fmt(bpd_v, 4)]
    return (
        f"<tr><th>{html.escape(name)}</th>"
        + "".join(f"<td>{c}</td>" for c in cells)
        + f"<td>{detail}</td></tr>"
    )


def estimator_table(ev: dict[str, Any], pixels: int) -> str:
    """One row per estimator present: ELBO, importance sampling, AIS, and the BDMC sandwich."""
    rows = []
    elbo, imp, ais, bdmc = (_part(ev, k) for k in ("elbo", "importance", "ais", "bdmc"))
    if elbo:
        detail = f"E_q log p(x|z) = {fmt(elbo.get('rec'))}, KL = {fmt(elbo.get('kl'))}"
        rows.append(_row("ELBO", elbo.get("estimate"), elbo.get("stderr"), None, None, detail, pixels))
    if imp:
        detail = f"K = {fmt(imp.get('num_samples'))}, mean ESS = {fmt(imp.get('ess_mean'), 1)}"
        rows.append(
            _row(
                "importance sampling",
                imp.get("log_px"),
                imp.get("stderr"),
                imp.get("nll"),
                imp.get("bits_per_dim"),
                detail,
                pixels,
            )
        )
    if ais:
        detail = (
            f"T = {fmt(ais.get('steps'))} steps, {fmt(ais.get('chains'))} chains, "
            f"acceptance {fmt(ais.get('acceptance'), 3)}"
        )
        rows.append(
            _row(
                "AIS",
                ais.get("log_px"),
                ais.get("stderr"),
                ais.get("nll"),
                ais.get("bits_per_dim"),
                detail,
                pixels,
            )
        )
    if bdmc:
        rows.append(
            f"<tr><th>BDMC</th><td colspan=4>{fmt(bdmc.get('lower'))} ≤ log p(x) ≤ {fmt(bdmc.get('upper'))}"
            f"</td><td>gap = {fmt(bdmc.get('gap'), 3)} nats</td></tr>"
        )
    if not rows:
        return ""
    head = "<tr><th>estimator</th><th>log p(x)</th><th>± s.e.</th><th>NLL</th><th>bits/dim</th><th>settings</th></tr>"
    return f'<table class="grid">{head}{"".join(rows)}</table>'


KNOWN_KEYS = frozenset(
    [
        "run",
        "split",
        "num_images",
        "seed",
        "seconds",
        "checkpoint",
        "elbo",
        "importance",
        "ais",
        "bdmc",
        "decomposition",
    ]
)


def _kv_card(title: str, rows: list[tuple[Any, Any]]) -> str:
    if not rows:
        return ""
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{fmt(v, 3)}</td></tr>" for k, v in rows)
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
        for k in ("split", "num_images", "seed", "seconds", "checkpoint")
        if k in ev
    ]
    out = [f'<p class="meta">{" · ".join(meta)} · nats per image</p>' if meta else ""]
    out.append(estimator_table(ev, pixels))
    dec = _part(ev, "decomposition")
    scalars = [(k, v) for k, v in dec.items() if not isinstance(v, (list, dict))]
    first_row = [_kv_card("decomposition", [(DECOMPOSITION_NAMES.get(k, k), v) for k, v in scalars])]
    first_row.append(_chart(charts, notes, "decomposition", "The ELBO, taken apart"))
    other = [(k, v) for k, v in ev.items() if k not in KNOWN_KEYS]
    second_row = [
        _chart(charts, notes, "iwae", "Bounds against K"),
        _chart(charts, notes, "kl_per_dim", "KL per latent dimension"),
        _kv_card("other", other),
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


def iwae_chart(ev: dict[str, Any], path: str | os.PathLike) -> Path | None:
    """The IWAE bound against K (log scale), with the ELBO, AIS and the BDMC upper bound as lines."""
    curve = _part(ev, "importance").get("iwae_curve")
    pts = []
    for k, v in curve.items() if isinstance(curve, dict) else []:
        try:
            kk = int(k)
        except (TypeError, ValueError):
            continue
        if num(v) is not None and kk > 0:
            pts.append((kk, num(v)))
    if not pts:
        return None
    pts.sort()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    ax.plot(*zip(*pts), "o-", color="#4c78a8", label="IWAE bound L_K")
    elbo = num(_part(ev, "elbo").get("estimate"))
    if elbo is not None:
        ax.axhline(elbo, color="#999", ls="--", lw=1, label=f"ELBO {elbo:.2f}")
    ais = _part(ev, "ais")
    a, se = num(ais.get("log_px")), num(ais.get("stderr"))
    if a is not None:
        ax.axhline(a, color="#e45756", lw=1.2, label=f"AIS {a:.2f}")
        if se is not None:
            ax.axhspan(a - 2 * se, a + 2 * se, color="#e45756", alpha=0.15, lw=0)
    up = num(_part(ev, "bdmc").get("upper"))
    if up is not None:
        ax.axhline(up, color="#54a24b", ls=":", lw=1.5, label=f"BDMC upper {up:.2f}")
    ax.set_xscale("log")
    ax.set_xlabel("K (importance samples)")
    ax.set_ylabel("nats per image")
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
