"""Run the reward-pipeline configs in ``deploy/configs/rewards/`` as real nodes and tabulate the outcome.

Each config runs as a ``swarm-node run`` subprocess (CLI, fresh data directory, one torch thread by default)
for ``--rounds`` rounds, one after the other. While it runs, ``/metrics`` is scraped once a few rounds in to
check that every pipeline module is exported as ``swarmrl_reward_mean{module="..."}``. Afterwards the
journal gives, over the last ``--last`` rounds: the mean training reward (``reward_mean``: outcome plus dense
return, in each pipeline's own units, so not comparable across pipelines), the exact-match accuracy of the
sampled completions, and each module's mean.

The literature suite (issue 17, ``--suite literature``; ``all`` runs both) runs every arm of
``_literature_arms.py`` -- each new module, combine mode or task schedule on a task where it is meant to help,
beside the exact-match baseline of that task -- for every seed of ``--seeds`` and reports, as mean ± sd over
seeds: accuracy of the first and last ``--last`` rounds, the zero-advantage fraction of the training reward
(first -> last), the exact-match zero-variance fraction recomputed from ``rollouts.log`` (comparable across
pipelines) and the final greedy evaluation.

The PRIME suite (issue 15, ``--suite prime``) runs PRIME with its online implicit PRM beside the exact-match
baseline (``PRIME_ARMS``) and reports mean reward and accuracy first -> last ``--last`` rounds and every module
metric of the journal that is not constant.

The inputs suite (issue 15, ``--suite inputs``; not part of ``all``) runs the arms of ``_inputs_arms.py``:
modules whose inputs a running node fills in -- VeRPO on the code task (pass matrix from the sandbox), PAR and
LSC on a local reward model that the suite trains first (its scores, and its score of the gold answer as
the reference reward) -- beside exact match on the same task, and reports per arm the mean reward, the
accuracy and every module's mean, first ``--last`` rounds -> last ``--last`` rounds.

Usage: ``python benchmarks/rewards_runs.py [--suite all|configs|literature|prime|inputs] [--seeds 0,1,2] [--jobs 2]
[--rounds 100] [--last 20] [--threads 1] [--out DIR] [--json FILE] [CONFIG ...]``. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "deploy" / "configs" / "rewards"
METRICS_RE = re.compile(r"metrics at (http://[\d.]+:\d+/metrics)")
ROUND_RE = re.compile(r"round (\d+)/")
MODULE_RE = re.compile(r'^swarmrl_reward_mean\{module="([^"]+)"\}', re.M)


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def run_config(
    config: Path, data_dir: Path, rounds: int, threads: int, timeout: float, seed: int | None = None
) -> dict[str, Any]:
    """One node run; returns wall time, exit code, the module labels seen on /metrics and the log path."""
    log_path = data_dir.with_suffix(".log")
    cmd = [
        sys.executable,
        "-m",
        "swarmrl.cli",
        "run",
        "--config",
        str(config),
        "--data-dir",
        str(data_dir),
        "--rounds",
        str(rounds),
        "--metrics-port",
        "0",
        "--set",
        f"node.threads={threads}",
        "--set",
        "node.progress=plain",
        "--set",  # the recorded figures (README) are synchronous runs
        "trainer.max_staleness=0",
    ]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMRL_")}
    env["PYTHONUNBUFFERED"] = "1"
    t0 = time.monotonic()
    labels: list[str] = []
    with open(log_path, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        try:
            while proc.poll() is None and time.monotonic() - t0 < timeout:
                text = log_path.read_text(errors="replace")
                url = METRICS_RE.search(text)
                done = [int(r) for r in ROUND_RE.findall(text)]
                if not labels and url and done and max(done) >= 1:
                    with contextlib.suppress(OSError):
                        labels = sorted(set(MODULE_RE.findall(_scrape(url.group(1)))))
                time.sleep(0.2)
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    return {
        "config": config.stem,
        "seed": seed,
        "rc": proc.returncode,
        "seconds": time.monotonic() - t0,
        "metric_modules": labels,
        "log": str(log_path),
    }


def summarize(data_dir: Path, last: int) -> dict[str, Any]:
    """Means over the last ``last`` journal rounds."""
    from swarmrl.node.journal import read_journal

    records = [r for r in read_journal(data_dir / "journal.log") if r.get("kind", "round") == "round"]
    tail = records[-last:]
    if not tail:
        return {"rounds": 0}
    modules: dict[str, float] = {}
    modules_first: dict[str, float] = {}
    modules_sd: dict[str, float] = {}
    for name in tail[-1].get("modules", {}):
        modules[name] = statistics.fmean(float(r["modules"].get(name, 0.0)) for r in tail)
        modules_first[name] = statistics.fmean(float(r["modules"].get(name, 0.0)) for r in records[:last])
        per_round = [float(r["modules"].get(name, 0.0)) for r in records]
        modules_sd[name] = statistics.pstdev(per_round) if per_round else 0.0
    evals = [r["eval_accuracy"] for r in records if r.get("eval_accuracy") is not None]
    em_zero = _em_zero_variance(data_dir / "rollouts.log", last)
    return {
        "round_seconds": sum(float(r.get("round_seconds") or 0.0) for r in records),
        "zero_adv_first": statistics.fmean(float(r["zero_variance_fraction"]) for r in records[:last]),
        "zero_adv": statistics.fmean(float(r["zero_variance_fraction"]) for r in tail),
        "em_zero_var_first": em_zero[0],
        "em_zero_var": em_zero[1],
        "rounds": len(records),
        "reward_mean": statistics.fmean(float(r["reward_mean"]) for r in tail),
        "reward_first": statistics.fmean(float(r["reward_mean"]) for r in records[:last]),
        "modules_first": modules_first,
        "modules_sd": modules_sd,
        "accuracy": statistics.fmean(float(r["accuracy"]) for r in tail),
        "first_accuracy": statistics.fmean(float(r["accuracy"]) for r in records[:last]),
        "eval_accuracy": evals[-1] if evals else None,
        "modules": modules,
    }


def _em_zero_variance(path: Path, last: int) -> tuple[float | None, float | None]:
    """Share of own groups whose completions all get the same exact-match score (first / last ``last``
    rounds), recomputed from ``rollouts.log``: comparable across pipelines, whatever the training reward."""
    from swarmrl.node.journal import read_journal
    from swarmrl.rewards.base import extract_answer

    if not path.exists():
        return None, None
    per_round = []
    for rec in read_journal(path):
        if rec.get("kind") != "rollouts":
            continue
        flags = []
        for g in rec["groups"]:
            hits = {extract_answer(c) == str(g["answer"]).strip() for c in g["completions"]}
            flags.append(1.0 if len(hits) == 1 else 0.0)
        if flags:
            per_round.append(statistics.fmean(flags))
    if not per_round:
        return None, None
    return statistics.fmean(per_round[:last]), statistics.fmean(per_round[-last:])


def table(rows: list[dict[str, Any]], last: int) -> str:
    head = (
        f"| config | rounds | rc | mean reward (last {last}) | accuracy (last {last}) | accuracy (first {last}) "
        f"| final greedy eval | module means (last {last}) | /metrics modules | seconds |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        s = r.get("summary", {})
        mods = ", ".join(f"{k} {v:.3f}" for k, v in s.get("modules", {}).items())
        ev = s.get("eval_accuracy")
        lines.append(
            f"| {r['config']} | {s.get('rounds', 0)} | {r['rc']} | {s.get('reward_mean', float('nan')):.3f} "
            f"| {s.get('accuracy', float('nan')):.3f} | {s.get('first_accuracy', float('nan')):.3f} "
            f"| {'-' if ev is None else f'{ev:.3f}'} | {mods} | {', '.join(r['metric_modules'])} "
            f"| {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def literature_runs(
    out: Path,
    rounds: int,
    last: int,
    threads: int,
    timeout: float,
    seeds: list[int],
    jobs: int,
    arms: list[str] | None = None,
    catalogue: Any = None,
    rewrite: Any = None,
) -> list[dict[str, Any]]:
    """Every arm of ``catalogue.ARMS`` (default ``_literature_arms``) for every seed (``jobs`` node processes
    at a time); ``rewrite`` (optional) maps each arm's config before it is written."""
    from concurrent.futures import ThreadPoolExecutor

    import yaml

    if catalogue is None:
        import _literature_arms as catalogue

    todo = []
    for item, task, label, extra in catalogue.ARMS:
        if arms and not any(a in f"{item} {task} {label}" for a in arms):
            continue
        cfg = _merge(_merge(catalogue.BASE, catalogue.TASKS[task]), extra)
        if rewrite is not None:
            cfg = rewrite(cfg)
        cfg["node"]["name"] = _slug(label)[:30]
        arm_dir = out / _slug(f"{item} {task} {label}")
        arm_dir.mkdir(parents=True, exist_ok=True)
        path = arm_dir / "config.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        todo += [(item, task, label, path, arm_dir / f"seed-{seed}", seed) for seed in seeds]

    todo.sort(key=lambda job: seeds.index(job[5]))  # every arm of a seed before the next seed

    cache = out / "_models"

    def one(job: tuple[str, str, str, Path, Path, int]) -> dict[str, Any]:
        item, task, label, path, data_dir, seed = job
        print(f"running {item} / {task} / {label} seed {seed} ...", file=sys.stderr, flush=True)
        _share_models(cache, data_dir / "models", into_run=True)
        row = run_config(path, data_dir, rounds, threads, timeout, seed)
        _share_models(cache, data_dir / "models", into_run=False)
        row.update(item=item, task=task, label=label, summary=summarize(data_dir, last))
        return row

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, todo))


