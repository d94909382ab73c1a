"""The small core every stage shares: files, progress bars, the labels and P(positive), errors, precision, models."""
