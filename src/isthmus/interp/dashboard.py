"""A static HTML feature dashboard for a trained SAE (``isthmus sae dashboard``).

:func:`build_dashboard` streams an activation store through the SAE once (per-feature firing count,
mean/max activation, top-activating rows, a histogram of non-zero activations), then writes::

    OUT/index.html             every feature: search box, sortable columns (density, mean activation,
                               max activation, explanation score); search/sort also from the URL hash,
                               e.g. index.html#q=induction&sort=density
    OUT/features/f00012.html   one page per feature: top-activating contexts with highlighted tokens,
                               an inline-SVG activation histogram, decoder-direction statistics,
                               explanation and scores (when given)
    OUT/features.json          the same numbers, machine-readable

No server is needed (open ``index.html``, or ``python -m http.server -d OUT``) and nothing is fetched.
Token text and explanations are untrusted: everything written into HTML goes through :func:`html.escape`,
and no data is embedded inside ``<script>``.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from isthmus.io import atomic_write_bytes, atomic_write_json

__all__ = ["FeatureStats", "feature_stats", "build_dashboard", "store_vocab", "load_explanations"]

N_BINS = 20


@dataclass
class FeatureStats:
    n_rows: int
    count: np.ndarray  # (m,) rows where the feature fired
    total: np.ndarray  # (m,) sum of activations
    max: np.ndarray  # (m,)
    top_vals: np.ndarray  # (m, n_top) best activations, descending (0 where fewer rows fired)
    top_rows: np.ndarray  # (m, n_top) their row indices in the store (-1 where none)
    hist: np.ndarray  # (m, N_BINS) counts of non-zero activations in [0, max] bins

    @property
    def density(self) -> np.ndarray:
        return self.count / max(self.n_rows, 1)

    @property
    def mean_act(self) -> np.ndarray:
        return self.total / np.maximum(self.count, 1)


@torch.no_grad()
def _encode(sae: Any, x: torch.Tensor) -> torch.Tensor:
    """Codes on the CPU for an SAE on any device."""
    w = sae.W_enc
    return sae.encode(x.to(device=w.device, dtype=w.dtype)).float().cpu()


@torch.no_grad()
def feature_stats(sae: Any, acts: torch.Tensor, n_top: int = 16, batch_size: int = 4096) -> FeatureStats:
    """Two passes over ``acts`` (N, d): counts/sums/max/top rows, then histograms on [0, max]."""
    n, m = len(acts), sae.config.d_sae
    count, total, mx = torch.zeros(m), torch.zeros(m, dtype=torch.float64), torch.zeros(m)
    top_v = torch.full((m, 0), 0.0)
    top_i = torch.full((m, 0), -1, dtype=torch.long)
    for s in range(0, n, batch_size):
        z = _encode(sae, acts[s : s + batch_size])
        count += (z > 0).sum(0)
        total += z.sum(0, dtype=torch.float64)
        mx = torch.maximum(mx, z.max(0).values.clamp_min(0))
        cand_v = torch.cat([top_v, z.t()], 1)
        cand_i = torch.cat([top_i, torch.arange(s, s + len(z)).expand(m, -1)], 1)
        k = min(n_top, cand_v.shape[1])
        top_v, pos = cand_v.topk(k, dim=1)
        top_i = cand_i.gather(1, pos)
    top_i = torch.where(top_v > 0, top_i, torch.full_like(top_i, -1))
    hist = torch.zeros(m, N_BINS)
    scale = mx.clamp_min(1e-12)
    for s in range(0, n, batch_size):
        z = _encode(sae, acts[s : s + batch_size])
        fired = z > 0
        b = (z / scale * N_BINS).long().clamp_(0, N_BINS - 1)
        cols = torch.arange(m).expand_as(b)
        hist.index_put_((cols[fired], b[fired]), torch.ones(int(fired.sum())), accumulate=True)
    return FeatureStats(n, count.numpy(), total.numpy(), mx.numpy(), top_v.numpy(), top_i.numpy(), hist.numpy())


def decoder_stats(sae: Any) -> dict[str, np.ndarray]:
    """Per feature: decoder norm, nearest other decoder row (id, cosine), encoder/decoder cosine."""
    w = sae.W_dec.detach().float().cpu()
    norms = w.norm(dim=1)
    unit = w / norms.clamp_min(1e-12).unsqueeze(1)
    nn_cos, nn_id = torch.zeros(len(w)), torch.zeros(len(w), dtype=torch.long)
    for s in range(0, len(w) if len(w) > 1 else 0, 2048):  # chunks: no (m, m) matrix for big dictionaries
        cos = unit[s : s + 2048] @ unit.t()
        cos[torch.arange(len(cos)), torch.arange(s, s + len(cos))] = -2.0
        nn_cos[s : s + 2048], nn_id[s : s + 2048] = cos.max(1)
    we = sae.W_enc.detach().float().cpu()
    if we.shape == unit.shape:
        enc_dec = (we * unit).sum(1) / we.norm(dim=1).clamp_min(1e-12)
    else:  # a transcoder: encoder and decoder live in different spaces
        enc_dec = torch.full((len(w),), float("nan"))
    return {
        "norm": norms.numpy(),
        "nn_id": nn_id.numpy(),
        "nn_cos": nn_cos.numpy(),
        "enc_dec_cos": enc_dec.numpy(),
        "b_enc": sae.b_enc.detach().float().cpu().numpy(),
    }


def load_explanations(path: str | Path | None) -> dict[int, dict[str, Any]]:
    """``{"12": {"explanation": "...", "score": 0.8, "scores": {"detection": 0.8}}, ...}`` or a list of
    records with a ``feature`` field -> {feature id: record}. A missing path gives {}."""
    if path is None or not Path(path).exists():
        return {}
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(raw, list):
        return {int(r["feature"]): r for r in raw}
    return {int(k): (v if isinstance(v, dict) else {"explanation": str(v)}) for k, v in raw.items()}


def store_vocab(store: Any) -> Callable[[int], str] | None:
    """Token-id -> text for a store's host model, when it can be found offline; else None."""
    man = store.manifest
    if isinstance(man.get("vocab"), list):
        vocab = man["vocab"]
        return lambda i: vocab[i] if 0 <= i < len(vocab) else f"#{i}"
    model = str(man.get("model") or "")
    try:
        if model.startswith("toy:"):
            target = model[4:]
            if Path(target).is_dir():
                from isthmus.io import read_json

                vocab = read_json(Path(target) / "config.json").get("vocab") or []
            else:
                from isthmus.interp.toy import make_task

                vocab = make_task(man.get("task") or target, 1).vocab
            return (lambda i: vocab[i] if 0 <= i < len(vocab) else f"#{i}") if vocab else None
        if model:
            from transformers import AutoTokenizer

            name = "sentence-transformers/all-MiniLM-L6-v2" if model == "minilm" else model
            if "all-MiniLM-L6-v2" in name:
                from isthmus.interp.hf import load_minilm

                tok = load_minilm()[1]
            else:
                tok = AutoTokenizer.from_pretrained(name, local_files_only=True)
            return lambda i: tok.convert_ids_to_tokens(int(i))
    except Exception:  # noqa: BLE001 - a dashboard with token ids beats no dashboard
        return None
    return None


