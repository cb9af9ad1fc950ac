"""The ``swarm-node`` command line. Thin: parse, validate, then lazily import the heavy parts.

Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or usage.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from swarmrl.errors import ConfigError, SwarmRLError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="swarm-node: decentralized swarm RL post-training.",
)
config_app = typer.Typer(no_args_is_help=True, help="Validate configuration files.")
rewards_app = typer.Typer(no_args_is_help=True, help="Inspect and compare reward pipelines.")
app.add_typer(config_app, name="config")
app.add_typer(rewards_app, name="rewards")
experiment_app = typer.Typer(no_args_is_help=True, help="Experiments run through the real node code.")
app.add_typer(experiment_app, name="experiment")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a field: section.field=value (repeatable).")
]


def build_config(
    config: Path | None,
    sets: list[str] | None = None,
    **flags: Any,
) -> Any:
    """defaults <- file <- SWARMRL_* env <- --set <- dedicated flags."""
    from swarmrl.config import load_config, parse_override

    overrides: dict[str, Any] = dict(parse_override(s) for s in sets or [])
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return load_config(config, overrides=overrides)


@app.command()
def run(
    config: ConfigOpt = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Data directory.")] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="'tiny-default', hub id or local path.")
    ] = None,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", help="0 = any free port.")] = None,
    rounds: Annotated[int | None, typer.Option("--rounds", help="Rounds to run (0 = until stopped).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Node seed.")] = None,
    log_format: Annotated[str | None, typer.Option("--log-format", help="text or json.")] = None,
    report_to: Annotated[
        str | None,
        typer.Option("--report-to", help="Experiment tracking: tensorboard, wandb, both (comma) or none."),
    ] = None,
    sets: SetOpt = None,
) -> None:
    """Run the node daemon (the embedded default needs no config at all)."""
    cfg = build_config(
        config,
        sets,
        **{
            "node.data_dir": str(data_dir) if data_dir else None,
            "model.name": model,
            "node.metrics_port": metrics_port,
            "node.rounds": rounds,
            "node.seed": seed,
            "node.log_format": log_format,
            "node.report_to": report_to,
        },
    )
    from swarmrl.node.logs import setup_logging
    from swarmrl.node.validate import check_semantics

    check_semantics(cfg)
    n = cfg.node
    log_file = None
    if n.log_file is not None:
        log_file = n.log_file if n.log_file.is_absolute() else Path(n.data_dir).expanduser() / n.log_file
    mib = 1024 * 1024
    setup_logging(n.log_format, n.log_level, n.name, log_file, int(n.disk.log_max_mb * mib), n.disk.log_keep)
    from swarmrl.trainer.genlaunch import launch_for

    worker = launch_for(cfg)  # a generation child imports torch while this process does
    from swarmrl.node.exitguard import ExitDeadline, exit_now
    from swarmrl.node.node import Node

    deadline = ExitDeadline()

    async def run_node() -> int:
        code = 1
        try:
            code = await Node(cfg, gen_worker=worker).run()
            return code
        finally:
            deadline.arm(code)  # from here on, the process exits within EXIT_GRACE_S whatever is stuck

    exit_now(asyncio.run(run_node()), deadline)


@app.command()
def init(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Data directory to create.")] = Path(
        "./swarm-data"
    ),
    out: Annotated[
        Path | None, typer.Option("--out", help="Config file to write (default DATA_DIR/node.yaml).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing config file.")] = False,
) -> None:
    """Write a commented config file and create the data directory (and the node identity key)."""
    from swarmrl.config import NodeConfig, dump_commented_yaml

    data_dir.mkdir(parents=True, exist_ok=True)
    target = out or data_dir / "node.yaml"
    if target.exists() and not force:
        raise ConfigError("--out", f"'{target}' exists; pass --force to overwrite it")
    cfg = NodeConfig.model_validate({"node": {"data_dir": str(data_dir)}})
    target.write_text(dump_commented_yaml(cfg), encoding="utf-8")
    typer.echo(f"wrote {target}")
    from swarmrl.swarm.identity import Identity

    key_path = data_dir / "identity.key"
    identity = Identity.load_or_create(key_path)
    typer.echo(f"identity {key_path} (peer id {identity.peer_id_text})")


@app.command()
def report(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The node's data directory.")],
    out: Annotated[Path, typer.Option("--out", help="Image to write (.png, .svg or .pdf).")],
    window: Annotated[
        int | None, typer.Option("--window", help="Moving-average window in rounds (default: auto).")
    ] = None,
) -> None:
    """Plot reward, accuracy, local vs external groups and per-module rewards from the journal."""
    from swarmrl.apps.report import write_report

    typer.echo(write_report(data_dir, out, window).line())


def _quiet_transformers() -> None:
    """One-shot commands print their result, not the libraries' progress bars and deprecation notes."""
    import warnings

    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


