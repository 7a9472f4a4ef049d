"""One exception type for every problem a user can fix (bad config, missing or mismatched file)."""

_WORKER = " in DataLoader worker process "


class PfsError(Exception):
    """A user-fixable problem; the message names the bad thing and how to fix it.

    A DataLoader re-raises a worker's exception as ``type(exc)(text)``, the text being "Caught PfsError in
    DataLoader worker process 0." and the worker's traceback; a PfsError keeps only the original one-line message,
    so a corrupt image read by a worker fails with the same line as one read in the main process.
    """

    def __init__(self, message: object = "", *args: object) -> None:
        if isinstance(message, str) and message.startswith("Caught ") and _WORKER in message.split("\n", 1)[0]:
            name = message.split(" ", 2)[1]  # the exception's class name
            last = message.rstrip().rsplit("\n", 1)[-1]  # the traceback's last line: "pfs.core.errors.<name>: ..."
            marker = f"{name}: "
            if marker in last:
                message = last.split(marker, 1)[1]
        super().__init__(message, *args)
