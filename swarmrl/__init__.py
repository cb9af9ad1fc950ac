"""swarmrl: decentralized swarm RL post-training for language models (SAPO)."""

__version__ = "0.1.0"
