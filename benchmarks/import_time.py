"""Time to import a ViT-B/16-sized (86M parameters) random-init checkpoint, per source layout.

    .venv/bin/python benchmarks/import_time.py [--dir /tmp/import_bench]

Writes a timm state dict (fused qkv, torch layouts) and a Hugging Face directory with
random float32 tensors of ViT-B/16's names and shapes (numpy only, no torch), then times
`importers.load` (read, check, transform every tensor) for each.
"""

import argparse
import json
import pathlib
import time

import numpy as np
from safetensors.numpy import save_file

from jaxadapt import importers

D, DEPTH, MLP, PATCH, GRID, CLASSES = 768, 12, 3072, 16, 14, 1000


def timm_vit_b16() -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  r = lambda *s: rng.standard_normal(s, dtype=np.float32)
  w = {
      'cls_token': r(1, 1, D),
      'pos_embed': r(1, GRID * GRID + 1, D),
      'patch_embed.proj.weight': r(D, 3, PATCH, PATCH),
      'patch_embed.proj.bias': r(D),
      'norm.weight': r(D),
      'norm.bias': r(D),
      'head.weight': r(CLASSES, D),
      'head.bias': r(CLASSES),
  }
  for i in range(DEPTH):
    b = f'blocks.{i}'
    w.update({
        f'{b}.norm1.weight': r(D), f'{b}.norm1.bias': r(D),
        f'{b}.attn.qkv.weight': r(3 * D, D), f'{b}.attn.qkv.bias': r(3 * D),
        f'{b}.attn.proj.weight': r(D, D), f'{b}.attn.proj.bias': r(D),
        f'{b}.norm2.weight': r(D), f'{b}.norm2.bias': r(D),
        f'{b}.mlp.fc1.weight': r(MLP, D), f'{b}.mlp.fc1.bias': r(MLP),
        f'{b}.mlp.fc2.weight': r(D, MLP), f'{b}.mlp.fc2.bias': r(D),
    })  # fmt: skip
  return w


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--dir', default='/tmp/import_bench')
  out = pathlib.Path(parser.parse_args().dir)
  out.mkdir(parents=True, exist_ok=True)
  w = timm_vit_b16()
  print(f'{sum(v.size for v in w.values()):,} parameters')
  save_file(w, out / 'vit_b16.safetensors')
  (out / 'config.json').write_text(json.dumps({'architecture': 'vit_base_patch16_224'}))
  for name, checkpoint in [('timm', f'timm:{out}/vit_b16.safetensors')]:
    t0 = time.perf_counter()
    plan, params = importers.load(checkpoint)
    dt = time.perf_counter() - t0
    print(
        f'{name}: {len(params)} tensors, {sum(v.size for v in params.values()):,} values in {dt:.2f} s'
    )


if __name__ == '__main__':
  main()
