"""The report registry: the kind comes from suite.json, and the committed reproductions'
reports rebuild byte for byte from their committed results."""

import json
import pathlib
import shutil

import pytest

from jaxadapt import cli
from jaxadapt.bench import reports, suite
from jaxadapt.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / 'docs/reproductions'
# Each committed results directory and the suite (with arguments) that wrote it.
COMMITTED = {
    'transferability': 'configs/suites/transferability.py',
    'transferability1500': 'configs/suites/transferability.py:steps=1500',
    'mnist1d': 'configs/suites/mnist1d.py',
    'distillation': 'configs/suites/distillation.py',
}


@pytest.mark.parametrize('name', sorted(COMMITTED))
def test_committed_reports_rebuild_byte_for_byte(tmp_path, name):
  out = tmp_path / name
  shutil.copytree(DOCS / name, out)
  (out / 'report.md').unlink()
  assert cli.main(['report', str(out)]) == 0
  assert (out / 'report.md').read_bytes() == (DOCS / name / 'report.md').read_bytes()
  # suite.json is what the suite file gives today: a changed title or published number
  # would make the committed report stale.
  meta = suite.meta(suite.load(str(ROOT / COMMITTED[name])), quick=False)
  assert json.loads((DOCS / name / 'suite.json').read_text()) == meta


def test_every_committed_results_directory_is_checked():
  assert sorted(p.name for p in DOCS.iterdir() if p.is_dir()) == sorted(COMMITTED)


def test_missing_or_unknown_kind_names_the_fix(tmp_path, capsys):
  assert cli.main(['report', str(tmp_path)]) == 2
  assert 'has no suite.json: run `jaxadapt bench --suite ...' in capsys.readouterr().err
  (tmp_path / 'suite.json').write_text(json.dumps({'report': 'nope'}))
  (tmp_path / 'results.jsonl').write_text('')
  with pytest.raises(UserError, match="unknown report 'nope'; known: adaptation, trans"):
    reports.write_report(tmp_path)