@app.command()
def export(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The node's data directory.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Model directory to write (Hugging Face format).")
    ] = None,
    checkpoint: Annotated[
        int | None, typer.Option("--checkpoint", help="Round of the checkpoint (default: newest valid).")
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option("--dtype", help="float32, bfloat16 or float16 (default: the checkpoint's dtype)."),
    ] = None,
    push_to_hub: Annotated[
        str | None, typer.Option("--push-to-hub", help="Also upload to this hub model repo (user/name).")
    ] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the hub repo as private.")] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="The node's config (default: DATA_DIR/node-config.yaml)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out directory.")] = False,
) -> None:
    """Write a checkpoint as a Hugging Face model directory (LoRA merged, model card); optionally push it."""
    _quiet_transformers()
    from swarmrl.node.export import export_model

    result = export_model(
        data_dir,
        out,
        checkpoint=checkpoint,
        dtype=dtype,
        push_to_hub=push_to_hub,
        private=private,
        config=config,
        force=force,
    )
    typer.echo(result.line())


@app.command("eval")
def eval_cmd(
    model: Annotated[
        Path | None, typer.Option("--model", help="A saved model directory (e.g. from `export`).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="A node's data directory (its newest checkpoint).")
    ] = None,
    checkpoint: Annotated[
        int | None, typer.Option("--checkpoint", help="With --data-dir: the round of the checkpoint.")
    ] = None,
    tasks: Annotated[
        list[str] | None,
        typer.Option("--tasks", help="SOURCE/DATASET to evaluate (repeatable; default: the trained tasks)."),
    ] = None,
    samples: Annotated[
        int, typer.Option("--samples", help="Sampled completions per question for pass@k (0 = greedy only).")
    ] = 8,
    k: Annotated[
        list[int] | None, typer.Option("--k", help="k of pass@k (repeatable; default 1, 2, 4, .., samples).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the results as JSON here.")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Config with the tasks and generation settings.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampled completions.")] = 0,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: config).")] = None,
) -> None:
    """Greedy pass@1 and sampled pass@k per task source on held-out questions (never trained on)."""
    _quiet_transformers()
    from swarmrl.node.eval_command import EvalRequest, run_eval

    request = EvalRequest(
        model=model,
        data_dir=data_dir,
        checkpoint=checkpoint,
        config=config,
        tasks=tuple(tasks or ()),
        samples=samples,
        ks=tuple(k or ()),
        seed=seed,
        device=device,
    )
    result, header = run_eval(request)
    typer.echo(header)
    typer.echo(result.table())
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(result.to_json(), encoding="utf-8")
        typer.echo(f"wrote {out}")


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="YAML config to validate.")]) -> None:
    """Validate a config file: exit 0 when valid, 2 with the field path and a fix when not."""
    from swarmrl.config import load_config
    from swarmrl.node.validate import check_semantics

    cfg = load_config(file)
    check_semantics(cfg)
    typer.echo(f"{file}: ok")


@rewards_app.command("list")
def rewards_list() -> None:
    """List the registered reward modules (built-ins and plugins)."""
    from swarmrl.rewards.registry import available

    for name in available():
        typer.echo(name)


