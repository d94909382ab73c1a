"""The run and its parameters: the typed parameters and profiles (config), the run folder (run_folder) and where each
stage leaves its files in it (layout)."""
