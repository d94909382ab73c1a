"""Stage 5 (05_distill): the distillation loss, teacher against student and its CPU copies (model_comparison), views."""
