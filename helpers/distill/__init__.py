"""Stage 5 (05_distill): the distillation loss (distillation), teacher against student and the student's CPU
copies (model_comparison), 05's views (distill_views)."""
