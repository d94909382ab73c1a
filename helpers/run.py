"""`python -m helpers.run`: run the five notebooks in order through papermill, into one run folder (helpers.pipeline.runner; `--help` for the options)."""
from helpers.pipeline.runner import main

if __name__ == "__main__":
    main()
