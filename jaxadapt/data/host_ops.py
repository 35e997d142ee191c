"""Host-side, per-example augmentation for real images, from a spec like "random_resized_crop|flip".

These run in the streaming input path (grain worker processes, jaxadapt/data/stream.py) on one
decoded uint8 image [H, W, C] at a time, BEFORE the on-device spec of preprocess.py. Every
example leaves at the dataset's image shape (dataset_info's image_shape), so batches keep one
shape: image_folder examples are decoded at their own size, the ops run, and a final bilinear
resize brings them to that shape (the model resolution). Ops:

  random_resized_crop(min_scale=0.08, max_scale=1)  a random box of [min_scale, max_scale] of
                        the area and aspect ratio in [3/4, 4/3] (log-uniform), resized to the
                        output shape (Inception-style; a centre crop when 10 draws do not fit)
  flip                  horizontal flip with probability 1/2
  normalize(m, s)       float32 (x / 255 - m) / s, per channel with 2C args (a checkpoint's
                        mean/std on [0, 1] pixels); then the device spec must not scale again

Randomness comes from the `np.random.Generator` the caller passes: the stream seeds it with
(seed, step, row of the global batch), so an example's augmentation is a pure function of
where it lands, whatever the number of processes or workers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from jaxadapt.data import preprocess
from jaxadapt.errors import DataError

HW = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class HostOp:
  name: str
  apply: Callable[[np.ndarray, np.random.Generator, HW], np.ndarray]  # (image, rng, out hw)


def resize(image: np.ndarray, hw: HW) -> np.ndarray:
  """Bilinear resize of a uint8 [H, W, C] image with Pillow; identity when already hw."""
  from PIL import Image  # Lazy: only real images need Pillow.

  if image.shape[:2] == tuple(hw):
    return image
  c = image.shape[2]
  pil = Image.fromarray(image[..., 0] if c == 1 else image)
  out = np.asarray(pil.resize((hw[1], hw[0]), Image.BILINEAR), dtype=np.uint8)
  return out[..., None] if c == 1 else out


def crop_box(
    h: int, w: int, rng: np.random.Generator, min_scale: float, max_scale: float
) -> tuple[int, int, int, int]:
  """(top, left, height, width) of a random-resized-crop box inside an h x w image."""
  area = h * w
  log_ratio = (math.log(3 / 4), math.log(4 / 3))
  for _ in range(10):
    target = area * rng.uniform(min_scale, max_scale)
    ratio = math.exp(rng.uniform(*log_ratio))
    cw, ch = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
    if 0 < cw <= w and 0 < ch <= h:
      return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
  side = min(h, w)  # fallback: the central square
  return (h - side) // 2, (w - side) // 2, side, side


def _random_resized_crop(args: tuple[float, ...]) -> HostOp:
  expected = 'random_resized_crop(min_scale=0.08, max_scale=1) with 0 < min_scale <= max_scale <= 1'
  if len(args) > 2:
    raise preprocess._bad_args('random_resized_crop', expected, args)
  lo, hi = (*args, 0.08, 1.0)[:2] if not args else (*args, 1.0)[:2]
  if not 0 < lo <= hi <= 1:
    raise preprocess._bad_args('random_resized_crop', expected, args)

  def apply(image, rng, hw):
    top, left, ch, cw = crop_box(image.shape[0], image.shape[1], rng, lo, hi)
    return resize(image[top : top + ch, left : left + cw], hw)

  return HostOp('random_resized_crop', apply)


def _flip(args: tuple[float, ...]) -> HostOp:
  if args:
    raise preprocess._bad_args('flip', 'no arguments', args)
  return HostOp('flip', lambda image, rng, hw: image[:, ::-1] if rng.random() < 0.5 else image)


def _normalize(args: tuple[float, ...]) -> HostOp:
  expected = 'normalize(mean, std) or normalize(m1..mC, s1..sC) with positive stds'
  half = len(args) // 2
  if not args or len(args) % 2 or any(s <= 0 for s in args[half:]):
    raise preprocess._bad_args('normalize', expected, args)
  mean, std = np.asarray(args[:half], np.float32), np.asarray(args[half:], np.float32)

  def apply(image, rng, hw):
    if half not in (1, image.shape[-1]):
      raise DataError(
          f'normalize has {half} values per statistic but images have {image.shape[-1]} channels'
      )
    return (resize(image, hw).astype(np.float32) / 255.0 - mean) / std

  return HostOp('normalize', apply)


HOST_OPS: dict[str, Callable[[tuple[float, ...]], HostOp]] = {
    'random_resized_crop': _random_resized_crop,
    'flip': _flip,
    'normalize': _normalize,
}


def parse(spec: str) -> list[HostOp]:
  """ "op|op(args)" -> HostOps; the same grammar as preprocess.parse, with the host ops."""
  return preprocess.parse_with(spec, HOST_OPS, 'host op', f"preprocess.host_train '{spec}'")


class HostTransform:
  """fn(image [h, w, C] uint8, rng, out hw) -> image [*out hw, C] after the spec's ops.

  Picklable (it is rebuilt from the spec), so grain can ship it to worker processes.
  """

  def __init__(self, spec: str):
    self.spec = spec
    self._ops = parse(spec)

  def __getstate__(self) -> dict:
    return {'spec': self.spec}

  def __setstate__(self, state: dict) -> None:
    self.__init__(state['spec'])

  def __call__(self, image: np.ndarray, rng: np.random.Generator, hw: HW) -> np.ndarray:
    for op in self._ops:
      image = op.apply(image, rng, hw)
    return resize(image, hw) if image.dtype == np.uint8 else image
