"""``isthmus detect fit|score``: anomaly detection on tables (CSV, Parquet, npz) from the shell.

``fit`` trains an :class:`~isthmus.tasks.anomaly.AnomalyDetector` (or, with ``--entity``, one per
entity plus a global one, :class:`~isthmus.tasks.fleet.FleetDetector`) and saves it as a folder
(JSON + safetensors, no pickle). ``score`` writes one CSV row per input row: the score (higher =
more anomalous), the flag (1 = anomaly) and the top contributing columns; ``--plot`` adds a PNG
of the score over rows with the threshold and any labelled anomalies shaded.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from isthmus.cli.run_folder import add_run_folder_flags

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``detect fit|score``."""
    group = subparsers.add_parser(
        "detect",
        help="fit and apply autoencoder anomaly detectors",
        description="Fit on normal data, then score new rows.",
    )
    group.set_defaults(help_parser=group)
    sub = group.add_subparsers(dest="detect_command", metavar="SUBCOMMAND")

    p = sub.add_parser(
        "fit",
        help="fit a detector on normal (or mostly normal) rows and save it",
        description="Fit an ensemble of autoencoders on normal (or mostly normal) rows and save "
        "it to --out. With --entity, one detector per entity plus a global one.",
    )
    _data_args(p)
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder to write the detector to; refused if not empty unless --overwrite",
    )
    add_run_folder_flags(p, resume=False)
    p.add_argument(
        "--threshold",
        choices=("percentile", "contamination", "pot"),
        default="percentile",
        help="how the flag threshold is set from the training scores (default percentile)",
    )
    p.add_argument("--percentile", type=float, default=99.0, help="training-score percentile (default 99)")
    p.add_argument("--contamination", type=float, default=0.01, help="for --threshold contamination")
    p.add_argument("--n-estimators", type=int, default=5, help="autoencoders in the ensemble (default 5)")
    p.add_argument("--max-steps", type=int, default=1500, help="training steps per autoencoder (default 1500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the ensemble (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser(
        "score",
        help="score rows with a saved detector; write scores, flags, top columns",
        description="Score rows with a detector from `isthmus detect fit`: one CSV row per input "
        "row with the score (higher = more anomalous), the flag (1 = anomaly) and the "
        "top contributing columns.",
    )
    p.add_argument("model", type=Path, metavar="DIR", help="folder written by `isthmus detect fit`")
    _data_args(p)
    p.add_argument("--output", "-o", type=Path, default=None, metavar="FILE", help="scores CSV to write")
    p.add_argument("--out", dest="output", type=Path, help=argparse.SUPPRESS)  # the old name of --output
    p.add_argument("--top", type=int, default=3, help="contributing columns to list per row (default 3)")
    p.add_argument("--mode", choices=("entity", "global"), default="entity", help="fleet models only")
    p.add_argument("--plot", type=Path, default=None, metavar="PNG", help="also draw score over rows")
    moved = p.add_mutually_exclusive_group()  # move the saved threshold for this scoring (flags only)
    moved.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="SCORE",
        help="flag rows whose score is above SCORE instead of the saved threshold",
    )
    moved.add_argument(
        "--percentile",
        type=float,
        default=None,
        metavar="P",
        help="threshold at the P-th percentile of the training scores (0 < P < 100)",
    )
    moved.add_argument(
        "--contamination",
        type=float,
        default=None,
        metavar="F",
        help="threshold flagging the fraction F of training rows (0 < F < 0.5)",
    )
    p.set_defaults(func=cmd_score)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, help="CSV, Parquet or .npz table")
    p.add_argument("--columns", default=None, help="comma-separated feature columns (default: all others)")
    p.add_argument("--entity", default=None, metavar="COL", help="entity column (node, machine): one model each")
    p.add_argument("--label", default=None, metavar="COL", help="label column (1 = anomaly); never a feature")


