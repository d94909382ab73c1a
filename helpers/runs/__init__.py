"""The run: typed parameters and profiles (config), its folder (run_folder), where each stage leaves files (layout)."""
