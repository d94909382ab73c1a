"""Stage 3 (03_train): batches (batching), the optimizer's groups and epochs (optimization), the training loop for
teacher and student (trainer), its checkpoints (checkpoints, checkpoint_files), the one prediction path (prediction);
03's views (training_views)."""
