"""The errors the package raises on input it cannot use; each message names the problem and the fix."""


class ConfigError(ValueError):
    """A parameter, profile or run folder that cannot be used; the message says how to fix it."""


class DataError(ValueError):
    """Input data that cannot be used; the message names the file, the row and the fix (helpers.data raises it)."""


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message says why."""


class TrainingDiverged(RuntimeError):
    """A training loss that was lost (not finite, or fp16 steps skipped again and again); the message names the fixes."""
