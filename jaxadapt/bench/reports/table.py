"""Table report: test accuracy in a rows x columns table, ours beside the published values.

suite.json's `table` names the tags that make the rows and columns
({'rows': tag, 'columns': tag}); `published[row][column]` is the paper's accuracy.
"""

from __future__ import annotations

from jaxadapt.bench.reports import common


def write(records: list[dict], meta: dict, out: str) -> common.Report:
  """Rows x columns of test accuracy (mean ± std over seeds) beside the published values."""
  spec = meta.get('table', {})
  row_tag, col_tag = spec.get('rows', 'model'), spec.get('columns', 'variant')
  records = [dict(r, tags={row_tag: '-', col_tag: '-', **r['tags']}) for r in records]  # untagged
  rows = list(dict.fromkeys(r['tags'][row_tag] for r in records))
  cols = list(dict.fromkeys(r['tags'][col_tag] for r in records))
  published = meta.get('published', {})
  seeds = sorted({r['tags'].get('seed', 0) for r in records})
  lines = [
      f'Test accuracy, ours (mean ± std over {len(seeds)} seed(s)) / published; '
      f'{common.training_minutes(records)}.',
      '',
      f'| {row_tag} | ' + ' | '.join(str(c) for c in cols) + ' |',
      '|---|' + '---:|' * len(cols),
  ]
  for row in rows:
    cells = []
    for col in cols:
      a = [
          r['test_accuracy']
          for r in records
          if r['tags'][row_tag] == row and r['tags'][col_tag] == col
      ]
      ours = common.pct(*common.stats(a)) if a else '-'
      paper = published.get(str(row), {}).get(str(col))
      cells.append(f'{ours} / {100 * paper:.0f}' if paper is not None else ours)
    lines.append(f'| {row} | ' + ' | '.join(cells) + ' |')
  return common.page(meta, '\n'.join(lines), [])
