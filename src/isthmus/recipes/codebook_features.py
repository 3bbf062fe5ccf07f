"""Seed 38 — codebook features: discrete top-k codes in a transformer name its hidden states and steer it.

Tamkin, Taufeeque, Goodman, "Codebook Features: Sparse and Discrete Interpretability for Neural Networks"
(arXiv 2310.17230). A toy transformer is trained on the finite-state-machine task (``make_task("fsm")``:
``BOS s0 x1 s1 x2 s2 ...``), then cosine top-k codebooks (:mod:`isthmus.interp.codebook`) replace its MLP
outputs and the whole network is fine-tuned with the task loss plus the codebook reconstruction loss.

Hidden state: at the position of input symbol ``x_t`` the model must compute the automaton's next state
``s_t = T[s_{t-1}, x_t]`` (it is not in the input yet; it is the next token). For each state we pick, on a
*fit* split, the code whose firing best matches "the hidden state is s" (F1), and compare its precision and
recall on a held-out *eval* split with the best single MLP neuron of the same layer of the base model
(neuron and threshold chosen on the fit split to maximise precision at recall >= the code's fit recall,
i.e. at matched recall, as in the paper). Steering: at one symbol position per held-out sequence, force the
best code of a random other state s' in every MLP codebook layer (the paper swaps the MLP codes) and count how
often the model's next-token prediction becomes s' (the only valid next token for state s'), against forcing
uniformly random codes (control).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from isthmus.interp.codebook import Codebooks, insert_codebooks
from isthmus.interp.hooks import run_with_cache
from isthmus.interp.toy import ToyTransformer, make_task, train_toy
from isthmus.recipes.base import Paper, Recipe, Result, summarize
from isthmus.recipes.registry import register_recipe
from isthmus.viz import pyplot, save_figure

MODE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(n_states=5, n_symbols=3, steps=8, d_model=32, d_mlp=64, n_heads=4, n_layers=2, n_train=512,
                  epochs=2,
                  ft_steps=30, n_codes=32, k=1, batch=64, n_fit=128, n_eval=128),
    "quick": dict(n_states=32, n_symbols=4, steps=12, d_model=32, d_mlp=64, n_heads=4, n_layers=2, n_train=4096,
                  epochs=8,
                  ft_steps=300, n_codes=256, k=1, batch=128, n_fit=512, n_eval=512),
    "full": dict(n_states=64, n_symbols=4, steps=24, d_model=64, d_mlp=128, n_heads=4, n_layers=2, n_train=16384,
                 epochs=10,
                 ft_steps=2000, n_codes=512, k=1, batch=256, n_fit=2048, n_eval=2048),
}
FT_LR = 1e-3
RECON_COEFF = 1.0
PRECISION_MARGIN = 0.05   # codes must beat the matched-recall neuron's precision by this much (absolute)
STEER_MIN = 0.5           # steered share valid for the target state must reach this ...
STEER_MARGIN = 0.25       # ... and exceed the random-code control by this much (absolute)
N_THRESHOLDS = 64
MIN_SUPPORT = 20          # states seen fewer times on the fit split (unreachable ones) are left out


def task_kwargs(cfg: dict) -> dict:
    return dict(n_states=cfg["n_states"], n_symbols=cfg["n_symbols"], steps=cfg["steps"], machine_seed=0)


def symbol_positions(tokens: torch.Tensor) -> torch.Tensor:
    """Column indices of the input symbols x_1..x_T in an fsm sequence (BOS s0 x1 s1 ...)."""
    return torch.arange(2, tokens.shape[1], 2)


def hidden_states(data: Any) -> torch.Tensor:
    """(N, T): the state entered after each input symbol (= the next token at each symbol position)."""
    return data.meta["states"][:, 1:]


# ---- detection: code vs neuron ---------------------------------------------------------------
def code_pr(codes: torch.Tensor, labels: torch.Tensor, n_codes: int,
            n_states: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision and recall (n_states, n_codes) of "code c fires" for "state is s"; codes (N, k), labels (N,)."""
    fires = torch.zeros(codes.shape[0], n_codes).scatter_(1, codes, 1.0)  # (N, C)
    onehot = F.one_hot(labels, n_states).float()                           # (N, S)
    tp = onehot.T @ fires                                                  # (S, C)
    prec = tp / fires.sum(0).clamp_min(1)[None]
    rec = tp / onehot.sum(0).clamp_min(1)[:, None]
    return prec, rec


