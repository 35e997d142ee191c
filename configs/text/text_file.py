r"""Your own text classification data: a CSV or JSONL file of text,label rows.

  jaxadapt train --config configs/text/text_file.py:method=lora \
      --config.dataset.source_dir=reviews.csv --workdir runs/reviews_lora

`dataset.source_dir` is one .csv (header text,label) or .jsonl ({"text": ..., "label": ...})
file, split 80/10/10 into train/validation/test by TFDS slicing of its shuffled rows, or a
directory of <split>.csv/.jsonl files (then set --config.dataset.train_split=train,
val_split=validation, test_split=test as your files are named). Labels are integers or
names (classes sorted by name). Arguments: as configs/text/wordnet.py.
"""

from jaxadapt import text_presets


def get_config(arg=None):
  return text_presets.text_experiment(text_presets.text_task('text_file'), arg)
