"""Stage 1 (01_data): load and split IMDB (imdb, hub), extra test sets, unlabelled reviews, the shipped sample."""
