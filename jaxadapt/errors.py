"""Errors the user can fix.

Every error whose message tells the user what to change (a config key, a file, a rule, a
workdir) derives from `UserError`: the CLI prints its first line and exits with status 2. Any
other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
  """An error the user can fix; the CLI prints its first line and exits 2."""


class DataError(UserError):
  """A dataset that is missing, corrupt, or does not fit the config."""
