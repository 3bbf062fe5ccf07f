"""Kill/resume soak (issue 11 campaign, slow): a CLI training run SIGKILLed at 10 random steps and resumed
after each kill ends bit-identical (weights and log) to one uninterrupted run."""

from __future__ import annotations

import random

import pytest
from test_cli_reliability import _csv, assert_same_run, resume_args, run_killed

from isthmus.cli.main import main


@pytest.mark.slow
def test_ten_kills_and_resumes_end_bit_identical(tmp_path):
    data = _csv(tmp_path / "d.csv")
    args = resume_args(data, epochs=10)  # 4 steps per epoch, 40 steps, a checkpoint every 5 and per epoch
    kills = sorted(random.Random(11).sample(range(1, 40), 10))
    run = tmp_path / "run"
    for i, step in enumerate(kills):
        argv = [*args, "--out", str(run)] if i == 0 else ["train", "--out", str(run), "--resume"]
        proc = run_killed(argv, kill_at=step)
        assert proc.returncode == -9, (step, proc.stderr.decode()[-2000:])
    assert main(["train", "--out", str(run), "--resume"]) == 0
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0
    assert_same_run(run, tmp_path / "straight")
