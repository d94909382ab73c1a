"""The machinery that runs the stages: one function per stage (stages), the batch runner (runner), the notebooks'
set-up (notebook), the checks that open a run (checks), estimates, report, Colab, sweeps."""
