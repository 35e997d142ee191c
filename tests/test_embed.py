"""README blocks copied from committed reports: the copy, its links, its errors, and the real
README kept equal to the committed results."""

import pathlib

import pytest

from jaxadapt.bench.reports import embed
from jaxadapt.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parents[1]
REPORT = """# Adaptation benchmark

## Which approach should I use?

Verdict text.

### Task: related

| a | b |
![verdict](verdict.png) and [table](docs.md#x) and [web](https://x.org/a.png)

## Method tables

Other.

## Task: related

The method table.
"""


def _readme(tmp_path, src: str) -> pathlib.Path:
  (tmp_path / 'res').mkdir()
  (tmp_path / 'res/report.md').write_text(REPORT)
  readme = tmp_path / 'README.md'
  readme.write_text(f'Intro.\n<!-- embed {src} -->\nold table\n<!-- /embed -->\nOutro.\n')
  return readme


def test_a_block_becomes_its_section_with_links_resolved_from_the_readme(tmp_path):
  """Bugs caught: the section cut at a deeper heading (### inside ##) or run into the next ##,
  its headings left at the report's level;
  image paths left relative to the report (broken in the README); absolute URLs rewritten."""
  readme = _readme(tmp_path, 'res/report.md#Which approach should I use?')
  assert embed.main([str(readme)]) == 0
  text = readme.read_text()
  assert text == (
      'Intro.\n<!-- embed res/report.md#Which approach should I use? -->\n'
      'Verdict text.\n\n#### Task: related\n\n| a | b |\n'
      '![verdict](res/verdict.png) and [table](res/docs.md#x) and [web](https://x.org/a.png)\n'
      '<!-- /embed -->\nOutro.\n'
  )
  assert embed.main([str(readme), '--check']) == 0  # idempotent: a second sync changes nothing


def test_a_title_repeated_at_two_levels_embeds_the_shallowest(tmp_path):
  """Bug caught: "Task: related" embedding the verdict's ### subsection (the first match)
  instead of the report's ## method table."""
  readme = _readme(tmp_path, 'res/report.md#Task: related')
  assert embed.main([str(readme)]) == 0
  assert 'The method table.' in readme.read_text() and '| a | b |' not in readme.read_text()


def test_check_reports_a_stale_block_without_writing(tmp_path, capsys):
  """Bug caught: a README table edited by hand (or results re-run) passing unnoticed."""
  readme = _readme(tmp_path, 'res/report.md#Method tables')
  before = readme.read_text()
  assert embed.main([str(readme), '--check']) == 1
  assert readme.read_text() == before
  assert 'stale' in capsys.readouterr().err


@pytest.mark.parametrize(
    'src, message',
    [
        ('res/report.md#No such heading', "no heading 'No such heading'; the file has: Adaptation"),
        ('res/missing.md', 'embed: res/missing.md does not exist'),
    ],
)
def test_bad_blocks_are_one_line_errors_and_write_nothing(tmp_path, capsys, src, message):
  readme = _readme(tmp_path, src)
  before = readme.read_text()
  assert embed.main([str(readme)]) == 2
  err = capsys.readouterr().err
  assert message in err and err.count('\n') == 1
  assert readme.read_text() == before


def test_an_unclosed_block_is_refused():
  with pytest.raises(UserError, match='has no <!-- /embed -->'):
    embed.sync('<!-- embed a.md -->\ntext\n', ROOT)


def test_readme_tables_equal_the_committed_reports():
  """Bug caught: README numbers that no committed results file produces. Fix with
  `python -m jaxadapt.bench.reports.embed README.md`."""
  text = (ROOT / 'README.md').read_text()
  assert '<!-- embed ' in text
  assert embed.sync(text, ROOT) == text
