"""Smoke run of ``benchmarks/trainer.py --quick``: our side always, TRL's side when trl is importable."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_trainer_quick(tmp_path: Path) -> None:
    has_trl = importlib.util.find_spec("trl") is not None
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "trainer.py"), "--quick", "--out", str(out)]
    cmd += ["--threads", "2", "--sides", "ours,ours-overlapped,trl" if has_trl else "ours,ours-overlapped"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    sides = ["ours", "ours-overlapped", "trl"] if has_trl else ["ours", "ours-overlapped"]
    assert sorted(report["results"]) == sorted(sides)
    for side in sides:
        r = report["results"][side]
        assert (
            r["steps"] == 4 and r["s_per_step_median"] > 0 and r["s_per_step_p90"] >= r["s_per_step_median"]
        )
        assert r["gen_tokens"] > 0 and r["gen_tokens_per_s"] > 0
        assert 100 < r["peak_rss_mb"] < 8000
        assert 0.0 <= r["reward_mean"] <= 1.0 and 0.0 <= r["eval_accuracy_after"] <= 1.0
    assert ("speedup" in report) == has_trl
    if has_trl:
        assert report["speedup"] > 0 and report["speedup_side"] == "ours-overlapped"
        assert report["speedup"] == report["speedup_overlapped"] and report["speedup_synchronous"] > 0
    assert "| ours |" in report["table"] and "| ours |" in proc.stdout