def _share_models(cache: Path, models: Path, into_run: bool) -> None:
    """Reuse warm-started embedded models between runs of the same (model config, tasks, seed): the cache
    directory name is the node's own fingerprint of those, so a run only finds the model it would build."""
    src, dst = (cache, models) if into_run else (models, cache)
    if not src.is_dir():
        return
    dst.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        if (entry / "config.json").is_file() and not (dst / entry.name).exists():
            tmp = dst / f".tmp-{entry.name}-{os.getpid()}-{time.monotonic_ns()}"
            shutil.copytree(entry, tmp)
            with contextlib.suppress(OSError):
                os.replace(tmp, dst / entry.name)
            shutil.rmtree(tmp, ignore_errors=True)


def _ms(values: list[float | None]) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "-"
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.fmean(v):.3f} ± {sd:.3f}"


def _by_arm(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """The runs of each arm (item, task, pipeline label) across seeds, in first-seen order."""
    arms: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        arms.setdefault((r["item"], r["task"], r["label"]), []).append(r)
    return arms


def literature_table(rows: list[dict[str, Any]], last: int) -> str:
    """One line per arm: means ± sd over seeds."""
    arms = _by_arm(rows)
    head = (
        f"| item | task | pipeline | seeds | rc | accuracy first {last} | accuracy last {last} "
        f"| zero-adv fraction first {last} -> last {last} | exact-match zero-variance last {last} "
        f"| final greedy eval | round s/run |"
    )
    lines = [head, "|" + "---|" * 11]
    for (item, task, label), rs in arms.items():
        s = [r.get("summary", {}) for r in rs]
        lines.append(
            f"| {item} | {task} | {label} | {len(rs)} | {max(r['rc'] or 0 for r in rs)} "
            f"| {_ms([x.get('first_accuracy') for x in s])} | {_ms([x.get('accuracy') for x in s])} "
            f"| {_ms([x.get('zero_adv_first') for x in s])} -> {_ms([x.get('zero_adv') for x in s])} "
            f"| {_ms([x.get('em_zero_var') for x in s])} | {_ms([x.get('eval_accuracy') for x in s])} "
            f"| {statistics.fmean(float(x.get('round_seconds') or 0.0) for x in s):.0f} |"
        )
    return "\n".join(lines)


#: PRIME with its online implicit PRM (issue 15) beside the exact-match baseline on the same task and seeds.
#: PRM learning rate twice the policy's (3e-4), the paper's ratio (1e-6 vs 5e-7).
PRIME_ARMS: list[tuple[str, dict[str, Any]]] = [
    ("exact_match (baseline)", {"rewards": {"modules": [{"name": "exact_match", "weight": 1.0}]}}),
    (
        "prime (paper defaults: batch_norm, accuracy filter, RLOO)",
        {"rewards": {"modules": [{"name": "prime", "weight": 1.0, "params": {"lr": 6e-4}}]}},
    ),
    (
        "prime, norm none",
        {"rewards": {"modules": [{"name": "prime", "weight": 1.0, "params": {"lr": 6e-4, "norm": "none"}}]}},
    ),
    (
        "prime, outcome term only (dpo_coef 0; PRM still trained)",
        {"rewards": {"modules": [{"name": "prime", "weight": 1.0, "params": {"lr": 6e-4, "dpo_coef": 0}}]}},
    ),
]


def _module_trend(data_dir: Path, last: int) -> dict[str, tuple[float, float, float]]:
    """Per journal module: mean of the first ``last`` rounds, of the last ``last`` rounds, and the sd over
    all rounds (a module whose sd is 0 is constant and left out of the report)."""
    from swarmrl.node.journal import read_journal

    records = [r for r in read_journal(data_dir / "journal.log") if r.get("kind", "round") == "round"]
    out: dict[str, tuple[float, float, float]] = {}
    for name in records[-1].get("modules", {}) if records else {}:
        vals = [float(r["modules"][name]) for r in records if r.get("modules", {}).get(name) is not None]
        if len(vals) > 1 and statistics.pstdev(vals) > 1e-12:
            out[name] = (
                statistics.fmean(vals[:last]),
                statistics.fmean(vals[-last:]),
                statistics.pstdev(vals),
            )
    return out


def prime_runs(
    out: Path, rounds: int, last: int, threads: int, timeout: float, seeds: list[int]
) -> list[dict[str, Any]]:
    """``PRIME_ARMS`` on the ``add`` task for every seed, one CLI node after the other."""
    import yaml
    from _literature_arms import BASE, TASKS

    rows = []
    cache = out / "_models"
    for label, extra in PRIME_ARMS:
        cfg = _merge(_merge(BASE, TASKS["add"]), extra)
        cfg["rewards"]["report"] = ["exact_match"]
        arm = out / _slug(label)
        arm.mkdir(parents=True, exist_ok=True)
        path = arm / "config.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        for seed in seeds:
            print(f"running prime suite / {label} seed {seed} ...", file=sys.stderr, flush=True)
            data_dir = arm / f"seed-{seed}"
            _share_models(cache, data_dir / "models", into_run=True)
            row = run_config(path, data_dir, rounds, threads, timeout, seed)
            _share_models(cache, data_dir / "models", into_run=False)
            summary = summarize(data_dir, last)
            summary["reward_first"] = _first_reward(data_dir, last)
            row.update(label=label, summary=summary, trend=_module_trend(data_dir, last))
            rows.append(row)
    return rows


def _first_reward(data_dir: Path, last: int) -> float | None:
    from swarmrl.node.journal import read_journal

    records = [r for r in read_journal(data_dir / "journal.log") if r.get("kind", "round") == "round"]
    return statistics.fmean(float(r["reward_mean"]) for r in records[:last]) if records else None


def prime_table(rows: list[dict[str, Any]], last: int) -> str:
    head = (
        f"| pipeline | seed | rc | mean reward first {last} -> last {last} | accuracy first {last} -> last {last} "
        f"| final greedy eval | non-constant module metrics, first {last} -> last {last} (sd over rounds) | s |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        s = r.get("summary", {})
        ev = s.get("eval_accuracy")
        first = s.get("reward_first")
        mods = ", ".join(f"{k} {a:.3f} -> {b:.3f} ({sd:.3f})" for k, (a, b, sd) in r.get("trend", {}).items())
        lines.append(
            f"| {r['label']} | {r['seed']} | {r['rc']} "
            f"| {float('nan') if first is None else first:.3f} -> {s.get('reward_mean', float('nan')):.3f} "
            f"| {s.get('first_accuracy', float('nan')):.3f} -> {s.get('accuracy', float('nan')):.3f} "
            f"| {'-' if ev is None else f'{ev:.3f}'} | {mods or '-'} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def inputs_runs(
    out: Path,
    rounds: int,
    last: int,
    threads: int,
    timeout: float,
    seeds: list[int],
    jobs: int,
    arms: list[str],
) -> list[dict[str, Any]]:
    """The arms of ``_inputs_arms.py``, after training the reward model they use (kept in ``out/_rm``)."""
    import _inputs_arms
    import torch

    torch.set_num_threads(max(1, threads))
    print("training the reward model of the inputs suite ...", file=sys.stderr, flush=True)
    rm = _inputs_arms.fit_rm(out / "_rm")
    print(
        f"reward model {rm}: rank accuracy {_inputs_arms.rm_rank_accuracy(rm):.3f}",
        file=sys.stderr,
        flush=True,
    )
    return literature_runs(
        out,
        rounds,
        last,
        threads,
        timeout,
        seeds,
        jobs,
        arms,
        _inputs_arms,
        lambda c: _inputs_arms.resolve(c, rm),
    )


def inputs_table(rows: list[dict[str, Any]], last: int) -> str:
    """One line per arm (means ± sd over seeds): reward, accuracy and each module, first -> last rounds."""
    arms = _by_arm(rows)
    head = (
        f"| item | task | pipeline | seeds | rc | mean reward first {last} -> last {last} "
        f"| accuracy first {last} -> last {last} | module means first {last} -> last {last} (sd over rounds) "
        f"| final greedy eval |"
    )
    lines = [head, "|" + "---|" * 9]
    for (item, task, label), rs in arms.items():
        s = [r.get("summary", {}) for r in rs]
        names = list(s[0].get("modules", {})) if s else []
        mods = "; ".join(
            f"{n} {_ms([x.get('modules_first', {}).get(n) for x in s])} -> "
            f"{_ms([x.get('modules', {}).get(n) for x in s])} "
            f"({statistics.fmean(float(x.get('modules_sd', {}).get(n) or 0.0) for x in s):.3f})"
            for n in names
        )
        lines.append(
            f"| {item} | {task} | {label} | {len(rs)} | {max(r['rc'] or 0 for r in rs)} "
            f"| {_ms([x.get('reward_first') for x in s])} -> {_ms([x.get('reward_mean') for x in s])} "
            f"| {_ms([x.get('first_accuracy') for x in s])} -> {_ms([x.get('accuracy') for x in s])} "
            f"| {mods} | {_ms([x.get('eval_accuracy') for x in s])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("configs", nargs="*", type=Path, help="configs (default: deploy/configs/rewards/*.yaml)")
    ap.add_argument("--suite", choices=("all", "configs", "literature", "prime", "inputs"), default="all")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the literature suite (comma-separated)")
    ap.add_argument("--jobs", type=int, default=1, help="literature-suite node processes at a time")
    ap.add_argument(
        "--arms",
        default="",
        help="only literature arms whose 'item task label' contains one of these (comma-separated)",
    )
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--last", type=int, default=20, help="rounds averaged at the end")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per node")
    ap.add_argument("--out", type=Path, default=None, help="directory for data dirs and logs (default: temp)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per run before it is stopped")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.last < 1:
        ap.error("--rounds and --last must be >= 1")
    out = args.out or Path(tempfile.mkdtemp(prefix="swarmrl-rewards-"))
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    if args.suite in ("all", "configs") or args.configs:
        configs = args.configs or sorted(CONFIGS.glob("*.yaml"))
        for config in configs:
            data_dir = out / config.stem
            print(
                f"running {config.name} for {args.rounds} rounds in {data_dir} ...",
                file=sys.stderr,
                flush=True,
            )
            row = run_config(config, data_dir, args.rounds, args.threads, args.timeout)
            row["summary"] = summarize(data_dir, args.last)
            rows.append(row)
        print(table(rows, args.last))
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    lit: list[dict[str, Any]] = []
    if args.suite in ("all", "literature") and not args.configs:
        lit = literature_runs(
            out / "literature",
            args.rounds,
            args.last,
            args.threads,
            args.timeout,
            seeds,
            args.jobs,
            arms,
        )
        print()
        print(literature_table(lit, args.last))
    prime: list[dict[str, Any]] = []
    if args.suite in ("all", "prime") and not args.configs:
        prime = prime_runs(out / "prime", args.rounds, args.last, args.threads, args.timeout, seeds)
        print()
        print(prime_table(prime, args.last))
    inp: list[dict[str, Any]] = []
    if args.suite == "inputs":
        inp = inputs_runs(
            out / "inputs",
            args.rounds,
            args.last,
            args.threads,
            args.timeout,
            seeds,
            args.jobs,
            arms,
        )
        print()
        print(inputs_table(inp, args.last))
    if args.json:
        doc = {"configs": rows, "literature": lit, "prime": prime, "inputs": inp}
        args.json.write_text(json.dumps(doc, indent=2))
    return 0 if all(r["rc"] == 0 for r in rows + lit + prime + inp) else 1


if __name__ == "__main__":
    sys.exit(main())
