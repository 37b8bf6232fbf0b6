"""Exceptions the CLI turns into one line and a non-zero exit."""


class BpfwatchError(Exception):
    """Base: str(exc) is what the user sees."""


class NoUsableHook(BpfwatchError):
    """No hook alternative of a tracer works on this kernel."""


class LoadError(BpfwatchError):
    """Compilation, verifier or attach failure; carries the log's first lines."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


class Stop(BaseException):
    """SIGINT/SIGTERM asked us to stop: unwinds like KeyboardInterrupt."""
