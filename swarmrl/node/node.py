"""The swarm-node daemon: the round loop (tasks -> generate -> score -> share -> train), lifecycle.

One round, top to bottom (``_round``): draw J external groups from the pool (each prepared once: retokenized
and scored locally, never the sender's rewards), generate I own groups (plus the shortfall), score them,
publish some, keep those with a learning signal, take one optimizer step on own + external groups, evaluate
now and then, and record the round. Where generation runs (in step, in a thread, in a child process) and who
writes checkpoints is the ``ModelEngine``'s business; what a checkpoint holds is ``Checkpoints``'.

Model work runs in a worker thread (torch releases the GIL) so the asyncio loop stays free for the swarm,
the control service and signals. A stop request (SIGINT/SIGTERM) lets the round in flight finish, writes a
checkpoint and exits cleanly; a second one exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from swarmrl.config import NodeConfig
from swarmrl.errors import NodeError
from swarmrl.node.assembly import Parts, assemble, sampling_params
from swarmrl.node.control import ControlPlane, ControlView, start_control
from swarmrl.node.evaluation import EvalResult, EvalSettings, evaluate_tasks
from swarmrl.node.metrics import MetricsServer, NodeMetrics
from swarmrl.node.records import RoundRecord, rounds_of
from swarmrl.node.rollouts import PROMPT_IDS, sequence_logprob, to_samples, train_sequences
from swarmrl.node.summary import Generated, rollouts_entry, round_record
from swarmrl.node.swarm_link import build_swarm
from swarmrl.protocol.types import PolicyInfo, RolloutGroup
from swarmrl.rewards import Sample
from swarmrl.rewards.pipeline import ScoredGroup
from swarmrl.swarm.service import Swarm
from swarmrl.tasks import Task
from swarmrl.trainer.genlaunch import GenerationWorker
from swarmrl.trainer.learner import StepStats
from swarmrl.trainer.prompts import prompts_ids

log = logging.getLogger(__name__)


class Node(Parts):
    """One node. ``hub`` connects in-process nodes when ``swarm.transport`` is ``memory`` (simulations)."""

    def __init__(self, cfg: NodeConfig, hub: Any = None, gen_worker: GenerationWorker | None = None) -> None:
        self.cfg = cfg
        self.hub = hub
        self._gen_worker = gen_worker
        self.data_dir = Path(cfg.node.data_dir).expanduser()
        self.metrics = NodeMetrics()
        self.round = 0
        self._stop = asyncio.Event()
        self._stops = 0
        self._healthy = False
        self._assembled = False
        self.server: MetricsServer | None = None
        self.control: ControlPlane | None = None
        self.swarm: Swarm  # built once the node is assembled (``start``)
        self._prefetch: dict[int, asyncio.Task[Generated]] = {}
        self._last_external = 0  # external groups trained on last round (predicts the next shortfall)
        self.last_eval: EvalResult | None = None

    def assemble(self) -> None:
        """Build every part from the config and resume from the newest checkpoint (``start`` does this;
        tools and tests may call it to inspect a resumed node without running it)."""
        worker, self._gen_worker = self._gen_worker, None
        assemble(self, worker)
        self.swarm = build_swarm(self.cfg, self.data_dir, self.tasks.resolve, self.metrics, self.hub)
        self._assembled = True

    @property
    def last_checkpoint(self) -> Path | None:
        return self.checkpoints.last if self._assembled else None

    # -- one round's steps (each runs in a worker thread) --------------------------------------------------
    def _own_budget(self, external: int) -> int:
        """Own groups a round trains on: I, plus with ``fill_with_local`` the shortfall of ``external`` below J."""
        s = self.cfg.sampling
        return s.local_groups + (s.external_groups - external if s.fill_with_local else 0)

    def generate(self, round_: int, n: int) -> Generated:
        """``n`` own groups for this round, each with its task and the policy version that sampled it."""
        tasks = self.tasks.sample(n)
        prompts = prompts_ids(self.policy.tokenizer, [t.question for t in tasks])
        t0 = time.perf_counter()
        outs, version = self.engine.generate(prompts, sampling_params(self.cfg))
        seconds = time.perf_counter() - t0
        info = PolicyInfo(self.policy.name, version, self.cfg.node.name)
        for comps in outs:
            for c in comps:  # stated to peers (wire field) for their optional off-policy correction
                c.behaviour_logprob = sequence_logprob(c)
        groups = [
            RolloutGroup(t.ref, t.question, t.answer, comps, info, round=round_, extras={PROMPT_IDS: p})
            for t, comps, p in zip(tasks, outs, prompts, strict=True)
        ]
        return Generated(groups, tasks, seconds, sum(len(c.token_ids) for g in groups for c in g.completions))

    def generate_local(self, round_: int, n: int) -> tuple[list[RolloutGroup], list[Task], float, int]:
        """``generate`` as a tuple (groups, tasks, seconds, tokens), for tools and tests."""
        out = self.generate(round_, n)
        return out.groups, out.tasks, out.seconds, out.tokens

    def score(
        self, groups: list[RolloutGroup], tasks: list[Task | None]
    ) -> tuple[list[list[Sample]], list[ScoredGroup]]:
        """Local rewards (the node's pipeline) for groups against their tasks; sets ``group.rewards``."""
        samples = [to_samples(g, t, self.policy.tokenizer) for g, t in zip(groups, tasks, strict=True)]
        self.inputs.fill(groups, tasks, samples)
        scored = self.pipeline.score(samples)
        for g, s in zip(groups, scored, strict=True):
            g.rewards = list(s.totals)
            if (
                g.origin == "local"
            ):  # sent to peers as advisory: they order rescoring by it, never train on it
                g.advisory_rewards = list(s.totals)
        return samples, scored

    def train(
        self, groups: list[RolloutGroup], samples: list[list[Sample]], scored: list[ScoredGroup]
    ) -> StepStats:
        version = self.learner.version
        for g in groups:
            if g.origin == "local" and g.policy.version < version:
                # Stale: the policy being updated is the behaviour reference when the group enters the batch.
                g.extras["stale"] = True
        seqs = train_sequences(
            self.policy, groups, samples, scored, self.cfg.trainer.advantage, external=self.external_policy
        )
        return self.engine.step(seqs)

    def evaluate(self) -> EvalResult | None:
        """Greedy exact-match accuracy on held-out questions (never sampled for training), through the same
        code path as ``swarm-node eval``; None when there are no held-out questions."""
        evals = self.tasks.eval_set()
        if not evals:
            return None
        g = self.cfg.generation
        settings = EvalSettings(max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p)
        self.last_eval = evaluate_tasks(self.engine.generator, self.policy.tokenizer, evals, settings)
        return self.last_eval

    # -- the round -----------------------------------------------------------------------------------------
    async def _own_groups(self, round_: int, n: int) -> Generated:
        """This round's own groups: generated ahead while the last round trained (overlap), topped up to
        ``n`` if the pool gave fewer than predicted, or generated now."""
        pending = self._prefetch.pop(round_, None)
        if pending is None:
            return await asyncio.to_thread(self.generate, round_, n)
        own = await pending
        if len(own.groups) < n:
            own = own + await asyncio.to_thread(self.generate, round_, n - len(own.groups))
        return own.first(n)

    async def _round(self, round_: int) -> RoundRecord:
        cfg, s = self.cfg, self.cfg.sampling
        started = time.perf_counter()
        external = await asyncio.to_thread(
            self.swarm.sample, s.external_groups, round_, self.external.rescore
        )
        own = await self._own_groups(round_, self._own_budget(len(external)))
        self._last_external = len(external)
        self._launch_prefetch(round_ + 1)
        own_samples, own_scored = await asyncio.to_thread(self.score, own.groups, list(own.tasks))
        if cfg.swarm.publish_groups:
            await self.swarm.publish(own.groups[: cfg.swarm.publish_groups], round_)
        zero_var = [sc.zero_variance for sc in own_scored]
        self.tasks.observe(list(own.tasks), zero_var)  # learning signal per source, for tasks.schedule
        keep = [not (s.filter_local and z) for z in zero_var]
        groups = [g for g, k in zip(own.groups, keep, strict=True) if k]
        samples = [x for x, k in zip(own_samples, keep, strict=True) if k]
        scored = [x for x, k in zip(own_scored, keep, strict=True) if k]
        for g, prep in zip(external, self.external.prepare(external), strict=True):
            groups.append(g)
            samples.append(prep.samples)
            scored.append(prep.scored)
        stats = await asyncio.to_thread(self.train, groups, samples, scored)
        evaluated = None
        if cfg.node.eval_every and round_ % cfg.node.eval_every == 0:
            evaluated = await asyncio.to_thread(self.evaluate)
        rec = round_record(
            round_,
            version=self.learner.version,
            own=own,
            own_scored=own_scored,
            trained=scored,
            external=len(external),
            stats=stats,
            module_names=self.pipeline.module_names,
            started=started,
            eval_result=evaluated,
        )
        self._record(rec, own.groups)
        return rec

    def _launch_prefetch(self, round_: int) -> None:
        """With ``max_staleness`` > 0, generate round ``round_`` while the current round trains: one round
        ahead (a queue of one), so its samples are at most one round stale. It generates I plus, with
        ``fill_with_local``, the shortfall this round's J predicts (the next round corrects a wrong guess)."""
        total = self.cfg.node.rounds
        if self.cfg.trainer.max_staleness == 0 or (total and round_ > total) or self._stop.is_set():
            return
        n = self._own_budget(self._last_external)
        self._prefetch[round_] = asyncio.create_task(asyncio.to_thread(self.generate, round_, n))

    def _record(self, rec: RoundRecord, own: list[RolloutGroup]) -> None:
        self.journal.append(rec.as_dict())
        if self.rollout_log is not None:
            self.rollout_log.append(rollouts_entry(rec.round, own))
        self.metrics.observe_round(rec)
        self.metrics.pool_groups.set(self.swarm.pool_size())
        self.swarm.observe_round(rec.reward_mean, rec.zero_variance_fraction, rec.external_groups)
        self.progress.update(rec)
        if self.tracking is not None:
            self.tracking.round(rec, own)

    # -- lifecycle -----------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stops += 1
        if self._stops == 1:
            log.info("stop requested: finishing the round in flight, then checkpointing (again to force)")
            self._stop.set()
        else:
            log.warning("second stop request: exiting now; the round in flight is lost")
            os._exit(130)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
                loop.add_signal_handler(sig, self.request_stop)

    def _control_view(self) -> ControlView:
        cfg = self.cfg
        return ControlView(
            name=cfg.node.name,
            model=self.policy.name,
            transport=cfg.swarm.transport,
            swarm_id=cfg.swarm.swarm_id,
            data_dir=self.data_dir,
            control_port=cfg.node.control_port,
            swarm=self.swarm,
            round=lambda: self.round,
            policy_version=lambda: self.learner.version,
            recent_rounds=lambda: rounds_of(self.journal.recent),
            metrics_url=lambda: self.server.url if self.server is not None else "",
        )

    async def start(self) -> None:
        """Load everything, resume, and start the metrics endpoint, the swarm and the control service (once:
        ``run`` after ``start`` does not start again)."""
        if self._healthy:
            return
        self._install_signals()
        await asyncio.to_thread(self.assemble)
        cfg = self.cfg
        if cfg.node.metrics_port >= 0:
            try:
                self.server = MetricsServer(
                    self.metrics, cfg.node.metrics_host, cfg.node.metrics_port, self.healthy
                )
            except OSError as exc:
                raise NodeError(
                    f"cannot serve metrics on {cfg.node.metrics_host}:{cfg.node.metrics_port} ({exc.strerror}); "
                    "pass --metrics-port 0 for a free port or -1 to disable"
                ) from exc
            self.server.start()
            log.info("metrics at %s (health at /healthz)", self.server.url)
        self.metrics.round.set(self.round)
        self.metrics.policy_version.set(self.learner.version)
        await self.swarm.start()
        self.control = await start_control(self._control_view())
        self._healthy = True
        self.metrics.up.set(1)

    def healthy(self) -> bool:
        return self._healthy

    def checkpoint(self) -> None:
        """Write a checkpoint of the current round now."""
        self.checkpoints.write_now(self.round)

    async def run(self) -> int:
        """Run rounds until ``node.rounds`` is reached or a stop is requested; returns an exit code."""
        await self.start()
        total, every = self.cfg.node.rounds, self.cfg.node.checkpoint_every
        try:
            while not self._stop.is_set() and (total == 0 or self.round < total):
                rec = await self._round(self.round + 1)
                self.round = rec.round
                if self.round % every == 0:
                    await self.checkpoints.write(self.round)
            if self.round % every != 0:
                await self.checkpoints.write(self.round)
            await self.checkpoints.settle()
        finally:
            await self.close()
        self.progress.finish(self.data_dir, self.last_checkpoint)
        log.info("stopped at round %d, policy version %d", self.round, self.learner.version)
        return 0

    async def close(self) -> None:
        for task in self._prefetch.values():
            with contextlib.suppress(Exception):
                await task  # a generation thread cannot be interrupted; let it finish, drop its result
        self._prefetch.clear()
        if self._assembled:
            with contextlib.suppress(Exception):
                await self.checkpoints.settle()
        self._healthy = False
        self.metrics.up.set(0)
        if self._assembled:
            self.engine.close()
        if self._gen_worker is not None:  # started by the CLI, never used (set-up failed)
            self._gen_worker.stop(timeout=0)
            self._gen_worker = None
        if self.control is not None:
            await self.control.close()
            self.control = None
        if self._assembled:
            await self.swarm.close()
        if self.server is not None:
            self.server.close()
            self.server = None
        if self._assembled:
            self.close_parts()
