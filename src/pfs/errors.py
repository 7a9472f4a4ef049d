"""One exception type for every problem a user can fix (bad config, missing or mismatched file)."""


class PfsError(Exception):
    """A user-fixable problem; the message names the bad thing and how to fix it."""
