"""Stage 4 (04_evaluate): metrics, calibration, the bag-of-words baseline, the sets every model is scored on
(scored_sets), the demo panel and the figures."""
