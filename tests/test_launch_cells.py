"""Records are keyed on their cell's method: variants of one method type (LSPT's four smoke
variants are all ``type='lspt'``) stay separate cells instead of merging into one cell with
"duplicate seeds"."""
from __future__ import annotations

import json

from replicate.results.aggregate import aggregate
from replicate.results.collect import collect

VARIANTS = ("lspt", "lspt_lstm_only", "lspt_spatial_only", "lspt_lstm_replaces_gate")


def _record(variant: str, seed: int, value: float) -> dict:
    # a record written before records carried the cell's method: method = the method type
    return {"run_id": f"{variant}-{seed}", "status": "done", "smoke": True, "paper": "lspt",
            "stage": "smoke", "seed": seed, "backbone": "micro_mae_test", "method": "lspt",
            "method_type": "lspt", "benchmark": "digits", "task": "digits", "group": "",
            "metrics": {"test_top1": value}, "protocol": "synthetic-smoke",
            "cell": {"table": "smoke", "backbone": "micro_mae_test", "method": variant,
                     "benchmark": "digits", "group": "", "task": "digits", "metric": "top1"}}


def test_variants_of_one_method_type_stay_separate_cells(tmp_path):
    for i, variant in enumerate(VARIANTS):
        for seed in (0, 1):
            d = tmp_path / "lspt" / "smoke" / f"{variant}-{seed}"
            d.mkdir(parents=True)
            (d / "record.json").write_text(json.dumps(_record(variant, seed, 10.0 * i + seed)))
    df = collect(tmp_path, "lspt", stages=("smoke",))
    assert sorted(df["method"].unique()) == sorted(VARIANTS)
    cells = aggregate(df)
    tasks = cells[cells["task"] == "digits"]
    assert sorted(tasks["method"]) == sorted(VARIANTS)
    for i, variant in enumerate(VARIANTS):
        (row,) = tasks[tasks["method"] == variant].to_dict("records")
        assert row["n"] == 2 and row["mean"] == 10.0 * i + 0.5  # its own two seeds only
