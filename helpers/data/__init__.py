"""Stage 1 (01_data): load IMDB (imdb, hub), check it, draw the stratified subset and the validation split; the extra
test sets, the unlabelled reviews for distillation, and the shipped sample (sample, sample_data/)."""