ControlOpt = Annotated[
    str | None, typer.Option("--control", help="Control address HOST:PORT (instead of --data-dir).")
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory of a running node (reads node.json).")
]


@app.command()
def status(data_dir: DataDirOpt = None, control: ControlOpt = None) -> None:
    """Show a running node's round, policy version, peers and pool (via its control service)."""
    from rich.console import Console

    from swarmrl.node.control import ControlClient, resolve_address, status_table

    reply = ControlClient(resolve_address(data_dir, control)).status()
    Console().print(status_table(reply))


@app.command()
def peers(data_dir: DataDirOpt = None, control: ControlOpt = None) -> None:
    """List a running node's peers: connection, score, accepted groups, bans."""
    from rich.console import Console

    from swarmrl.node.control import ControlClient, peers_table, resolve_address

    reply = ControlClient(resolve_address(data_dir, control)).peers()
    Console().print(peers_table(reply))


@app.command("local-swarm")
def local_swarm(
    nodes: Annotated[int, typer.Option("--nodes", help="Number of node processes.")] = 3,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Parent directory; node i uses DATA_DIR/node-i.")
    ] = Path("./local-swarm"),
    transport: Annotated[str, typer.Option("--transport", help="libp2p or grpc.")] = "libp2p",
    rounds: Annotated[int, typer.Option("--rounds", help="Rounds per node (0 = until Ctrl-C).")] = 0,
    config: ConfigOpt = None,
    sets: SetOpt = None,
) -> None:
    """Start N nodes on loopback (node 0 bootstraps the rest); print each node's metrics URL; Ctrl-C stops all."""
    from swarmrl.apps.localswarm import LocalSwarmSpec, run_local_swarm

    build_config(config, sets)  # fail fast (exit 2) on a bad file or override, before any process starts
    if transport not in ("libp2p", "grpc"):
        raise ConfigError("--transport", f"must be libp2p or grpc, not {transport!r}")
    spec = LocalSwarmSpec(
        nodes=nodes,
        data_dir=data_dir,
        transport="libp2p" if transport == "libp2p" else "grpc",
        rounds=rounds,
        config=config,
        sets=tuple(sets or ()),
    )
    code = run_local_swarm(spec, lambda line: typer.echo(line), lambda line: typer.echo(line, err=True))
    raise typer.Exit(code)