def _load(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(features as a DataFrame with column names, entities or None, labels or None)."""
    import pandas as pd

    from isthmus.data import load_table

    kw: dict[str, Any] = {}
    if args.data.suffix.lower() != ".npz":
        kw = {
            "columns": args.columns.split(",") if args.columns else None,
            "label_column": args.label,
            "entity_column": args.entity,
        }
    elif args.columns or args.entity:
        raise ValueError("--columns and --entity need a CSV or Parquet file (an .npz has no column names)")
    table = load_table(args.data, **kw)
    names = table.feature_names or [f"x{i}" for i in range(table.X.shape[1])]
    X = pd.DataFrame(table.X.reshape(len(table.X), -1), columns=names)
    return X, table.meta.get("entity"), table.y


def _with_progress(cls: type, total: int) -> type:
    """``cls`` reporting each trained autoencoder on stderr: a fleet fit can run for many minutes.

    A subclass (not a flag on the detector) so the saved detector and its parameters stay as they
    are; scikit-learn's ``clone`` keeps the class, so fleet members report too.
    """
    done, t0 = [0], time.perf_counter()

    class WithProgress(cls):  # type: ignore[misc, valid-type]
        def _fit_member(self, spec: Any, Z: Any, seed: int) -> Any:
            out = super()._fit_member(spec, Z, seed)
            done[0] += 1
            print(
                f"detect fit: autoencoder {done[0]}/{total} trained on {len(Z)} rows "
                f"({time.perf_counter() - t0:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            return out

    WithProgress.__name__ = WithProgress.__qualname__ = cls.__name__
    return WithProgress


def cmd_fit(args: argparse.Namespace) -> int:
    import numpy as np

    from isthmus.cli.run_folder import claim_run_folder
    from isthmus.tasks.anomaly import AnomalyDetector
    from isthmus.tasks.fleet import FleetDetector, save_fleet

    X, entities, _ = _load(args)
    n_models = 1 if entities is None else len(set(np.asarray(entities).tolist())) + 1
    cls = AnomalyDetector if args.no_progress else _with_progress(AnomalyDetector, n_models * args.n_estimators)
    det = cls(
        threshold=args.threshold,
        percentile=args.percentile,
        contamination=args.contamination,
        n_estimators=args.n_estimators,
        max_steps=args.max_steps,
        random_state=args.seed,
    )
    with claim_run_folder(args.out, overwrite=args.overwrite):  # before fitting: refuse early, not after
        if entities is None:
            det.fit(X).save(args.out)
            print(f"fitted on {len(X)} rows x {X.shape[1]} columns; threshold {det.threshold_:.4g}; wrote {args.out}")
            return 0
        fleet = FleetDetector(det, random_state=args.seed).fit(X, entities)
        save_fleet(fleet, args.out)
    print(f"fitted {len(fleet.entities_)} entity models + 1 global on {len(X)} rows; wrote {args.out}")
    return 0


def _load_model(path: Path) -> Any:
    from isthmus.tasks.anomaly import AnomalyDetector
    from isthmus.tasks.fleet import load_fleet

    return load_fleet(path) if (path / "fleet.json").is_file() else AnomalyDetector.load(path)


def cmd_score(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    if args.output is None:
        raise ValueError("detect score needs --output FILE (the scores CSV to write)")
    model = _load_model(args.model)
    _move_threshold(model, args)
    X, entities, y = _load(args)
    fleet = hasattr(model, "detectors_")
    if fleet and entities is None and args.mode == "entity":
        raise ValueError("this is a per-entity model: pass --entity COL (or --mode global)")
    call = (lambda m: getattr(model, m)(X, entities, mode=args.mode)) if fleet else (lambda m: getattr(model, m)(X))
    scores, margin = call("score_samples"), call("decision_function")
    contrib = call("feature_contributions")
    top = np.argsort(-contrib, axis=1, kind="stable")[:, : args.top]
    out = pd.DataFrame({"row": np.arange(len(X)), "score": scores, "flag": (margin > 0).astype(int)})
    if entities is not None:
        out.insert(1, "entity", entities)
    for k in range(top.shape[1]):
        out[f"top{k + 1}"] = np.asarray(X.columns)[top[:, k]]
    if y is not None:
        out["label"] = y
    args.output.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(args.output, index=False)
    print(f"scored {len(X)} rows: {int(out['flag'].sum())} flagged; wrote {args.output}")
    if args.plot is not None:
        _plot(args.plot, scores, scores - margin, y)
        print(f"wrote {args.plot}")
    return 0


def _move_threshold(model: Any, args: argparse.Namespace) -> None:
    """Apply --threshold/--percentile/--contamination (a fleet: to each entity's detector, percentiles
    of its own training scores). Scores are unaffected; only flags and the plotted threshold move."""
    given = {"value": args.threshold, "percentile": args.percentile, "contamination": args.contamination}
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return
    detectors = [model] if not hasattr(model, "detectors_") else [*model.detectors_.values(), model.global_]
    for det in detectors:
        if det is not None:
            det.set_threshold(**given)


def _plot(path: Path, scores: Any, thresholds: Any, labels: Any) -> None:
    """Score over rows (log scale: scores are squared errors), threshold, labelled spans shaded."""
    import numpy as np

    from isthmus.viz import pyplot, save_figure

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(10, 3.2))
    t = np.arange(len(scores))
    ax.plot(t, scores, lw=0.8, color="tab:blue", label="score")
    ax.plot(t, thresholds, lw=0.8, color="tab:red", ls="--", label="threshold")
    if labels is not None:
        edges = np.diff(np.r_[0, (np.asarray(labels) != 0).astype(int), 0])
        for i, (s, e) in enumerate(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))):
            ax.axvspan(s - 0.5, e - 0.5, color="tab:orange", alpha=0.3, lw=0, label="labelled" if i == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("row"), ax.set_ylabel("anomaly score")
    ax.legend(loc="upper right", fontsize=8)
    save_figure(fig, path, dpi=100)
