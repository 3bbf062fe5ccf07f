"""One-time job: the tabular benchmark of the deep-architect recipe (card §41).

Trains every config of ``isthmus.recipes.deep_architect.SPACE`` (1,080) with 2 seeds on the fixed
digits split and writes ``benchmarks/deep_architect_table.json``: per path, the best-checkpoint val
accuracy and the test accuracy at that checkpoint for each seed, plus the generator config and the
space hash the recipe checks. All configs sharing a width pattern (24 patterns) train side by side (``StackedMLP``). Resumable: the file is rewritten after every width pattern.

    PYTHONPATH=src nice python benchmarks/deep_architect_table.py      # ≈ 5 cpu-min, one thread
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict

import torch

from isthmus.recipes.deep_architect import SPACE, TABLE, TRAIN, space_hash, train_configs
from isthmus.search import enumerate_paths, key, resolve


def _write(table: dict) -> None:
    tmp = TABLE.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, separators=(",", ":")))
    os.replace(tmp, TABLE)


def main() -> None:
    torch.set_num_threads(1)
    groups: dict[str, list] = defaultdict(list)
    for p in enumerate_paths(SPACE):
        arch = resolve(SPACE, p)
        groups[key([blk[0]["width"] for blk in arch["body"]])].append((p, arch))  # one training per width pattern
    table = {"config": {**TRAIN, "space_hash": space_hash(), "n_configs": sum(map(len, groups.values()))},
             "entries": {}}
    if TABLE.exists():
        old = json.loads(TABLE.read_text())
        if old.get("config") == json.loads(json.dumps(table["config"])):  # tuples come back as lists
            table = old
    t0 = time.process_time()
    for gi, members in enumerate(groups.values()):
        if all(",".join(map(str, p)) in table["entries"] for p, _ in members):
            continue
        lrs = [a["optimizer"]["lr"] for _, a in members for _ in TRAIN["seeds"]]
        seeds = [s for _ in members for s in TRAIN["seeds"]]
        val, test = train_configs([a["body"] for _, a in members for _ in TRAIN["seeds"]], lrs, seeds)
        ns = len(TRAIN["seeds"])
        for j, (p, _) in enumerate(members):
            table["entries"][",".join(map(str, p))] = {
                "val": [round(float(v), 5) for v in val[j * ns:(j + 1) * ns]],
                "test": [round(float(v), 5) for v in test[j * ns:(j + 1) * ns]]}
        if True:
            _write(table)
            print(f"{gi + 1}/{len(groups)} width patterns, {time.process_time() - t0:.0f} cpu-s", file=sys.stderr)
    table["cpu_s_last_run"] = round(time.process_time() - t0, 1)
    _write(table)
    print(f"wrote {TABLE} ({len(table['entries'])} configs)")


if __name__ == "__main__":
    main()