@experiment_app.command("sapo")
def experiment_sapo(
    out: Annotated[Path, typer.Option("--out", help="Directory for the JSON, table and plot.")] = Path(
        "sapo-out"
    ),
    minutes: Annotated[
        float, typer.Option("--minutes", help="Budget: choose the rounds to fit this many minutes.")
    ] = 40.0,
    rounds: Annotated[
        int | None, typer.Option("--rounds", help="Rounds per run (overrides --minutes).")
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds (paired across arms).")] = 5,
    nodes: Annotated[int, typer.Option("--nodes", help="Nodes in the swarm.")] = 4,
    workers: Annotated[
        int, typer.Option("--workers", help="Worker processes (one (regime, seed) each).")
    ] = 2,
    regime: Annotated[
        list[str] | None,
        typer.Option(
            "--regime",
            help="sparse, dense, hard, sparse-homogeneous, hard-homogeneous (repeatable; default sparse, dense, hard).",
        ),
    ] = None,
    transport: Annotated[str, typer.Option("--transport", help="memory or libp2p (loopback).")] = "memory",
    fill: Annotated[
        bool, typer.Option("--fill/--no-fill", help="Refill a short pool with own groups (fixed budget).")
    ] = True,
    smoke: Annotated[bool, typer.Option("--smoke", help="Tiny pipeline check (CI, < 2 minutes).")] = False,
    arm: Annotated[
        list[str] | None,
        typer.Option("--arm", help="Run only these arms (repeatable; 8/0 and default always run)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A node config: its model (any HF path or hub id), tasks, rewards, generation and trainer "
            "are the one regime (does sharing help MY model on MY tasks?).",
        ),
    ] = None,
    hidden_size: Annotated[
        int | None, typer.Option("--hidden-size", help="Embedded policy width (stronger policy: e.g. 256).")
    ] = None,
    layers: Annotated[int | None, typer.Option("--layers", help="Embedded policy layers.")] = None,
    warmstart_steps: Annotated[
        int | None, typer.Option("--warmstart-steps", help="Warm-start steps of every regime.")
    ] = None,
) -> None:
    """SAPO: splits of the per-round budget and ways of using external groups, paired over seeds."""
    from swarmrl.apps.experiment import settings_from_flags

    settings = settings_from_flags(
        out,
        minutes,
        rounds,
        seeds,
        nodes,
        workers,
        regime,
        transport,
        fill,
        smoke,
        arm,
        config,
        hidden_size,
        layers,
        warmstart_steps,
    )
    from swarmrl.apps.experiment import run_experiment

    run_experiment(settings)
    typer.echo(f"wrote {out / 'sapo-results.json'}, {out / 'sapo-table.md'}, {out / 'sapo-reward.png'}")


@rewards_app.command("compare")
def rewards_compare(
    a: Annotated[Path, typer.Argument(help="Pipeline A: a node config or just a rewards: section (YAML).")],
    b: Annotated[Path, typer.Argument(help="Pipeline B, the same way.")],
    journal: Annotated[
        Path,
        typer.Option("--journal", help="Node data directory whose rollouts.log holds recorded rollouts."),
    ],
    last: Annotated[int, typer.Option("--last", help="Only the last N recorded rounds (0 = all).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Score the same recorded groups with two reward pipelines and print their agreement."""
    import json

    from swarmrl.apps.rewards_compare import compare_journal, format_table

    result = compare_journal(a, b, journal, last)
    typer.echo(json.dumps(result.as_dict(), indent=2) if as_json else format_table(result, str(a), str(b)))


@app.command()
def simulate(
    nodes: Annotated[str, typer.Option("--nodes", help="Node counts, comma-separated (e.g. 10,100,1000).")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON results here.")] = None,
    mode: Annotated[
        str, typer.Option("--mode", help="bounded (swarm.ingress_*), all (the old all-to-all), or both.")
    ] = "bounded",
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="A simulation setting: name=value (see swarmrl.apps.simulate.SimSettings)."
        ),
    ] = None,
) -> None:
    """Simulate N gossip-only nodes (real swarm code, in-memory links with latency, loss, bandwidth, churn)."""
    import json

    from swarmrl.apps.simulate import markdown, run_cli

    try:
        counts = [int(x) for x in nodes.split(",") if x.strip()]
    except ValueError:
        raise ConfigError("simulate.nodes", f"{nodes!r} is not a comma-separated list of counts") from None
    if mode not in ("bounded", "all", "both"):
        raise ConfigError("simulate.mode", "must be bounded, all or both")
    overrides: dict[str, Any] = {}
    for item in sets or []:
        key, _, value = item.partition("=")
        try:
            overrides[key.strip()] = json.loads(value)
        except ValueError:
            raise ConfigError(f"simulate.{key.strip()}", f"{value!r} is not a number") from None
    modes = ["bounded", "all"] if mode == "both" else [mode]
    results = run_cli(counts, out, modes=modes, overrides=overrides)
    typer.echo(markdown(results))
    if out is not None:
        typer.echo(f"wrote {out}")


def main() -> None:
    """Console entry point: SwarmRLError becomes one clear line and an exit code, never a traceback."""
    from swarmrl.node.logs import error_line

    try:
        app(standalone_mode=False)
    except ConfigError as exc:
        typer.echo(error_line(str(exc)), err=True)
        sys.exit(2)
    except SwarmRLError as exc:
        typer.echo(error_line(str(exc)), err=True)
        sys.exit(int(getattr(exc, "exit_code", 1)))  # e.g. 2: identity already live in the swarm
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
