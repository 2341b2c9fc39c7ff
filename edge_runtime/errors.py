"""The errors edge-sr reports to the user as one line (`edge-sr: error: ...`, exit status 2)."""


class EdgeSRError(Exception):
    """Base: the message is the whole story for the user; no traceback is shown."""


class BackendError(EdgeSRError):
    """A model file or runtime that cannot be used."""


class SourceError(EdgeSRError):
    """A frame source that cannot be opened or stopped delivering."""


class SinkError(EdgeSRError):
    """An output (video file, window, live page) that cannot be used."""


class CliError(EdgeSRError):
    """A bad combination of command-line options."""
