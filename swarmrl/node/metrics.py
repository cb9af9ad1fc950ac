"""Per-node Prometheus metrics (names are a contract: see docs/design.md section 7) and the HTTP endpoint."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from swarmrl.node.records import RoundRecord

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class NodeMetrics:
    """Every metric of one node, on its own registry (no global state). Implements ``SwarmEvents``."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.round = Gauge("swarmrl_round", "The round the node is in", registry=r)
        self.policy_version = Gauge(
            "swarmrl_policy_version", "Optimizer steps applied to the local policy", registry=r
        )
        self.reward_mean = Gauge(
            "swarmrl_reward_mean", "Last round's mean reward per module and total", ["module"], registry=r
        )
        self.accuracy = Gauge(
            "swarmrl_accuracy", "Last round's exact-match accuracy of own completions", registry=r
        )
        self.eval_accuracy = Gauge(
            "swarmrl_eval_accuracy", "Greedy exact-match accuracy on held-out questions", registry=r
        )
        self.zero_adv_fraction = Gauge(
            "swarmrl_zero_advantage_fraction",
            "Fraction of own groups in the last round whose rewards were all equal",
            registry=r,
        )
        self.rollouts_published = Counter(
            "swarmrl_rollouts_published", "Groups this node published", registry=r
        )
        self.rollouts_received = Counter(
            "swarmrl_rollouts_received", "Groups received from peers and accepted", registry=r
        )
        self.rollouts_rejected = Counter(
            "swarmrl_rollouts_rejected", "Groups or envelopes dropped, by reason", ["reason"], registry=r
        )
        self.train_groups = Counter(
            "swarmrl_train_groups", "Groups trained on, by origin", ["origin"], registry=r
        )
        self.pool_groups = Gauge("swarmrl_pool_groups", "External groups waiting in the pool", registry=r)
        self.peers = Gauge("swarmrl_peers_connected", "Peers currently connected", registry=r)
        self.messages_sent_total = Counter(
            "swarmrl_gossip_messages_sent", "Envelopes written to the network", registry=r
        )
        self.messages_received_total = Counter(
            "swarmrl_gossip_messages_received", "Envelopes that arrived from the network", registry=r
        )
        self.delivery = Histogram(
            "swarmrl_gossip_delivery_seconds",
            "Sender timestamp to acceptance",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.generation_tokens = Counter("swarmrl_generation_tokens", "Tokens generated", registry=r)
        self.generation_seconds = Histogram(
            "swarmrl_generation_seconds",
            "Wall time of one round's generation",
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.train_step = Histogram(
            "swarmrl_train_step_seconds", "Wall time of one optimizer step", buckets=STEP_BUCKETS, registry=r
        )
        self.train_loss = Gauge("swarmrl_train_loss", "Loss of the last optimizer step", registry=r)
        self.train_kl = Gauge("swarmrl_train_kl", "KL to the reference at the last step", registry=r)
        self.train_clip_fraction = Gauge(
            "swarmrl_train_clip_fraction",
            "Fraction of clipped token ratios at the last step",
            ["origin"],
            registry=r,
        )
        self.truncated_fraction = Gauge(
            "swarmrl_truncated_fraction",
            "Share of the last round's own completions that hit max_new_tokens without an end-of-sequence token",
            registry=r,
        )
        self.learning_rate = Gauge(
            "swarmrl_learning_rate",
            "Learning rate of the last optimizer step (trainer.lr_schedule)",
            registry=r,
        )
        self.checkpoint_timestamp = Gauge(
            "swarmrl_checkpoint_timestamp_seconds", "Time of the last durable checkpoint", registry=r
        )
        self.up = Gauge("swarmrl_up", "1 while the node's round loop is alive", registry=r)
        self.resident_memory = Gauge(
            "swarmrl_process_resident_memory_bytes",
            "Resident memory (RSS) of each process of the node: node, generation (the child), read at scrape",
            ["process"],
            registry=r,
        )

    def watch_process(self, name: str, pid: Callable[[], int | None]) -> None:
        """Report the RSS of the process ``pid()`` (looked up at every scrape) as ``process=name``."""
        cache: dict[int, psutil.Process] = {}

        def rss() -> float:
            current = pid()
            if current is None:
                return math.nan
            try:
                proc = cache.get(current)
                if proc is None:
                    cache.clear()
                    proc = cache[current] = psutil.Process(current)
                return float(proc.memory_info().rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                return math.nan

        self.resident_memory.labels(process=name).set_function(rss)

    # -- SwarmEvents -------------------------------------------------------------------------------
    def observe_round(self, rec: RoundRecord) -> None:
        """A finished round's figures onto the gauges, counters and histograms."""
        self.round.set(rec.round)
        self.policy_version.set(rec.policy_version)
        self.reward_mean.labels(module="total").set(rec.reward_mean)
        for name, value in rec.modules.items():
            self.reward_mean.labels(module=name).set(value)
        self.accuracy.set(rec.accuracy)
        self.zero_adv_fraction.set(rec.zero_variance_fraction)
        if rec.eval_accuracy is not None:
            self.eval_accuracy.set(rec.eval_accuracy)
        self.train_groups.labels(origin="local").inc(rec.local_groups)
        self.train_groups.labels(origin="external").inc(rec.external_groups)
        self.generation_tokens.inc(rec.generation_tokens)
        self.generation_seconds.observe(rec.generation_seconds)
        if rec.optimizer_steps:
            self.train_step.observe(rec.train_seconds / rec.optimizer_steps)
            self.learning_rate.set(rec.lr)
        self.train_loss.set(rec.loss)
        self.truncated_fraction.set(rec.truncated_fraction)
        self.train_kl.set(rec.kl)
        for origin, frac in rec.clip_fraction_by_origin.items():
            self.train_clip_fraction.labels(origin=origin).set(frac)
        self.train_clip_fraction.labels(origin="all").set(rec.clip_fraction)

    def published(self, groups: int) -> None:
        self.rollouts_published.inc(groups)

    def accepted(self, groups: int, delay_seconds: float) -> None:
        self.rollouts_received.inc(groups)
        self.delivery.observe(max(0.0, delay_seconds))

    def rejected(self, reason: str, count: int = 1) -> None:
        self.rollouts_rejected.labels(reason=reason).inc(count)

    def peers_connected(self, count: int) -> None:
        self.peers.set(count)

    def messages_sent(self, count: int = 1) -> None:
        self.messages_sent_total.inc(count)

    def messages_received(self, count: int = 1) -> None:
        self.messages_received_total.inc(count)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """Serves ``/metrics`` and ``/healthz`` from a background thread. Port 0 binds a free port."""

    def __init__(self, metrics: NodeMetrics, host: str, port: int, healthy: Callable[[], bool]) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, ctype, code = metrics.exposition(), CONTENT_TYPE_LATEST, 200
                elif path == "/healthz":
                    ok = healthy()
                    body, ctype, code = (b"ok\n" if ok else b"unhealthy\n"), "text/plain", 200 if ok else 503
                else:
                    body, ctype, code = b"not found: try /metrics or /healthz\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)
        self._outer = outer

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"
