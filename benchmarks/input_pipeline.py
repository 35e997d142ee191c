"""Input pipeline alone: images/s and peak memory while streaming an image folder.

    .venv/bin/python benchmarks/input_pipeline.py --kind png28 --num-images 60000
    .venv/bin/python benchmarks/input_pipeline.py --kind jpeg224 --num-images 100000 \
        --steps 200 --workers 2 --host-train 'random_resized_crop|flip'

Generates a folder (never commit it) under --dir: `train/<class>/<i>.png|jpg` from the
Fashion-MNIST train images (the local fashion_mnist builder, cycled to --num-images) and
`test/` from its test images (one sixth as many, at most 10,000); png28 keeps them 28x28
grayscale, jpeg224 upscales them to 224x224 RGB with per-image noise (JPEG quality 90).
Then prepares it (`image_folder`), and times --steps batches of a StreamSource with
--workers grain processes, after --warmup batches. Peak RSS is sampled every 50 ms over this
process and its children (the workers) while streaming; it is printed with the figures as
one JSON line, with the preparation's time and peak RSS (first run on a folder: listing,
checking every image, writing the shards). The folder is reused when it already has the
requested images.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import ml_collections
import numpy as np
import psutil
from PIL import Image
from tqdm import tqdm

from jaxadapt import data
from jaxadapt.data import stream
from jaxadapt.defaults import base_config


def _write(images: np.ndarray, labels: np.ndarray, folder: Path, kind: str, n: int, seed: int):
  rng = np.random.default_rng(seed)
  for c in np.unique(labels):
    (folder / f'class_{c}').mkdir(parents=True, exist_ok=True)
  for i in tqdm(range(n), desc=f'writing {folder.name}', unit='img', mininterval=5):
    image, label = images[i % len(images)], labels[i % len(images)]
    path = folder / f'class_{label}' / f'{i:06d}'
    if kind == 'png28':
      Image.fromarray(image[..., 0]).save(path.with_suffix('.png'))
    else:
      big = np.asarray(Image.fromarray(image[..., 0]).resize((224, 224), Image.BILINEAR))
      noise = rng.integers(0, 32, (224, 224, 3), dtype=np.uint8)
      rgb = np.clip(big[..., None].astype(np.int16) + noise, 0, 255).astype(np.uint8)
      Image.fromarray(rgb).save(path.with_suffix('.jpg'), quality=90)


def generate(root: Path, kind: str, num_images: int) -> None:
  """Fashion-MNIST as an image folder with train/ and test/ (skipped if already complete)."""
  done = root / '.complete'
  if done.exists() and done.read_text() == f'{kind} {num_images}':
    return
  fm = ml_collections.ConfigDict({'name': 'fashion_mnist'})
  for split, n, seed in (('train', num_images, 0), ('test', min(num_images // 6, 10_000), 1)):
    arrays = data.load_split(fm, split)
    _write(arrays['image'], arrays['label'], root / split, kind, n, seed)
  done.write_text(f'{kind} {num_images}')


class PeakRss:
  """Largest RSS of this process plus its children, sampled in a thread."""

  def __init__(self, every: float = 0.05):
    self.peak, self._stop, self._every = 0, threading.Event(), every
    self._thread = threading.Thread(target=self._run, daemon=True)

  def _run(self) -> None:
    me = psutil.Process()
    while not self._stop.is_set():
      total = 0
      for p in [me, *me.children(recursive=True)]:
        try:
          total += p.memory_info().rss
        except psutil.Error:  # a worker that just exited
          pass
      self.peak = max(self.peak, total)
      time.sleep(self._every)

  def __enter__(self) -> 'PeakRss':
    self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self._stop.set()
    self._thread.join()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--kind', choices=('png28', 'jpeg224'), default='png28')
  parser.add_argument('--num-images', type=int, default=10_000)
  parser.add_argument('--dir', default=os.path.join(tempfile.gettempdir(), 'jaxadapt_input_bench'))
  parser.add_argument('--batch-size', type=int, default=256)
  parser.add_argument('--steps', type=int, default=100)
  parser.add_argument('--warmup', type=int, default=5)
  parser.add_argument('--workers', type=int, default=2)
  parser.add_argument('--host-train', default='')
  args = parser.parse_args()

  root = Path(args.dir) / f'{args.kind}_{args.num_images}'
  t0 = time.perf_counter()
  generate(root / 'images', args.kind, args.num_images)
  t_generate = time.perf_counter() - t0

  config = base_config()
  config.dataset.update(
      name='image_folder',
      source_dir=str(root / 'images'),
      data_dir=str(root / 'prepared'),
      train_split='train',
      stream=True,
      workers=args.workers,
  )
  config.preprocess.host_train = args.host_train
  config.batch_size = args.batch_size
  rss_before = psutil.Process().memory_info().rss
  t0 = time.perf_counter()
  with PeakRss() as prepare_rss:
    source = stream.stream_source(config)  # prepares the folder the first time
  t_prepare = time.perf_counter() - t0
  with PeakRss() as rss:
    for step in range(args.warmup):
      source.batch(step)
    t0 = time.perf_counter()
    for step in range(args.warmup, args.warmup + args.steps):
      batch = source.batch(step)
    elapsed = time.perf_counter() - t0
  source.close()
  print(
      json.dumps(
          {
              'kind': args.kind,
              'num_images': args.num_images,
              'batch_size': args.batch_size,
              'workers': args.workers,
              'host_train': args.host_train,
              'batch_shape': list(batch['image'].shape),
              'images_per_s': round(args.steps * args.batch_size / elapsed, 1),
              'peak_rss_mb': round(rss.peak / 2**20),
              'rss_before_stream_mb': round(rss_before / 2**20),
              'generate_s': round(t_generate, 1),
              'prepare_s': round(t_prepare, 1),
              'prepare_peak_rss_mb': round(prepare_rss.peak / 2**20),
          }
      )
  )


if __name__ == '__main__':
  main()
