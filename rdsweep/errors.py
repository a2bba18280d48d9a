"""Errors a user can cause. The CLI turns any UserError into one line on stderr and exit status 2."""


class UserError(Exception):
    """A mistake in what the user asked for: bad spec, unknown name, bad value, missing or malformed file."""


class DataError(UserError):
    """A dataset that cannot be found or read: missing directory or file, wrong width, non-binary values."""


class SpecError(UserError):
    """A sweep spec or option that does not describe a valid grid."""


def one_line(text, limit: int = 200) -> str:
    """A message (an exception's, a plugin's) as one line of at most `limit` characters: what a user sees after
    `rdsweep: error:`."""
    return " ".join(str(text).split())[:limit]
