"""`python -m helpers.predict`: score your own reviews with a run's model or an exported one (helpers.serve.score_files; `--help` for the options)."""
from helpers.serve.score_files import main

if __name__ == "__main__":
    main()
