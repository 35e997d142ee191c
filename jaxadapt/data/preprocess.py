"""On-device preprocessing built from a spec string like "scale|normalize(0.286,0.353)|flip".

Inputs are batches [N, *spatial, C]: images [N, H, W, C] or sequences [N, L, C] (MNIST-1D).
Ops (applied left to right, after casting the input to float32):
  scale                 divide by 255 (uint8 range -> [0, 1])
  normalize(m, s)       (x - m) / s; per channel with 2C args: normalize(m1,..,mC, s1,..,sC)
  resize(size|h,w)      bilinear resize with jax.image.resize (images only)
  pad_crop(pad)         zero-pad by `pad`, random crop back to the input size (train only;
                        images only)
  flip                  random horizontal flip per example (train only; images only)
  gray2rgb              repeat a single channel to 3
  permute(seed)         one fixed permutation of the flattened spatial positions (sequence steps,
                        or H*W pixels with their channels), the same for every example, train and
                        eval: put it in both preprocess.train and preprocess.eval. The order is
                        np.random.RandomState(seed).permutation(positions), so permute(42) is the
                        "shuffled" MNIST-1D of Greydanus (2020)'s benchmark notebook.
The empty spec '' is the identity (only the float32 cast).
Token batches (integer [N, L], text models) pass through unchanged and take only the
empty spec: every op above is for images or sequences.
Random ops draw from the `rng` the caller passes and are the identity when train=False.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxadapt.errors import DataError

Shape = tuple[int, ...]  # (*spatial, C) of one example: (H, W, C) or (L, C).
Preprocess = Callable[..., jax.Array]


@dataclasses.dataclass(frozen=True)
class Op:
  name: str
  apply: Callable[[jax.Array, jax.Array | None, bool], jax.Array]  # (batch, rng, train)
  shape: Callable[[Shape], Shape] = lambda shape: shape
  random: bool = False


def _bad_args(name: str, expected: str, args: tuple[float, ...]) -> DataError:
  given = ','.join(f'{a:g}' for a in args)
  return DataError(f"preprocessing op '{name}' expects {expected}, got {name}({given})")


def _ints(name: str, expected: str, args: tuple[float, ...]) -> tuple[int, ...]:
  if not all(a.is_integer() and a >= 0 for a in args):
    raise _bad_args(name, expected, args)
  return tuple(int(a) for a in args)


def _image_only(name: str) -> Callable[[Shape], Shape]:
  """Shape check for ops that need 2D images: a one-line error for sequences."""

  def shape(s: Shape) -> Shape:
    if len(s) != 3:
      raise DataError(
          f"preprocessing op '{name}' needs images (H, W, C), got examples " f'of shape {s}'
      )
    return s

  return shape


def _scale(args: tuple[float, ...]) -> Op:
  if args:
    raise _bad_args('scale', 'no arguments', args)
  return Op('scale', lambda x, rng, train: x / 255.0)


def _normalize(args: tuple[float, ...]) -> Op:
  expected = 'normalize(mean, std) or normalize(m1..mC, s1..sC) with positive stds'
  half = len(args) // 2
  if not args or len(args) % 2 or any(s <= 0 for s in args[half:]):
    raise _bad_args('normalize', expected, args)
  mean, std = jnp.asarray(args[:half], jnp.float32), jnp.asarray(args[half:], jnp.float32)

  def shape(s: Shape) -> Shape:
    if half not in (1, s[-1]):
      raise DataError(f'normalize has {half} values per statistic but images have {s[-1]} channels')
    return s

  return Op('normalize', lambda x, rng, train: (x - mean) / std, shape)


def _resize(args: tuple[float, ...]) -> Op:
  expected = 'resize(size) or resize(height, width) with positive integers'
  if len(args) not in (1, 2):
    raise _bad_args('resize', expected, args)
  size = _ints('resize', expected, args)
  h, w = size * 2 if len(size) == 1 else size
  if h == 0 or w == 0:
    raise _bad_args('resize', expected, args)

  def apply(x, rng, train):
    return jax.image.resize(x, (x.shape[0], h, w, x.shape[3]), method='bilinear')

  return Op('resize', apply, lambda s: (h, w, _image_only('resize')(s)[2]))


def _pad_crop(args: tuple[float, ...]) -> Op:
  expected = 'pad_crop(pad) with a non-negative integer pad'
  if len(args) != 1:
    raise _bad_args('pad_crop', expected, args)
  (pad,) = _ints('pad_crop', expected, args)

  def apply(x, rng, train):
    if not train or pad == 0:
      return x
    n, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = jax.random.randint(rng, (n, 2), 0, 2 * pad + 1)
    crop = lambda img, off: jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))
    return jax.vmap(crop)(padded, offsets)

  return Op('pad_crop', apply, _image_only('pad_crop'), random=True)


def _flip(args: tuple[float, ...]) -> Op:
  if args:
    raise _bad_args('flip', 'no arguments', args)

  def apply(x, rng, train):
    if not train:
      return x
    flipped = jax.random.bernoulli(rng, 0.5, (x.shape[0],))
    return jnp.where(flipped[:, None, None, None], x[:, :, ::-1, :], x)

  return Op('flip', apply, _image_only('flip'), random=True)


def _gray2rgb(args: tuple[float, ...]) -> Op:
  if args:
    raise _bad_args('gray2rgb', 'no arguments', args)

  def shape(s: Shape) -> Shape:
    if s[-1] != 1:
      raise DataError(f'gray2rgb needs 1-channel images, got shape {s}')
    return (*s[:-1], 3)

  return Op('gray2rgb', lambda x, rng, train: jnp.repeat(x, 3, axis=-1), shape)


def permutation(seed: int, positions: int) -> np.ndarray:
  """The order `permute(seed)` uses: output position i takes input position order[i]."""
  return np.random.RandomState(seed).permutation(positions)


def _permute(args: tuple[float, ...]) -> Op:
  expected = 'permute(seed) with an integer seed in [0, 2**32)'
  if len(args) != 1:
    raise _bad_args('permute', expected, args)
  (seed,) = _ints('permute', expected, args)
  if seed >= 2**32:
    raise _bad_args('permute', expected, args)

  def apply(x, rng, train):
    # Not a random op: a constant gather (built from static shapes at trace time), so
    # train and eval see the same order.
    n, *spatial, c = x.shape
    order = permutation(seed, math.prod(spatial))
    return x.reshape(n, -1, c)[:, order, :].reshape(x.shape)

  return Op('permute', apply)


OPS: dict[str, Callable[[tuple[float, ...]], Op]] = {
    'scale': _scale,
    'normalize': _normalize,
    'resize': _resize,
    'pad_crop': _pad_crop,
    'flip': _flip,
    'gray2rgb': _gray2rgb,
    'permute': _permute,
}

_TOKEN = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$')


def parse(spec: str) -> list[Op]:
  """Turn "op|op(args)|..." into Ops; '' means no preprocessing beyond the float32 cast."""
  return parse_with(spec, OPS, 'preprocessing op', f"spec '{spec}'")


def parse_with(spec: str, registry: dict[str, Callable], what: str, where: str) -> list:
  """ "op|op(args)|..." -> [registry[op](args)]: the grammar of every op spec (device and host)."""
  ops = []
  for token in spec.split('|') if spec.strip() else []:
    match = _TOKEN.match(token)
    if not match:
      raise DataError(
          f"cannot parse {what} '{token.strip()}' in {where}; expected name or name(arg, ...)"
      )
    name, arg_text = match.group(1), match.group(2)
    if name not in registry:
      close = difflib.get_close_matches(name, registry, n=1)
      hint = f" (did you mean '{close[0]}'?)" if close else ''
      raise DataError(
          f"unknown {what} '{name}' in {where}; " f"valid ops: {', '.join(sorted(registry))}{hint}"
      )
    try:
      args = tuple(float(a) for a in arg_text.split(',')) if arg_text and arg_text.strip() else ()
    except ValueError:
      raise DataError(f"{what} '{name}' has non-numeric arguments '{arg_text}'") from None
    ops.append(registry[name](args))
  return ops


def output_shape(spec: str, image_shape: tuple[int, ...]) -> Shape:
  """Shape of one example after `spec`, so models can be initialised before data flows."""
  shape = tuple(int(d) for d in image_shape)
  if len(shape) == 1:  # token ids (L,)
    _check_tokens_spec(spec)
    return shape
  if len(shape) < 2:
    raise DataError(f'example shape must be (H, W, C) or (L, C), got {image_shape}')
  for op in parse(spec):
    shape = op.shape(shape)
  return shape


def _check_tokens_spec(spec: str) -> None:
  ops = parse(spec)
  if ops:
    raise DataError(
        f"preprocessing op '{ops[0].name}' is for images and sequences, but this batch is "
        f"token ids [N, L]; use an empty spec '' for text"
    )


def _is_tokens(x) -> bool:
  return x.ndim == 2 and jnp.issubdtype(x.dtype, jnp.integer)


def make_preprocess(spec: str) -> Preprocess:
  """Return fn(batch [N,H,W,C] or [N,L,C], uint8/float, rng, train) -> float32 batch.

  Call it inside a jitted step with `train` static; pass e.g.
  rng = jax.random.fold_in(jax.random.key(seed), step). rng may be None when train=False.
  """
  ops = parse(spec)
  needs_rng = any(op.random for op in ops)

  def preprocess(images: jax.Array, rng: jax.Array | None = None, train: bool = False) -> jax.Array:
    if train and needs_rng and rng is None:
      raise ValueError(f"preprocess spec '{spec}' has random ops: pass an rng when train=True")
    if _is_tokens(images):
      _check_tokens_spec(spec)
      return jnp.asarray(images)
    if images.ndim < 3:
      raise DataError(f'expected a batch [N, H, W, C] or [N, L, C], got shape ' f'{images.shape}')
    x = jnp.asarray(images).astype(jnp.float32)
    for i, op in enumerate(ops):
      op.shape(tuple(x.shape[1:]))  # Validates channel counts with a readable error.
      x = op.apply(x, jax.random.fold_in(rng, i) if (train and op.random) else None, train)
    return x

  return preprocess
