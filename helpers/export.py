"""`python -m helpers.export`: export a finished run's student (and teacher) to ONNX (helpers.serve.export; `--help` for the options)."""
from helpers.serve.export import main

if __name__ == "__main__":
    raise SystemExit(main())
