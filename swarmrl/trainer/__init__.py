"""The model side: policy, generation backends, GRPO math, the learner and checkpoints. Imports torch;
of the other packages only ``node`` imports it (never ``swarm``, ``rewards``, ``tasks`` or ``protocol``).

- ``policy`` / ``tokenizer`` / ``warmstart`` / ``prompts``: the local policy (hub id, local path, or the
  embedded default built and warm-started locally) and how a question becomes its prompt.
- ``generation`` (hf), ``vllm_backend`` (GPU), ``genprocess`` / ``genlaunch`` (a child process sampling from
  shared-memory weights): one ``Generator`` interface.
- ``engine``: ``ModelEngine``, generation (synchronous, overlapped in a thread or a child), optimizer steps
  and checkpoint writes behind one interface for the node.
- ``grpo`` / ``packing`` / ``learner``: the GRPO loss as pure tensor functions, packed forwards, the step.
- ``scorer`` / ``auxmodels``: the model handle that model-based reward modules get, and their helper models.
- ``checkpoint`` / ``trained``: atomic checkpoints, and a trained policy rebuilt outside the node.

Adding a generation backend: implement ``generation.Generator`` (``generate``, ``sync_weights``) and add it
to ``build_generator`` and the ``generation.backend`` config field.
"""
