"""`isthmus restore fit|apply` end to end on tiny budgets; help stays torch-free."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from isthmus.cli.main import main

pytest.importorskip("skimage")
ROOT = Path(__file__).resolve().parents[1]
CFG = ("gray: true\nn_train: 64\nn_val: 16\nn_test: 16\npatch: 16\ndegradations: [noise, scratches]\n"
       "restorer:\n  unet: {in_channels: 1, out_channels: 1, channels: [4, 8]}\ntrainer:\n  epochs: 1\n  batch_size: 16\n")


@pytest.mark.slow  # loads every bundled train photo (~10 s)
def test_restore_fit_then_apply(tmp_path, capsys):
    from PIL import Image

    cfg = tmp_path / "restore.yaml"
    cfg.write_text(CFG)
    run = tmp_path / "run"
    assert main(["restore", "fit", str(cfg), "--out", str(run), "--no-progress"]) == 0
    report = json.loads((run / "restore_report.json").read_text())
    assert report["degradations"] == ["noise", "scratches"] and np.isfinite(report["test_psnr_restored"])
    assert main(["restore", "fit", str(cfg), "--out", str(run)]) == 2  # a non-empty run folder is refused
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((21, 34, 3)) * 255).astype(np.uint8)).save(imgs / "a.png")
    Image.fromarray((rng.random((40, 17)) * 255).astype(np.uint8)).save(imgs / "b.jpg")
    (imgs / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["restore", "apply", str(run), str(imgs), "--out", str(out), "--degrade", "--tile", "8"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_after.png", "a_before.png", "b_after.png", "b_before.png"]
    before, after = (np.asarray(Image.open(out / f"a_{k}.png")) for k in ("before", "after"))
    assert before.shape == after.shape == (21, 34)  # a grey restorer works on the grey version
    src = np.asarray(Image.open(imgs / "a.png").convert("L"))
    assert not np.array_equal(before, src)  # --degrade really degraded it


def test_restore_apply_refuses_a_folder_without_restorer(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    assert main(["restore", "apply", str(tmp_path), str(tmp_path / "imgs"), "--out", str(tmp_path / "o")]) != 0
    assert "restore fit" in capsys.readouterr().err


def test_restore_help_does_not_import_torch():
    code = ("import sys\nfrom isthmus.cli.main import main\ntry:\n    main(['restore', 'fit', '--help'])\n"
            "except SystemExit:\n    pass\nprint('HEAVY', [m for m in ('torch', 'sklearn', 'skimage') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert "HEAVY []" in out.stdout, out.stdout[-500:] + out.stderr[-2000:]
