"""The small core every stage shares: crash-safe files, progress bars, the two labels and P(positive), errors,
precision and int8, the Accelerator, and the model loader."""
