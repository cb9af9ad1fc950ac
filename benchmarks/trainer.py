"""Our trainer against TRL's ``GRPOTrainer`` on the same tiny model, prompts, reward and group size (CPU).

One invocation builds the embedded tiny model once (Qwen2 from a config, character tokenizer, supervised warm
start), then runs each side in its own subprocess so peak RSS is clean:

* ``ours``: per step exactly what the node does per round: ``generator.generate`` (8 prompts x 8 completions),
  exact-match rewards through the reward pipeline, GRPO advantages, ``Learner.step``, ``sync_weights``.
* ``trl``: ``GRPOTrainer`` with the same learning rate, Adam betas, clip range, loss aggregation (token mean),
  group size, completion length and no KL; gradient checkpointing off (ours does not use it either).

Both sides see the same question sequence and the same torch thread count, in fp32. Reported per side:
seconds per step (median and p90, the first step excluded as warm-up), generated tokens per second (of
generation time), peak RSS, the mean exact-match reward of the first and last quarter of steps, and greedy
held-out accuracy before/after training (same evaluation code for both). ``speedup`` is our steps/s over
TRL's (ratio of median step times).

Each side runs ``--repeats`` times (alternating sides, seeds ``seed .. seed+R-1``): timing figures are the
median over repeats, outcomes the mean. Usage:
``python benchmarks/trainer.py [--steps N] [--repeats R] [--quick] [--threads T] [--out FILE.json]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROMPTS_PER_STEP = 8
COMPLETIONS = 8
MAX_NEW_TOKENS = 32
LR = 5e-4
CLIP_LOW, CLIP_HIGH = 0.2, 0.28
ADAM_BETAS = (0.9, 0.99)


# -- helpers shared by both sides ---------------------------------------------------------------------------
def _questions(n: int, seed: int, held_out: int) -> list[Any]:
    """The task sequence both sides train on, from the built-in arithmetic ``add`` source."""
    import random

    from swarmrl.config.sections import TasksSection
    from swarmrl.tasks import TaskSampler, build_source

    tasks = TasksSection()
    sources = [build_source(s.source, s.dataset, s.config, tasks.seed, tasks.size) for s in tasks.sources]
    sampler = TaskSampler(sources, [1.0] * len(sources), random.Random(seed), held_out)
    return sampler.sample(n)


def _eval_tasks(count: int) -> list[Any]:
    import random

    from swarmrl.config.sections import TasksSection
    from swarmrl.tasks import TaskSampler, build_source

    tasks = TasksSection()
    sources = [build_source(s.source, s.dataset, s.config, tasks.seed, tasks.size) for s in tasks.sources]
    return TaskSampler(sources, [1.0] * len(sources), random.Random(0), count).eval_set()


def _greedy_accuracy(model: Any, tokenizer: Any, count: int) -> float:
    """Greedy exact-match accuracy on the held-out questions, with our generator (same code for both sides)."""
    import torch

    from swarmrl.rewards.base import extract_answer
    from swarmrl.trainer.generation import HFGenerator, SamplingParams
    from swarmrl.trainer.policy import Policy
    from swarmrl.trainer.prompts import prompt_ids

    policy = Policy(model=model, tokenizer=tokenizer, device=torch.device("cpu"), name="eval")
    evals = _eval_tasks(count)
    outs = HFGenerator(policy).generate(
        [prompt_ids(tokenizer, t.question) for t in evals],
        SamplingParams(n=1, max_new_tokens=MAX_NEW_TOKENS, greedy=True),
    )
    hits = [extract_answer(o[0].text) == t.answer.strip() for t, o in zip(evals, outs, strict=True)]
    return sum(hits) / max(len(hits), 1)


def _summary(step_s: list[float], gen_s: float, gen_tokens: int, rewards: list[float]) -> dict[str, Any]:
    timed = step_s[1:] if len(step_s) > 1 else step_s
    ordered = sorted(timed)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    quarter = max(1, len(rewards) // 4)
    return {
        "steps": len(step_s),
        "s_per_step_median": statistics.median(timed),
        "s_per_step_p90": p90,
        "steps_per_s": 1.0 / statistics.median(timed),
        "gen_tokens_per_s": gen_tokens / gen_s if gen_s > 0 else 0.0,
        "gen_tokens": gen_tokens,
        "gen_fraction": gen_s / max(sum(step_s), 1e-9),
        "reward_first_quarter": statistics.fmean(rewards[:quarter]),
        "reward_last_quarter": statistics.fmean(rewards[-quarter:]),
        "reward_mean": statistics.fmean(rewards),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


# -- the sides (each runs in its own subprocess) ------------------------------------------------------------
def _build(model_dir: Path, seed: int, warmstart_steps: int) -> None:
    import torch

    from swarmrl.config.sections import ModelSection, TasksSection
    from swarmrl.trainer.policy import build_embedded

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    cfg = ModelSection()
    cfg = cfg.model_copy(update={"tiny": cfg.tiny.model_copy(update={"warmstart_steps": warmstart_steps})})
    build_embedded(cfg, TasksSection(), seed, model_dir)


def _run_ours(
    model_dir: Path,
    questions: list[Any],
    steps: int,
    seed: int,
    eval_questions: int,
    overlapped: bool = False,
) -> dict[str, Any]:
    """``overlapped``: the node's default pipeline (``trainer.max_staleness: 1``): step t+1 is generated in
    the generation process while step t trains, the threads split between the two processes."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from swarmrl.config.sections import ModelSection, TasksSection, TrainerSection
    from swarmrl.node.rollouts import PROMPT_IDS, to_samples, train_sequences
    from swarmrl.protocol.types import PolicyInfo, RolloutGroup
    from swarmrl.rewards import build_pipeline
    from swarmrl.trainer.generation import SamplingParams, build_generator
    from swarmrl.trainer.learner import Learner
    from swarmrl.trainer.policy import load_policy
    from swarmrl.trainer.prompts import prompts_ids

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        policy = load_policy(
            ModelSection(name=str(model_dir), device="cpu", dtype="float32"), TasksSection(), Path(tmp), seed
        )
    trainer_cfg = TrainerSection(lr=LR, clip_low=CLIP_LOW, clip_high=CLIP_HIGH, updates_per_round=1)
    learner = Learner(policy, trainer_cfg)
    generator: Any
    if overlapped:
        from swarmrl.trainer.genprocess import ProcessGenerator

        threads = torch.get_num_threads()
        gen_threads = max(1, threads // 2)
        generator = ProcessGenerator(policy, gen_threads, lambda: learner.version)
        generator.wait_ready()  # its start-up (imports, model build) is not a training step
        torch.set_num_threads(max(1, threads - gen_threads))
    else:
        generator = build_generator("hf", policy)
    pipeline = build_pipeline([("exact_match", 1.0, {})], ["exact_match"])
    params = SamplingParams(COMPLETIONS, 1.0, 1.0, MAX_NEW_TOKENS)
    acc_before = _greedy_accuracy(policy.model, policy.tokenizer, eval_questions)
    step_s: list[float] = []
    rewards: list[float] = []
    gen_s, gen_tokens = 0.0, 0

    def generate(step: int) -> tuple[list[Any], list[list[int]], Any, float, int]:
        tasks = questions[step * PROMPTS_PER_STEP : (step + 1) * PROMPTS_PER_STEP]
        t0 = time.perf_counter()
        prompts = prompts_ids(policy.tokenizer, [t.question for t in tasks])
        outs = generator.generate(prompts, params)
        version = generator.last_version if overlapped else learner.version
        return tasks, prompts, outs, time.perf_counter() - t0, version

    pool = ThreadPoolExecutor(1)
    pending = pool.submit(generate, 0) if overlapped else None
    last = time.perf_counter()
    for step in range(steps):
        if pending is not None:
            tasks, prompts, outs, seconds, version = pending.result()
            pending = pool.submit(generate, step + 1) if step + 1 < steps else None
        else:
            tasks, prompts, outs, seconds, version = generate(step)
        gen_s += seconds
        info = PolicyInfo(policy.name, version, "bench")
        # Generated before the last update (overlapped): the learner re-bases it, as the node does.
        stale = {"stale": True} if version < learner.version else {}
        groups = [
            RolloutGroup(
                t.ref, t.question, t.answer, comps, info, round=step + 1, extras={PROMPT_IDS: p, **stale}
            )
            for t, comps, p in zip(tasks, outs, prompts, strict=True)
        ]
        gen_tokens += sum(len(c.token_ids) for g in groups for c in g.completions)
        samples = [to_samples(g, t) for g, t in zip(groups, tasks, strict=True)]
        scored = pipeline.score(samples)
        seqs = train_sequences(policy, groups, samples, scored, trainer_cfg.advantage)
        learner.step(seqs)
        generator.sync_weights()
        rewards.append(statistics.fmean(r for s in scored for r in s.rewards))
        now = time.perf_counter()
        step_s.append(now - last)
        last = now
    pool.shutdown()
    close = getattr(generator, "close", None)
    if callable(close):
        close()
    out = _summary(step_s, gen_s, gen_tokens, rewards)
    out["eval_accuracy_before"] = acc_before
    out["eval_accuracy_after"] = _greedy_accuracy(policy.model, policy.tokenizer, eval_questions)
    return out


def _run_trl(
    model_dir: Path, questions: list[Any], steps: int, seed: int, eval_questions: int
) -> dict[str, Any]:
    import torch
    import transformers
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from swarmrl.rewards.base import extract_answer

    transformers.utils.logging.set_verbosity_error()
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    acc_before = _greedy_accuracy(model, tokenizer, eval_questions)
    # Our prompt is <bos>question (swarmrl.trainer.prompts); TRL tokenizes the text, and <bos> is special.
    data = Dataset.from_list(
        [{"prompt": f"{tokenizer.bos_token}{t.question}", "answer": t.answer} for t in questions]
    )
    rewards: list[float] = []
    gen: dict[str, float] = {"s": 0.0, "tokens": 0.0}

    def exact_match(completions: list[str], answer: list[str], **_: Any) -> list[float]:
        scores = [
            1.0 if extract_answer(c) == a.strip() else 0.0 for c, a in zip(completions, answer, strict=True)
        ]
        rewards.append(statistics.fmean(scores))
        return scores

    plain_generate = model.generate

    def timed_generate(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = plain_generate(*args, **kwargs)
        gen["s"] += time.perf_counter() - t0
        new = out[:, kwargs["input_ids"].shape[1] :]
        is_end = (new == tokenizer.eos_token_id).int()
        first = torch.where(is_end.any(1), is_end.argmax(1) + 1, torch.full_like(is_end[:, 0], new.shape[1]))
        gen["tokens"] += int(first.sum())
        return out

    model.generate = timed_generate  # type: ignore[method-assign]
    stamps: list[float] = []

    class Stamp(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            stamps.append(time.perf_counter())

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        args = GRPOConfig(
            output_dir=tmp,
            use_cpu=True,
            bf16=False,
            per_device_train_batch_size=PROMPTS_PER_STEP * COMPLETIONS,
            num_generations=COMPLETIONS,
            max_completion_length=MAX_NEW_TOKENS,
            learning_rate=LR,
            lr_scheduler_type="constant",
            adam_beta1=ADAM_BETAS[0],
            adam_beta2=ADAM_BETAS[1],
            weight_decay=0.0,
            max_grad_norm=1.0,
            epsilon=CLIP_LOW,
            epsilon_high=CLIP_HIGH,
            beta=0.0,
            loss_type="dapo",
            temperature=1.0,
            top_p=1.0,
            gradient_checkpointing=False,
            max_steps=steps,
            logging_steps=max(steps, 1),
            save_strategy="no",
            report_to=[],
            shuffle_dataset=False,
            disable_tqdm=True,
            seed=seed,
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[exact_match],  # type: ignore[list-item]
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
            callbacks=[Stamp()],
        )
        trainer.train()
    step_s = [b - a for a, b in itertools.pairwise(stamps)]
    model.generate = plain_generate  # type: ignore[method-assign]
    out = _summary(step_s, gen["s"], int(gen["tokens"]), rewards)
    out["eval_accuracy_before"] = acc_before
    out["eval_accuracy_after"] = _greedy_accuracy(trainer.model, tokenizer, eval_questions)
    return out


def _child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if args.side == "build":
        _build(Path(args.model_dir), args.seed, args.warmstart_steps)
        return
    questions = _questions(args.steps * PROMPTS_PER_STEP, args.seed, args.eval_questions)
    model_dir = Path(args.model_dir)
    if args.side == "trl":
        result = _run_trl(model_dir, questions, args.steps, args.seed, args.eval_questions)
    else:
        overlapped = args.side == "ours-overlapped"
        result = _run_ours(model_dir, questions, args.steps, args.seed, args.eval_questions, overlapped)
    result["threads"] = torch.get_num_threads()
    print("RESULT " + json.dumps(result), flush=True)


# -- the driver ------------------------------------------------------------------------------------------------
def _combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One side's repeats: medians of the timing figures, means of the outcomes, the largest RSS."""
    out: dict[str, Any] = {"repeats": len(runs)}
    for key in runs[0]:
        values = [r[key] for r in runs]
        if key == "peak_rss_mb":
            out[key] = max(values)
        elif key.startswith(("reward", "eval")):
            out[key] = statistics.fmean(values)
        elif isinstance(values[0], int | float):
            out[key] = statistics.median(values)
        else:
            out[key] = values[0]
    out["steps_per_s"] = 1.0 / out["s_per_step_median"]
    out["per_repeat_s_per_step"] = [r["s_per_step_median"] for r in runs]
    out["per_repeat_eval_after"] = [r["eval_accuracy_after"] for r in runs]
    return out


def _spawn(side: str, args: argparse.Namespace, model_dir: Path, seed: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--side",
        side,
        "--model-dir",
        str(model_dir),
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
        "--seed",
        str(seed),
        "--warmstart-steps",
        str(args.warmstart_steps),
        "--eval-questions",
        str(args.eval_questions),
    ]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"side '{side}' failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    return {}


def _table(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        "| side | s/step median | s/step p90 | steps/s | gen tokens/s | peak RSS MB | reward first/last quarter "
        "| held-out acc before/after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for side, r in results.items():
        rows.append(
            f"| {side} | {r['s_per_step_median']:.4f} | {r['s_per_step_p90']:.4f} | {r['steps_per_s']:.1f} "
            f"| {r['gen_tokens_per_s']:,.0f} | {r['peak_rss_mb']:.0f} "
            f"| {r['reward_first_quarter']:.3f} / {r['reward_last_quarter']:.3f} "
            f"| {r['eval_accuracy_before']:.3f} / {r['eval_accuracy_after']:.3f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--steps", type=int, default=60, help="training steps per side (8 prompts x 8 each)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 4 steps, short warm start")
    ap.add_argument(
        "--threads",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="threads per side (default: 2 cores, or 1 on a 1-core machine); ours-overlapped splits them "
        "between its trainer and its generation process",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-questions", type=int, default=200, help="held-out questions for greedy accuracy")
    ap.add_argument(
        "--repeats", type=int, default=3, help="runs per side (alternating; seeds seed..seed+R-1)"
    )
    ap.add_argument(
        "--warmstart-steps", type=int, default=60, help="supervised warm start of the shared model"
    )
    ap.add_argument(
        "--sides",
        default="auto",
        help="comma-separated from 'ours', 'ours-overlapped', 'trl', or 'auto' (all that apply: "
        "ours-overlapped with >= 2 threads, trl when importable)",
    )
    ap.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    ap.add_argument("--side", choices=["build", "ours", "ours-overlapped", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.side:
        _child(args)
        return 0
    if args.quick:
        args.steps, args.warmstart_steps, args.repeats = min(args.steps, 4), min(args.warmstart_steps, 10), 1
        args.eval_questions = min(args.eval_questions, 16)
    if args.sides == "auto":
        sides = ["ours"] + (["ours-overlapped"] if args.threads >= 2 else [])
        sides += ["trl"] if importlib.util.find_spec("trl") is not None else []
    else:
        sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        _spawn("build", args, model_dir, args.seed)
        for rep in range(args.repeats):  # alternate the sides so that load drift hits both alike
            for side in sides if rep % 2 == 0 else list(reversed(sides)):
                runs[side].append(_spawn(side, args, model_dir, args.seed + rep))
    results = {side: _combine(r) for side, r in runs.items()}
    report: dict[str, Any] = {
        "config": {
            "prompts_per_step": PROMPTS_PER_STEP,
            "completions": COMPLETIONS,
            "max_new_tokens": MAX_NEW_TOKENS,
            "steps": args.steps,
            "threads": args.threads,
            "repeats": args.repeats,
            "eval_questions": args.eval_questions,
            "lr": LR,
            "warmstart_steps": args.warmstart_steps,
            "dtype": "float32",
        },
        "results": results,
    }
    if "trl" in results:
        trl = results["trl"]["steps_per_s"]
        for side, key in (("ours", "speedup_synchronous"), ("ours-overlapped", "speedup_overlapped")):
            if side in results:
                report[key] = results[side]["steps_per_s"] / trl
        # "speedup": our trainer as the node runs it by default (overlapped when it has 2+ threads).
        best = "ours-overlapped" if "ours-overlapped" in results else "ours"
        if best in results:
            report["speedup"] = results[best]["steps_per_s"] / trl
            report["speedup_side"] = best
    table = _table(results)
    report["table"] = table
    print(table)
    for key in ("speedup_synchronous", "speedup_overlapped"):
        if key in report:
            print(f"{key} (our steps/s over TRL's, same threads): {report[key]:.2f}x")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
