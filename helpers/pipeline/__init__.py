"""The stages as functions (stages), the batch runner, notebook set-up, checks, estimates, report, Colab, sweeps."""
