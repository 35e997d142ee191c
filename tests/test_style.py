"""One formatter for the whole tree: pyink, configured in pyproject.toml."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_tree_is_pyink_formatted():
  result = subprocess.run(
      [sys.executable, '-m', 'pyink', '--check', '--quiet', '.'],
      cwd=ROOT,
      capture_output=True,
      text=True,
  )
  assert result.returncode == 0, f'run `pyink .` to format:\n{result.stderr}'
