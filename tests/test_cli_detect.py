"""`isthmus detect fit|score` on CSV files: single model and per-entity fleet, scores CSV and PNG."""

import numpy as np
import pandas as pd
import pytest
import torch

from isthmus.cli.main import main
from isthmus.data.telemetry import make_fleet_telemetry

torch.set_num_threads(1)
FAST = ["--n-estimators", "1", "--max-steps", "60"]


def _csvs(tmp_path):
    f = make_fleet_telemetry(n_nodes=2, n_steps=400, n_cores=2, anomalies_per_node=1, anomaly_length=(20, 40))
    df = f.to_frame()
    train = df[df["t"] < f.train_end].drop(columns="label")
    test = df[df["t"] >= f.train_end]
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    return f


def test_fit_and_score_single_model(tmp_path, capsys):
    _csvs(tmp_path)
    cols = "freq,power,temp,fan,mem"
    assert main(["detect", "fit", str(tmp_path / "train.csv"), "--columns", cols, "--out", str(tmp_path / "m"), *FAST]) == 0
    assert (tmp_path / "m" / "detector.json").is_file()
    rc = main(["detect", "score", str(tmp_path / "m"), str(tmp_path / "test.csv"), "--columns", cols,
               "--label", "label", "--out", str(tmp_path / "s.csv"), "--plot", str(tmp_path / "s.png")])
    assert rc == 0 and (tmp_path / "s.png").stat().st_size > 1000
    out = pd.read_csv(tmp_path / "s.csv")
    assert list(out.columns) == ["row", "score", "flag", "top1", "top2", "top3", "label"]
    assert set(out["top1"]) <= set(cols.split(",")) and set(out["flag"]) <= {0, 1}
    # a column set different from fit is refused with the column names
    rc = main(["detect", "score", str(tmp_path / "m"), str(tmp_path / "test.csv"), "--columns", "freq,power",
               "--out", str(tmp_path / "x.csv")])
    assert rc == 2 and "missing" in capsys.readouterr().err


def test_fit_and_score_per_entity(tmp_path, capsys):
    _csvs(tmp_path)
    args = ["--entity", "node", "--columns", "core0_load,core1_load,freq,power,temp,fan,mem"]
    assert main(["detect", "fit", str(tmp_path / "train.csv"), *args, "--out", str(tmp_path / "f"), *FAST]) == 0
    assert (tmp_path / "f" / "fleet.json").is_file()
    assert main(["detect", "score", str(tmp_path / "f"), str(tmp_path / "test.csv"), *args,
                 "--out", str(tmp_path / "s.csv"), "--top", "2"]) == 0
    out = pd.read_csv(tmp_path / "s.csv")
    assert list(out.columns) == ["row", "entity", "score", "flag", "top1", "top2"]
    assert set(out["entity"]) == {"node00", "node01"} and np.isfinite(out["score"]).all()
    rc = main(["detect", "score", str(tmp_path / "f"), str(tmp_path / "test.csv"), "--columns", args[-1],
               "--out", str(tmp_path / "y.csv")])
    assert rc == 2 and "--entity" in capsys.readouterr().err


def test_score_with_moved_threshold(tmp_path, capsys):
    _csvs(tmp_path)
    cols = "freq,power,temp,fan,mem"
    assert main(["detect", "fit", str(tmp_path / "train.csv"), "--columns", cols, "--out", str(tmp_path / "m"), *FAST]) == 0
    base = ["detect", "score", str(tmp_path / "m"), str(tmp_path / "test.csv"), "--columns", cols]
    assert main([*base, "--out", str(tmp_path / "a.csv")]) == 0
    saved = pd.read_csv(tmp_path / "a.csv")
    assert main([*base, "--out", str(tmp_path / "b.csv"), "--threshold", "0"]) == 0
    zero = pd.read_csv(tmp_path / "b.csv")
    np.testing.assert_array_equal(zero["score"], saved["score"])  # raw scores never change
    np.testing.assert_array_equal(zero["flag"], (zero["score"] > 0).astype(int))
    assert main([*base, "--out", str(tmp_path / "c.csv"), "--percentile", "50"]) == 0
    half = pd.read_csv(tmp_path / "c.csv")
    assert saved["flag"].sum() < half["flag"].sum() < len(half)
    assert main([*base, "--out", str(tmp_path / "d.csv"), "--contamination", "0.7"]) == 2
    assert "contamination" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: the three are mutually exclusive
        main([*base, "--out", str(tmp_path / "e.csv"), "--threshold", "1", "--percentile", "5"])
