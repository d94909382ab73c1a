"""`python -m helpers.report`: build a run folder's report.html (helpers.pipeline.report; `--help` for the options)."""
from helpers.pipeline.report import main

if __name__ == "__main__":
    main()
