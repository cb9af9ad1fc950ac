"""The daemon: wires tasks, trainer, rewards and swarm; lifecycle, metrics, journal, checkpoints."""
