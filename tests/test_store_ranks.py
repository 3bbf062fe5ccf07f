"""harvest_to_store under torchrun (gloo, 2 CPU processes): the ranks share the host's batches and write
ONE store (one manifest, shards from both ranks) whose rows are exactly those of a 1-process harvest,
in the documented order (by rank; sorting by (sequence, position) gives the 1-process order)."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from isthmus.interp.store import ActivationStore

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")

# 7 batches of 3 padded sequences (odd, so the ranks get 4 and 3 batches), special tokens dropped,
# and a max_tokens cut in the middle of batch 6; shards of ~21 rows so each rank writes several.
SCRIPT = textwrap.dedent('''
    import os, sys
    import torch
    from isthmus.interp.store import harvest_to_store

    class Host(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.lin = torch.nn.Embedding(30, 6), torch.nn.Linear(6, 6)
        def forward(self, input_ids, attention_mask=None):
            return self.lin(self.emb(input_ids))

    def batches():
        g = torch.Generator().manual_seed(1)
        for _ in range(7):
            ids = torch.randint(0, 30, (3, 9), generator=g)
            lengths = torch.randint(3, 10, (3,), generator=g)
            mask = (torch.arange(9) < lengths.unsqueeze(1)).long()
            special = torch.zeros_like(ids)
            special[:, 0] = 1
            yield {"input_ids": ids, "attention_mask": mask, "special_tokens_mask": special}

    def main(out):
        torch.manual_seed(0)
        harvest_to_store(Host(), batches(), ["emb", "lin"], out, max_tokens=95, shard_mb=0.0005,
                         progress=False, meta={"model": "host"})

    if __name__ == "__main__":
        main(sys.argv[1])
''')

FIELDS = ("activations", "token_ids", "positions", "sequence")


def _rows(path: Path) -> dict[str, torch.Tensor]:
    store = ActivationStore(path)
    return {f: store.read(field=f) for f in FIELDS}


def test_two_ranks_harvest_one_store_with_the_one_process_rows(tmp_path):
    script = tmp_path / "harvest_script.py"
    script.write_text(SCRIPT)
    runpy.run_path(str(script))["main"](str(tmp_path / "one"))
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script),
            str(tmp_path / "two")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    for point in ("emb", "lin"):
        one, two = _rows(tmp_path / "one" / point), _rows(tmp_path / "two" / point)
        assert len(one["sequence"]) == 95  # the max_tokens cut, decided the same way on every rank
        manifest = ActivationStore(tmp_path / "two" / point).manifest
        assert manifest["ranks"] == 2 and manifest["n_rows"] == 95 and manifest["point"] == point
        ranks = [s["rank"] for s in manifest["shards"]]
        assert ranks == sorted(ranks) and set(ranks) == {0, 1}  # rank 0's shards, then rank 1's
        order = sorted(range(95), key=lambda i: (int(two["sequence"][i]), int(two["positions"][i])))
        assert two["sequence"].tolist() != one["sequence"].tolist()  # stored by rank, not interleaved ...
        for f in FIELDS:  # ... and the documented sort gives the 1-process store exactly
            assert torch.equal(two[f][order], one[f]), f
    leftovers = [p.name for p in (tmp_path / "two").iterdir() if p.name.startswith(".")]
    assert leftovers == [], "a rank left its temporary folder behind"


@pytest.mark.slow
def test_torchrun_sae_harvest_cli_writes_one_store_and_reports_once(tmp_path):
    from isthmus.interp.toy import ToyTransformer
    from isthmus.interp.toy.model import ToyConfig

    vocab = list("abcdefgh \n")
    ToyTransformer(ToyConfig(vocab_size=len(vocab), n_ctx=16, n_layers=1, d_model=16, n_heads=2)).save_pretrained(
        tmp_path / "toy", extra={"vocab": vocab})
    text = tmp_path / "text.txt"
    text.write_text("".join(vocab[i % 9] for i in range(2000)))
    common = ["-m", "isthmus", "sae", "harvest", "--model", f"toy:{tmp_path / 'toy'}", "--points",
              "blocks.0.hook_resid_post", "--text", str(text), "--max-tokens", "600", "--batch-size", "4",
              "--max-length", "16", "--device", "cpu", "--no-progress"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, *common, "--out", str(tmp_path / "one")], capture_output=True, text=True,
                         timeout=300, env=env)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          *common, "--out", str(tmp_path / "two")], capture_output=True, text=True, timeout=300, env=env)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr + two.stderr)[-3000:]
    assert two.stdout.count("harvested 600 tokens") == 1  # rank 0 reports the one store
    a, b = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    order = sorted(range(600), key=lambda i: (int(b["sequence"][i]), int(b["positions"][i])))
    assert all(torch.equal(b[f][order], a[f]) for f in FIELDS)
