class UserError(Exception):
  """An error the user can fix; the CLI prints its first line and exits 2."""