# ---- HTML -------------------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1100px}
table{border-collapse:collapse;width:100%}th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}
th{cursor:pointer;background:#f4f4f4;user-select:none}th.sorted{background:#dde8f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ctx{font-family:ui-monospace,monospace;white-space:pre-wrap;line-height:1.9;margin:2px 0}
.tok{padding:1px 0;border-radius:2px}.tok.max{outline:1px solid #c00}
.muted{color:#777}input#search{width:22em;padding:4px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}dt{font-weight:600}
"""

_INDEX_JS = """
(function(){
  var body=document.getElementById('rows'), rows=Array.prototype.slice.call(body.rows);
  var search=document.getElementById('search'), shown=document.getElementById('shown');
  var key='id', desc=false;
  function apply(){
    var q=search.value.trim().toLowerCase(), n=0;
    rows.sort(function(a,b){
      var x=parseFloat(a.dataset[key]), y=parseFloat(b.dataset[key]);
      if(isNaN(x)) x=-Infinity; if(isNaN(y)) y=-Infinity;
      return desc ? y-x : x-y;
    });
    rows.forEach(function(r){
      var hit=!q || r.dataset.search.indexOf(q)>=0;
      r.style.display=hit?'':'none'; if(hit) n++; body.appendChild(r);
    });
    shown.textContent=n+' of '+rows.length+' features shown';
    document.querySelectorAll('th[data-key]').forEach(function(th){
      th.classList.toggle('sorted', th.dataset.key===key);
    });
    document.body.setAttribute('data-sort', key+(desc?':desc':':asc'));
  }
  document.querySelectorAll('th[data-key]').forEach(function(th){
    th.addEventListener('click', function(){
      if(key===th.dataset.key){desc=!desc;}else{key=th.dataset.key;desc=(key!=='id');}
      apply();
    });
  });
  search.addEventListener('input', apply);
  var h=new URLSearchParams(location.hash.slice(1));
  if(h.get('q')) search.value=h.get('q');
  if(h.get('sort')){key=h.get('sort');desc=h.get('order')!=='asc';}
  apply();
  document.body.setAttribute('data-ready','1');
})();
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _finite(x: Any) -> float | None:
    """A JSON-safe number: None for NaN (a transcoder's encoder/decoder cosine is undefined)."""
    x = float(x)
    return None if x != x else x


def _fmt(x: float, digits: int = 4) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def _page(title: str, body: str, script: str = "") -> str:
    js = f"<script>{script}</script>" if script else ""
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body>{body}{js}</body></html>\n"
    )


def _histogram_svg(counts: np.ndarray, max_act: float, width: int = 420, height: int = 120) -> str:
    peak = max(float(counts.max()), 1.0)
    bw = width / len(counts)
    bars = []
    for i, c in enumerate(counts):
        h = (height - 20) * (math.log1p(c) / math.log1p(peak))
        lo, hi = max_act * i / len(counts), max_act * (i + 1) / len(counts)
        bars.append(
            f'<rect x="{i * bw:.1f}" y="{height - 15 - h:.1f}" width="{bw - 1:.1f}" height="{h:.1f}" '
            f'fill="#3b6fb6"><title>{lo:.3g}-{hi:.3g}: {int(c)}</title></rect>'
        )
    return (
        f'<svg class="hist" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="activation histogram">{"".join(bars)}'
        f'<text x="0" y="{height - 2}" font-size="10">0</text>'
        f'<text x="{width}" y="{height - 2}" font-size="10" text-anchor="end">{max_act:.3g}</text></svg>'
    )


def _context_html(tokens: Sequence[str], values: Sequence[float], center: int, vmax: float) -> str:
    spans = []
    for j, (tok, v) in enumerate(zip(tokens, values)):
        # WordPiece continuations ("##ing") attach to the previous token; other tokens get a space,
        # except character-level vocabularies (single characters), which carry their own spaces.
        if tok.startswith("##"):
            tok = tok[2:]
        elif j > 0 and len(tok) > 1:
            spans.append(" ")
        alpha = 0.0 if v <= 0 else min(1.0, 0.15 + 0.85 * v / max(vmax, 1e-12))
        cls = "tok max" if j == center else "tok"
        spans.append(
            f'<span class="{cls}" style="background:rgba(230,120,20,{alpha:.2f})" '
            f'title="{_e(f"{v:.4g}")}">{_e(tok)}</span>'
        )
    return "".join(spans)


def build_dashboard(
    sae: Any,
    store: Any,
    out: str | Path,
    *,
    token_text: Callable[[int], str] | None = None,
    explanations: dict[int, dict[str, Any]] | None = None,
    max_rows: int = 65_536,
    n_top: int = 16,
    window: tuple[int, int] = (8, 3),
    max_features: int | None = None,
    title: str = "SAE feature dashboard",
) -> Path:
    """Write the dashboard for ``sae`` on the first ``max_rows`` rows of ``store`` into ``out``; return
    the path of ``index.html``. ``window`` = tokens shown before/after each top-activating token."""
    out = Path(out)
    (out / "features").mkdir(parents=True, exist_ok=True)
    n = min(len(store), max_rows)
    acts = store.read(0, n).float()
    tok_ids = store.read(0, n, "token_ids").long().numpy()
    positions = store.read(0, n, "positions").long().numpy()
    sequences = store.read(0, n, "sequence").long().numpy()
    text = token_text or (lambda i: f"#{i}")
    expl = explanations or {}
    stats = feature_stats(sae, acts, n_top=n_top)
    dec = decoder_stats(sae)
    m = sae.config.d_sae
    # (sequence, position) -> row, for contexts
    key = sequences * (int(positions.max()) + 1 if n else 1) + positions
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    stride = int(positions.max()) + 1 if n else 1

    def row_of(seq: int, pos: int) -> int:
        k = seq * stride + pos
        j = np.searchsorted(sorted_key, k)
        return int(order[j]) if j < len(sorted_key) and sorted_key[j] == k else -1

    alive = [f for f in range(m) if stats.count[f] > 0]
    paged = alive if max_features is None else alive[:max_features]
    paged_set = set(paged)
    records = []
    for f in range(m):
        e = expl.get(f, {})
        score = e.get("score")
        records.append(
            {
                "feature": f,
                "density": float(stats.density[f]),
                "mean_act": float(stats.mean_act[f]),
                "max_act": float(stats.max[f]),
                "decoder_norm": float(dec["norm"][f]),
                "nearest_feature": int(dec["nn_id"][f]),
                "nearest_cos": float(dec["nn_cos"][f]),
                "enc_dec_cos": _finite(dec["enc_dec_cos"][f]),
                "explanation": e.get("explanation"),
                "score": None if score is None else float(score),
                "scores": e.get("scores", {}),
                "page": f"features/f{f:05d}.html" if f in paged_set else None,
            }
        )
    for f in paged:
        r = records[f]
        ctx_rows, windows = [], []
        for row in stats.top_rows[f]:
            if row >= 0:
                seq, pos = int(sequences[row]), int(positions[row])
                rows = [row_of(seq, p) for p in range(pos - window[0], pos + window[1] + 1)]
                windows.append([x for x in rows if x >= 0])
        flat = [x for rows in windows for x in rows]
        feat_vals = _encode(sae, acts[flat])[:, f].tolist() if flat else []  # one encode per feature
        start = 0
        for val, row, rows in zip(stats.top_vals[f], stats.top_rows[f], windows):
            seq, pos = int(sequences[row]), int(positions[row])
            vals, start = feat_vals[start : start + len(rows)], start + len(rows)
            toks = [text(int(tok_ids[x])) for x in rows]
            center = rows.index(int(row))
            ctx_rows.append(
                f'<tr><td class="num">{val:.4g}</td><td class="muted">seq {seq} pos {pos}</td>'
                f'<td><div class="ctx">{_context_html(toks, vals, center, float(stats.max[f]))}</div>'
                f"</td></tr>"
            )
        scores = "".join(f"<dt>{_e(k)}</dt><dd>{_e(_fmt(float(v)))}</dd>" for k, v in (r["scores"] or {}).items())
        nn_f = r["nearest_feature"]
        nn_link = f'<a href="f{nn_f:05d}.html">feature {nn_f}</a>' if nn_f in paged_set else f"feature {nn_f}"
        expl_html = _e(r["explanation"]) if r["explanation"] else '<span class="muted">no explanation</span>'
        score_html = "" if r["score"] is None else f"<dt>explanation score</dt><dd>{_e(_fmt(r['score']))}</dd>"
        enc_dec = "n/a" if r["enc_dec_cos"] is None else f"{r['enc_dec_cos']:.3f}"
        body = (
            f'<p><a href="../index.html">&larr; all features</a></p><h1>Feature {f}</h1>'
            f'<p class="explanation">{expl_html}</p><dl>{score_html}{scores}<dt>density</dt><dd>{r["density"]:.4g} ({int(stats.count[f])} of {n} tokens)</dd>'
            f"<dt>mean activation (when firing)</dt><dd>{r['mean_act']:.4g}</dd><dt>max activation</dt>"
            f"<dd>{r['max_act']:.4g}</dd></dl>"
            f"<h2>Activation histogram</h2>{_histogram_svg(stats.hist[f], float(stats.max[f]))}"
            f'<p class="muted">non-zero activations, log-scaled counts</p>'
            f"<h2>Decoder direction</h2><dl><dt>decoder norm</dt><dd>{r['decoder_norm']:.4g}</dd>"
            f"<dt>nearest decoder direction</dt><dd>{nn_link} (cosine {r['nearest_cos']:.3f})</dd>"
            f"<dt>encoder/decoder cosine</dt><dd>{enc_dec}</dd><dt>encoder bias</dt>"
            f"<dd>{float(dec['b_enc'][f]):.4g}</dd></dl>"
            f'<h2>Top-activating contexts</h2><table class="contexts"><thead><tr><th>activation</th><th>where</th>'
            f"<th>context</th></tr></thead><tbody>{''.join(ctx_rows)}</tbody></table>"
        )
        atomic_write_bytes(out / "features" / f"f{f:05d}.html", _page(f"Feature {f} - {title}", body).encode())
    rows_html = []
    for r in records:
        if r["page"] is None:
            continue
        f = r["feature"]
        search = f"{f} {r['explanation'] or ''}".lower()
        score = "" if r["score"] is None else r["score"]
        rows_html.append(
            f'<tr data-id="{f}" data-density="{r["density"]:.6g}" data-mean_act="{r["mean_act"]:.6g}" '
            f'data-max_act="{r["max_act"]:.6g}" data-score="{_e(score)}" data-search="{_e(search)}">'
            f'<td><a href="{_e(r["page"])}">{f}</a></td><td class="num">{r["density"]:.4g}</td>'
            f'<td class="num">{r["mean_act"]:.4g}</td><td class="num">{r["max_act"]:.4g}</td>'
            f'<td class="num">{_e(_fmt(r["score"], 3) if r["score"] is not None else "")}</td>'
            f"<td>{_e(r['explanation'] or '')}</td></tr>"
        )
    meta = store.manifest
    body = (
        f'<h1>{_e(title)}</h1><p class="muted">{_e(meta.get("model"))} · point {_e(meta.get("point"))} · '
        f"{n} tokens · {m} features, {len(alive)} fired, {m - len(alive)} dead</p>"
        f'<p><input id="search" type="search" placeholder="search feature id or explanation"> '
        f'<span id="shown">{len(rows_html)} features</span></p>'
        f'<table id="features"><thead><tr><th data-key="id">feature</th><th data-key="density">density</th>'
        f'<th data-key="mean_act">mean act</th><th data-key="max_act">max act</th>'
        f'<th data-key="score">expl. score</th><th>explanation</th></tr></thead>'
        f'<tbody id="rows">{"".join(rows_html)}</tbody></table>'
    )
    index = out / "index.html"
    atomic_write_bytes(index, _page(title, body, _INDEX_JS).encode())
    atomic_write_json(
        out / "features.json",
        {
            "n_tokens": n,
            "d_sae": m,
            "store": str(store.path),
            "model": meta.get("model"),
            "point": meta.get("point"),
            "features": records,
        },
    )
    return index
