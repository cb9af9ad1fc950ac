"""Policy, generation backends, GRPO math and the train loop. Imports torch; nothing below node imports it."""
