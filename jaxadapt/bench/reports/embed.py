r"""Copies sections of committed benchmark reports into a markdown file (the README).

  python -m jaxadapt.bench.reports.embed README.md           # rewrite the embedded blocks
  python -m jaxadapt.bench.reports.embed README.md --check   # exit 1 if any block is stale

A block is the text between

  <!-- embed docs/fashion_mnist_full/report.md#Which approach should I use? -->
  <!-- /embed -->

and becomes that report's section: the lines after the heading whose text is the part after
`#` (the shallowest such heading, then the first), up to the next heading of the same or a
higher level (no `#`: the whole file). Its headings go one level deeper (they sit under a
README heading), and relative links and images are rewritten to resolve from the markdown
file. So every README table is regenerated from the committed results by `jaxadapt report
DIR` and this command, never edited by hand, and a test keeps the README equal to the
committed reports.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

from jaxadapt import errors

BLOCK = re.compile(
    r'(<!-- embed (?P<src>[^#>]+?)(?:#(?P<section>[^>]*?))? -->\n)(?P<body>.*?)(<!-- /embed -->)',
    re.S,
)
LINK = re.compile(r'(\]\()(?![a-z]+:|/|#)([^)\s]+)(\))')
HEADING = re.compile(r'^(#+) (.*)$')


def section(markdown: str, title: str) -> str:
  """The lines under the heading `title` up to the next heading of its level or higher."""
  lines = markdown.splitlines()
  # The shallowest heading with that text: a report repeats "Task: x" under its verdict.
  found = [
      (len(m.group(1)), i)
      for i, line in enumerate(lines)
      if (m := HEADING.match(line)) and m.group(2).strip() == title
  ]
  if not found:
    headings = [m.group(2) for line in lines if (m := HEADING.match(line))]
    raise errors.UserError(f'no heading {title!r}; the file has: {", ".join(headings)}')
  level, i = min(found)
  end = next(
      (
          j
          for j in range(i + 1, len(lines))
          if (h := HEADING.match(lines[j])) and len(h.group(1)) <= level
      ),
      len(lines),
  )
  return '\n'.join(lines[i + 1 : end]).strip('\n')


def sync(text: str, root: pathlib.Path) -> str:
  """`text` with every embed block replaced by its report section (paths from `root`)."""
  if text.count('<!-- embed ') != text.count('<!-- /embed -->'):
    raise errors.UserError('an <!-- embed ... --> block has no <!-- /embed --> (or the reverse)')

  def fill(m: re.Match) -> str:
    src = m.group('src').strip()
    path = root / src
    if not path.is_file():
      raise errors.UserError(f'embed: {src} does not exist; run `jaxadapt report` on its directory')
    body = path.read_text()
    if m.group('section'):
      try:
        body = section(body, m.group('section').strip())
      except errors.UserError as e:
        raise errors.UserError(f'embed {src}: {e}') from None
    prefix = pathlib.PurePosixPath(src).parent
    body = re.sub(r'(?m)^#', '##', body)  # a section's headings nest under the README's
    body = LINK.sub(lambda l: f'{l.group(1)}{prefix / l.group(2)}{l.group(3)}', body.strip('\n'))
    return f'{m.group(1)}{body}\n{m.group(5)}'

  return BLOCK.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('markdown', help='the file whose embed blocks to fill, e.g. README.md')
  parser.add_argument('--check', action='store_true', help='only report stale blocks (exit 1)')
  args = parser.parse_args(argv)
  path = pathlib.Path(args.markdown)
  try:
    old = path.read_text()
    new = sync(old, path.resolve().parent)
  except (errors.UserError, OSError) as e:
    print(f'error: {str(e).splitlines()[0]}', file=sys.stderr)
    return 2
  if new == old:
    return 0
  if args.check:
    print(f'{path}: embedded report sections are stale; run without --check', file=sys.stderr)
    return 1
  path.write_text(new)
  print(f'{path}: embedded report sections updated')
  return 0


if __name__ == '__main__':
  sys.exit(main())
