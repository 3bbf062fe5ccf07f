"""`isthmus generate fit|sample` end to end on digits (tiny budgets)."""

import json

import numpy as np

from isthmus.cli.main import main


def test_generate_fit_then_sample(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data:\n  source: digits\nmodel:\n  latent_dim: 4\n  hidden: [32]\ntrainer:\n  epochs: 2\n")
    out = tmp_path / "run"
    assert main(["generate", "fit", str(cfg), "--out", str(out), "--prior", "gaussian", "--prior-epochs", "1",
                 "--no-progress"]) == 0
    report = json.loads((out / "generate_report.json").read_text())
    assert report["prior"] == "gaussian" and report["latent_frechet_prior_vs_heldout"] >= 0
    assert main(["generate", "sample", str(out), "-n", "9", "--seed", "3", "-o", str(tmp_path / "g.png"),
                 "--npy", str(tmp_path / "s.npy")]) == 0
    s = np.load(tmp_path / "s.npy")
    assert s.shape[0] == 9 and (tmp_path / "g.png").stat().st_size > 0
    main(["generate", "sample", str(out), "-n", "9", "--seed", "3", "--npy", str(tmp_path / "t.npy")])
    assert np.array_equal(np.load(tmp_path / "t.npy"), s)  # seeded
    assert main(["generate", "fit", str(cfg), "--out", str(out)]) == 2  # a non-empty run folder is refused
