"""Tools built on the library: nothing in ``swarmrl`` imports this package except ``swarmrl.cli``.

- ``experiment_design`` / ``experiment`` / ``experiment_report``: the SAPO research harness (design: arms,
  regimes, settings; the run; the paired report) (``swarm-node experiment sapo``): N real
  ``Node`` objects on the in-memory hub, paired seeds across sampling arms, and the paired report.
- ``report``: ``swarm-node report`` (curves from a node's journal as PNG/HTML).
- ``localswarm``: ``swarm-node local-swarm`` (N real node processes on loopback, a shared bootstrap).
- ``gossip_node``: a gossip-only process (no torch) with synthetic load and a JSON control loop, for the
  gossip benchmark and large local swarms.
- ``rewards_compare``: ``swarm-node rewards compare`` (re-score a journal's groups under other reward configs).
"""