def _f1(p: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return 2 * p * r / (p + r).clamp_min(1e-12)


def neuron_pr(acts: torch.Tensor, y: torch.Tensor, thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision and recall (M, Q) of ``acts[:, m] > thresholds[m, q]`` for boolean labels ``y`` (N,)."""
    fires = acts[:, :, None] > thresholds[None]           # (N, M, Q)
    tp = (fires & y[:, None, None]).sum(0).float()
    return tp / fires.sum(0).clamp_min(1).float(), tp / max(int(y.sum()), 1)


def detection(codes_fit: torch.Tensor, y_fit: torch.Tensor, codes_ev: torch.Tensor, y_ev: torch.Tensor,
              neur_fit: torch.Tensor, neur_ev: torch.Tensor, n_codes: int, n_states: int,
              states: Sequence[int] | None = None) -> dict[str, Any]:
    """Per state in ``states`` (default all): the best code (by F1 on fit) and the neuron+threshold with the best
    fit precision at recall >= the code's fit recall; both scored on eval. Returns per-state lists (in the order
    of ``states``) and the chosen code id of every state (n_states,)."""
    pf, rf = code_pr(codes_fit, y_fit, n_codes, n_states)
    best = _f1(pf, rf).argmax(1)                                           # (S,)
    pe, re = code_pr(codes_ev, y_ev, n_codes, n_states)
    qs = torch.linspace(0.3, 0.999, N_THRESHOLDS)
    thr = torch.quantile(neur_fit, qs, dim=0).T.contiguous()               # (M, Q)
    out: dict[str, list[float]] = {k: [] for k in ("code_precision", "code_recall", "code_f1", "neuron_precision",
                                                   "neuron_recall", "neuron_f1")}
    for s in (range(n_states) if states is None else states):
        c = int(best[s])
        out["code_precision"].append(float(pe[s, c]))
        out["code_recall"].append(float(re[s, c]))
        npf, nrf = neuron_pr(neur_fit, y_fit == s, thr)
        ok = nrf >= rf[s, c] - 1e-9
        score = torch.where(ok, npf, torch.full_like(npf, -1.0))
        if not bool(ok.any()):  # no neuron reaches the recall: take the best-recall one
            score = nrf
        m, q = divmod(int(score.argmax()), thr.shape[1])
        npe, nre = neuron_pr(neur_ev[:, m:m + 1], y_ev == s, thr[m:m + 1, q:q + 1])
        out["neuron_precision"].append(float(npe))
        out["neuron_recall"].append(float(nre))
    for who in ("code", "neuron"):
        out[f"{who}_f1"] = [float(_f1(torch.tensor(p), torch.tensor(r))) for p, r in
                            zip(out[f"{who}_precision"], out[f"{who}_recall"])]
    return {**out, "best_codes": best}


# ---- training -----------------------------------------------------------------------------------
def base_model(cfg: dict, seed: int) -> tuple[ToyTransformer, dict]:
    run = train_toy(dict(task="fsm", task_kwargs=task_kwargs(cfg), n_train=cfg["n_train"], n_eval=cfg["n_eval"],
                         epochs=cfg["epochs"], batch_size=64, lr=3e-3, seed=seed),
                    dict(n_layers=cfg["n_layers"], d_model=cfg["d_model"], n_heads=cfg["n_heads"], d_mlp=cfg["d_mlp"]))
    return run.model, run.metrics


def mlp_points(model: ToyTransformer) -> list[str]:
    return [f"blocks.{i}.hook_mlp_out" for i in range(model.cfg.n_layers)]


def fine_tune(model: ToyTransformer, books: Codebooks, train: Any, cfg: dict, seed: int) -> list[float]:
    """Task CE (masked positions) + RECON_COEFF x codebook reconstruction, Adam, ``ft_steps`` steps."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=FT_LR)
    model.train()
    losses = []
    for _ in range(cfg["ft_steps"]):
        idx = torch.randint(0, len(train), (cfg["batch"],), generator=g)
        out = model.compute_loss((train.tokens[idx], train.mask[idx]))
        loss = out.loss + RECON_COEFF * books.loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    model.eval()
    return losses


@torch.no_grad()
def state_accuracy(model: ToyTransformer, data: Any) -> float:
    """Share of symbol positions where the argmax next token is the true next state."""
    pos = symbol_positions(data.tokens)
    pred = model(data.tokens)[:, pos].argmax(-1)
    return float((pred == data.tokens[:, pos + 1]).float().mean())


@torch.no_grad()
def steering(model: ToyTransformer, books: Codebooks, best_codes: dict[str, torch.Tensor], data: Any,
             states: Sequence[int], seed: int) -> dict[str, float]:
    """Force a reachable state s' (≠ the true state) at one symbol position per sequence, at every codebook layer in
    ``best_codes`` (point -> best code id per state) at once: share of predictions == s', for the states' best
    codes and for uniformly random codes (control)."""
    g = torch.Generator().manual_seed(seed + 777)
    tokens = data.tokens
    n, pos = tokens.shape[0], symbol_positions(tokens)
    col = pos[torch.randint(0, len(pos), (n,), generator=g)]               # (N,)
    rows = torch.arange(n)
    true = hidden_states(data)[rows, col // 2 - 1]
    cand = torch.tensor(list(states))
    target = cand[torch.randint(0, len(cand), (n,), generator=g)]
    while bool((clash := target == true).any()):  # redraw targets equal to the true state
        target[clash] = cand[torch.randint(0, len(cand), (int(clash.sum()),), generator=g)]
    mask = torch.zeros(tokens.shape, dtype=torch.bool)
    mask[rows, col] = True
    state_tok = target + 1                                                 # token id of state s'
    res = {}
    plain = model(tokens)[rows, col].argmax(-1)
    res["unsteered_share_target"] = float((plain == state_tok).float().mean())
    for name, random in (("steer_success", False), ("random_code_success", True)):
        with contextlib.ExitStack() as stack:
            for point, codes in best_codes.items():
                ids = torch.zeros(tokens.shape, dtype=torch.long)
                ids[rows, col] = (torch.randint(0, books[point].n_codes, (n,), generator=g) if random
                                  else codes[target])
                stack.enter_context(books.force(point, ids, mask))
            pred = model(tokens)[rows, col].argmax(-1)
        res[name] = float((pred == state_tok).float().mean())
    return res


def run_seed(cfg: dict, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    kw = task_kwargs(cfg)
    model, base_metrics = base_model(cfg, seed)
    train = make_task("fsm", cfg["n_train"], seed=seed, **kw)
    fit = make_task("fsm", cfg["n_fit"], seed=seed + 20_000, **kw)
    ev = make_task("fsm", cfg["n_eval"], seed=seed + 30_000, **kw)
    points = mlp_points(model)
    pos = symbol_positions(fit.tokens)
    neuron_names = [f"blocks.{i}.mlp.2" for i in range(model.cfg.n_layers)]  # GELU hidden units of the base
    base_acts = {nm: [run_with_cache(model, d.tokens, [nm])[nm][:, pos].reshape(-1, model.cfg.d_mlp or
                                                                                 4 * model.cfg.d_model)
                      for d in (fit, ev)] for nm in neuron_names}
    base_acc = state_accuracy(model, ev)
    init = run_with_cache(model, train.tokens[:1024], points)
    books = insert_codebooks(model, points, n_codes=cfg["n_codes"], k=cfg["k"], init=init, reset_every=50)
    model.eval()
    cb_acc_before = state_accuracy(model, ev)
    losses = fine_tune(model, books, train, cfg, seed)
    cb_acc = state_accuracy(model, ev)
    y_fit, y_ev = hidden_states(fit).reshape(-1), hidden_states(ev).reshape(-1)
    counts = torch.bincount(y_fit, minlength=cfg["n_states"])
    states = [s for s in range(cfg["n_states"]) if int(counts[s]) >= MIN_SUPPORT]  # reachable after step 0
    per_layer = {}
    for i, point in enumerate(points):
        codes = []
        for d in (fit, ev):
            with torch.no_grad():
                model(d.tokens)
            codes.append(books[point].last_codes[:, pos].reshape(-1, cfg["k"]))
        a_fit, a_ev = base_acts[neuron_names[i]]
        per_layer[point] = detection(codes[0], y_fit, codes[1], y_ev, a_fit, a_ev, cfg["n_codes"], cfg["n_states"],
                                    states)
        # layer selection uses the fit split only
        pf, rf = code_pr(codes[0], y_fit, cfg["n_codes"], cfg["n_states"])
        per_layer[point]["fit_f1"] = float(_f1(pf, rf).max(1).values[states].mean())
    layer = max(points, key=lambda p: per_layer[p]["fit_f1"])
    det = per_layer[layer]
    steer = steering(model, books, {p: per_layer[p]["best_codes"] for p in points}, ev, states, seed)
    steer_one = {p: steering(model, books, {p: per_layer[p]["best_codes"]}, ev, states, seed) for p in points}
    used = {p: int(torch.unique(books[p].last_codes).numel()) for p in points}
    out = {k: float(np.mean(det[k])) for k in ("code_precision", "code_recall", "code_f1", "neuron_precision",
                                                "neuron_recall", "neuron_f1")}
    out.update(steer)
    out.update({"base_state_acc": base_acc, "codebook_state_acc": cb_acc, "codebook_acc_before_ft": cb_acc_before,
                "final_ft_ce": float(np.mean(losses[-10:]))})
    books.remove()
    return {"metrics": out, "layer": layer, "per_layer": {p: {k: float(np.mean(v)) for k, v in d.items()
                                                               if k not in ("best_codes", "fit_f1")}
                                                           for p, d in per_layer.items()},
            "codes_used_on_eval": used, "n_reset": {p: books[p].n_reset for p in points},
            "per_state": {k: det[k] for k in ("code_precision", "neuron_precision", "code_recall", "neuron_recall")},
            "base_train_seconds": base_metrics.get("train_seconds"), "states": states,
            "steer_per_layer": {p: round(v["steer_success"], 3) for p, v in steer_one.items()}}


def verdict(m: dict[str, float]) -> tuple[str, str]:
    """Seed means -> (verdict, reason). See ``CodebookFeatures.verdict_rule``."""
    prec_ok = m["code_precision"] >= m["neuron_precision"] + PRECISION_MARGIN
    steer_ok = m["steer_success"] >= STEER_MIN and m["steer_success"] >= m["random_code_success"] + STEER_MARGIN
    v = "reproduced" if prec_ok and steer_ok else "partial" if prec_ok or steer_ok else "not reproduced"
    why = (f"state detection: code precision {m['code_precision']:.3f} (recall {m['code_recall']:.3f}) vs best "
           f"neuron at matched recall {m['neuron_precision']:.3f} (recall {m['neuron_recall']:.3f}): "
           f"{'passes' if prec_ok else 'fails'} the +{PRECISION_MARGIN} margin; steering: forced state codes make "
           f"{m['steer_success']:.3f} of predictions valid for the target state vs {m['random_code_success']:.3f} "
           f"with random codes: {'passes' if steer_ok else 'fails'} (>= {STEER_MIN} and control + {STEER_MARGIN})")
    return v, why


@register_recipe
class CodebookFeatures(Recipe):
    slug = "codebook-features"
    paper = Paper("Codebook Features: Sparse and Discrete Interpretability for Neural Networks", "2310.17230")
    claim = ("Top-k codebooks inserted into a transformer and fine-tuned keep its behaviour while single codes "
             "detect the hidden states of a finite-state machine far more precisely than the best single neuron, "
             "and forcing a state's code steers the next-token prediction as if the model were in that state.")
    verdict_rule = (
        "Seed means on held-out FSM sequences, baselines on the same models, data and seeds. Codes and neurons "
        "are selected on a separate fit split; the codebook layer is the MLP codebook with the best mean fit F1. "
        f"(1) Detection: the best code's precision per state, averaged over states, is at least the precision of the "
        f"best single base-model MLP neuron of the same layer (neuron and threshold chosen on fit at recall >= the "
        f"code's fit recall) plus {PRECISION_MARGIN}. (2) Steering: forcing the target state's best code (chosen on "
        f"fit) in every MLP codebook layer at one symbol position per sequence makes the argmax next token the "
        f"target state in at least {STEER_MIN} of "
        f"sequences and at least {STEER_MARGIN} more often than forcing a uniformly random code. reproduced = both; "
        "partial = one; not reproduced = neither. Accuracy retention (base vs codebook model) is reported, not gated."
    )
    default_seeds = {"smoke": 1, "quick": 2, "full": 5}

    def run(self, mode: str, seeds: Sequence[int], out_dir: Path) -> Result:
        torch.set_num_threads(min(torch.get_num_threads(), 2))
        cfg = MODE_SETTINGS[mode]
        runs = [run_seed(cfg, s) for s in seeds]
        keys = list(runs[0]["metrics"])
        allm = {k: summarize([r["metrics"][k] for r in runs]) for k in keys}
        # ours and the baselines share metric names, so the report lines them up row by row
        metrics = {"state_precision": allm["code_precision"], "state_recall": allm["code_recall"],
                   "state_f1": allm["code_f1"], "steer_success": allm["steer_success"],
                   "state_acc": allm["codebook_state_acc"], "state_acc_before_ft": allm["codebook_acc_before_ft"],
                   "final_ft_ce": allm["final_ft_ce"]}
        baselines = {
            "best_neuron_matched_recall": {f"state_{k}": allm[f"neuron_{k}"] for k in ("precision", "recall", "f1")},
            "random_code_steering": {"steer_success": allm["random_code_success"]},
            "unsteered": {"steer_success": allm["unsteered_share_target"]},
            "base_model": {"state_acc": allm["base_state_acc"]},
        }
        v, why = verdict({k: s.mean for k, s in allm.items()})
        figure = self._plot(runs, out_dir)
        notes = [
            f"seed {s}: codebook layer {r['layer']}; per-layer means {r['per_layer']}; distinct codes used on eval "
            f"{r['codes_used_on_eval']}; dead codes reset {r['n_reset']}; {len(r['states'])} states scored; "
            f"steering success when forcing one layer only {r['steer_per_layer']}"
            for s, r in zip(seeds, runs)]
        notes += [
            f"states with fewer than {MIN_SUPPORT} occurrences on the fit split (no incoming edge in the random "
            "automaton) are excluded from detection and from steering targets",
            "hidden state = the FSM state entered after input symbol x_t, read at x_t's position (the next token); "
            "the paper's TokFSM instead spells states as 2-digit strings and reads the last digit",
            "neuron baseline = GELU units of the same layer's MLP in the base model (before codebooks), with the "
            f"best of {N_THRESHOLDS} quantile thresholds; chosen on the fit split like the codes",
            "design history (disclosed): a first quick config with 10 states, d_mlp 128, 128 codes and steering at "
            "the single fit-selected layer gave code precision 0.970 vs neuron 0.929 at matched recall (fails the "
            "margin) and steering 0.607 vs 0.062 random; with 32 states > d_mlp/2 (the paper's states >> width regime, "
            "as the seed notes prescribe) codes win detection but one-layer steering fell to 0.13 (0.35 at layer 0), "
            "so steering now forces every MLP codebook layer, as the paper's interchange swaps all MLP codes",
            "only MLP codebooks (k=1), no per-head attention group codebooks; codebooks are summed top-k cosine codes",
            f"scale: {cfg['n_states']} states, {cfg['n_symbols']} symbols, d_model {cfg['d_model']}, "
            f"{cfg['n_layers']} layers, {cfg['n_codes']} codes, {cfg['ft_steps']} fine-tune steps "
            "(paper: 100 states, 4-layer d=128, 1000 codes, 20k steps)",
        ]
        config = {"mode": mode, **cfg, "ft_lr": FT_LR, "recon_coeff": RECON_COEFF, "codebook_points": "all MLP outputs",
                  "reset_every": 50, "precision_margin": PRECISION_MARGIN, "steer_min": STEER_MIN,
                  "steer_margin": STEER_MARGIN}
        return Result(recipe=self.slug, paper=self.paper, claim=self.claim, mode=mode, seeds=list(seeds),
                      metrics=metrics, baselines=baselines, verdict=v, verdict_reason=why, config=config,
                      figures=[figure], notes=notes)

    @staticmethod
    def _plot(runs: list[dict], out_dir: Path) -> str:
        plt = pyplot()

        fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
        ax = axes[0]
        for i, r in enumerate(runs):
            ps = r["per_state"]
            ax.scatter(ps["neuron_precision"], ps["code_precision"], s=18, label=f"seed {i}", alpha=0.8)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_xlabel("best neuron precision (matched recall)")
        ax.set_ylabel("best code precision")
        ax.set_title("per hidden state", fontsize=9)
        ax.legend(fontsize=7)
        ax = axes[1]
        names = ["steer_success", "random_code_success", "unsteered_share_target"]
        vals = np.array([[r["metrics"][n] for n in names] for r in runs])
        ax.bar(range(3), vals.mean(0), yerr=vals.std(0), color=["tab:red", "tab:gray", "tab:blue"])
        ax.set_xticks(range(3), ["state code", "random code", "no steering"], fontsize=8)
        ax.set_ylabel("share of predictions = target state")
        ax.set_ylim(0, 1)
        ax.set_title("steering at one symbol position", fontsize=9)
        fig.suptitle("Codebook features on the FSM task", fontsize=9)
        save_figure(fig, out_dir / "codebook_features.png", dpi=90)
        return "codebook_features.png"
