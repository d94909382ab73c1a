"""Stage 3 (03_train): batching, optimization, the loop (trainer), checkpoints, the one prediction path, 03's views."""
