"""The daemon (``swarm-node run``): wires tasks, trainer, rewards and swarm into one node.

- ``node``: ``Node``, the round loop read top to bottom (``_round``) and the lifecycle (start, run, stop).
- ``assembly``: what a node is made of (``Parts``) and how it is built from its config, then resumed.
- ``checkpoints``: what a checkpoint holds, taking and writing one (now or in the background), resuming.
- ``external``: a peer's group prepared once (retokenized, matched to our regenerated task, scored locally).
- ``rollouts``: groups -> reward samples -> train sequences; the external-sample policy (positive / IS weight).
- ``records`` / ``summary``: the typed ``RoundRecord`` every reader shares, and how a round builds it.
- ``journal``: the append-only, CRC-checked, size-capped round journal (and ``rollouts.log``).
- ``metrics`` / ``control`` / ``runinfo``: Prometheus endpoint, the local NodeControl gRPC service (it sees
  a narrow ``ControlView``, not the node), and ``DATA/node.json``.
- ``swarm_link``: the node's ``Swarm`` (always one; training alone is the null transport).
- ``validate``: config checks beyond pydantic (reward names, task sources, trackers).
- ``evaluation`` / ``eval_command`` / ``export`` / ``model_card``: what a user takes home.
- ``progress`` / ``tracking`` / ``logs`` / ``saved_config``: the terminal view, trackers, logging set-up and
  the effective config written on every start.

Tools built on the daemon (experiment harness, report, local swarm) live in ``swarmrl.apps``; nothing here
imports them.
"""
