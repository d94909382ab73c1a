"""Stage 4 (04_evaluate): metrics, calibration, the baseline, the sets every model is scored on, the demo, the plots."""
