"""Vision Transformer with hand-written attention so every kernel is 2D or 4D."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from . import prompts as prompt_lib
from .common import ModelError, zeros
from .spec import Blocks, ModelSpec

dense_init = nn.initializers.xavier_uniform()


class SelfAttention(nn.Module):
  """Multi-head self-attention from four plain (width, width) Dense layers.

  flax's MultiHeadDotProductAttention stores 3D kernels; keeping them 2D
  lets low-rank adapters treat every Dense kernel the same way.
  """

  num_heads: int

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """`mask` (B, N), True for real tokens: padded keys get no attention (text models)."""
    b, n, width = x.shape
    if width % self.num_heads:
      raise ModelError(f'width {width} not divisible by num_heads {self.num_heads}')
    head_dim = width // self.num_heads

    def heads(name: str) -> jax.Array:  # (B, N, W) -> (B, H, N, W/H)
      y = nn.Dense(width, kernel_init=dense_init, name=name)(x)
      return y.reshape(b, n, self.num_heads, head_dim).transpose(0, 2, 1, 3)

    q, k, v = heads('query'), heads('key'), heads('value')
    logits = q @ k.swapaxes(-1, -2) / jnp.sqrt(head_dim).astype(x.dtype)
    if mask is not None:
      logits = jnp.where(mask[:, None, None, :], logits, jnp.finfo(logits.dtype).min)
    y = jax.nn.softmax(logits, axis=-1) @ v
    y = y.transpose(0, 2, 1, 3).reshape(b, n, width)
    return nn.Dense(width, kernel_init=dense_init, name='out')(y)


GELUS = ('tanh', 'exact')
# IA3 on this encoder: keys and values rescaled at their output, the MLP's intermediate
# activation at fc2's input (jaxadapt/ia3.py).
IA3_RULES = (
    (r'encoder/block\d+/attn/(key|value)/kernel', 'out'),
    (r'encoder/block\d+/mlp/fc2/kernel', 'in'),
)


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
  if value not in choices:
    raise ModelError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")


class MLP(nn.Module):
  """fc1 -> GELU -> fc2. `gelu='exact'` is the erf form of timm, BERT and Hugging Face;
  'tanh' the approximation (flax's default)."""

  hidden: int
  dropout: float
  gelu: str = 'tanh'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = nn.Dense(self.hidden, kernel_init=dense_init, name='fc1')(x)
    y = nn.gelu(y, approximate=self.gelu == 'tanh')
    y = nn.Dropout(self.dropout, deterministic=not train)(y)
    return nn.Dense(x.shape[-1], kernel_init=dense_init, name='fc2')(y)


class EncoderBlock(nn.Module):
  """Pre-LN block: x + attn(LN(x)); x + mlp(LN(x))."""

  num_heads: int
  mlp_dim: int
  dropout: float
  gelu: str = 'tanh'
  norm_eps: float = 1e-6

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    drop = nn.Dropout(self.dropout, deterministic=not train)
    norm = lambda name: nn.LayerNorm(epsilon=self.norm_eps, name=name)
    x = x + drop(SelfAttention(self.num_heads, name='attn')(norm('norm1')(x)))
    y = MLP(self.mlp_dim, self.dropout, self.gelu, name='mlp')(norm('norm2')(x), train)
    return x + drop(y)


class Encoder(nn.Module):
  depth: int
  num_heads: int
  mlp_dim: int
  dropout: float
  gelu: str = 'tanh'
  norm_eps: float = 1e-6

  @nn.compact
  def __call__(
      self, x: jax.Array, train: bool, prompts: jax.Array | None = None, at: int = 0
  ) -> jax.Array:
    """`prompts` (prompt_depth, P, width): placed at `at` before each of the first blocks."""
    for i in range(1, self.depth + 1):
      if prompts is not None and i <= prompts.shape[0]:
        x = prompt_lib.place(x, prompts[i - 1], at, first=i == 1)
      x = EncoderBlock(
          self.num_heads, self.mlp_dim, self.dropout, self.gelu, self.norm_eps, name=f'block{i}'
      )(x, train)
    return nn.LayerNorm(epsilon=self.norm_eps, name='norm')(x)


class ViT(nn.Module):
  """Patchify conv -> (+cls) + learned positions -> pre-LN encoder -> head.

  `pool='cls'` reads the class token, 'gap' averages the patch tokens. The
  position embedding is sized for the input used at init time. `gelu` and
  `norm_eps` match other implementations exactly: timm and Hugging Face use
  gelu='exact', and eps 1e-6 (timm, big_vision) or 1e-12 (Hugging Face).
  """

  num_classes: int
  patch_size: int = 4
  width: int = 128
  depth: int = 6
  num_heads: int = 4
  mlp_dim: int | None = None  # default 4 * width
  pool: str = 'cls'  # 'cls' | 'gap'
  dropout: float = 0.0
  gelu: str = 'tanh'  # 'tanh' | 'exact'
  norm_eps: float = 1e-6
  num_prompts: int = 0  # visual prompt tuning: learned tokens after the class token
  prompt_depth: int = 1  # blocks that get fresh prompts: 1 = shallow VPT, depth = deep VPT

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, features_only: bool = False) -> jax.Array:
    check_choice('pool', self.pool, ('cls', 'gap'))
    prompt_lib.check(self.num_prompts, self.prompt_depth, self.depth)
    check_choice('gelu', self.gelu, GELUS)
    p = self.patch_size
    x = nn.Conv(self.width, (p, p), (p, p), padding='VALID', name='embedding')(x)
    x = x.reshape(x.shape[0], -1, self.width)
    if self.pool == 'cls':
      cls = self.param('cls', zeros, (1, 1, self.width))
      x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, self.width)), x], axis=1)
    pos = self.param('pos_embedding', nn.initializers.normal(0.02), (1, *x.shape[1:]))
    x = nn.Dropout(self.dropout, deterministic=not train)(x + pos)
    prompts, at = None, int(self.pool == 'cls')
    if self.num_prompts:
      shape = (self.prompt_depth, self.num_prompts, self.width)
      prompts = self.param('prompt', nn.initializers.normal(0.02), shape)
    x = Encoder(
        self.depth,
        self.num_heads,
        self.mlp_dim or 4 * self.width,
        self.dropout,
        self.gelu,
        self.norm_eps,
        name='encoder',
    )(x, train, prompts, at)
    if self.num_prompts:  # pooling and the head never see the prompt positions
      x = prompt_lib.remove(x, self.num_prompts, at)
    x = x[:, 0] if self.pool == 'cls' else x.mean(axis=1)
    if features_only:
      return x
    return nn.Dense(self.num_classes, kernel_init=zeros, bias_init=zeros, name='head')(x)


SPEC = ModelSpec(
    module=ViT,
    input_kind='image',
    blocks=lambda m: Blocks(
        stem=('embedding', 'cls', 'pos_embedding')
        if m.pool == 'cls'
        else ('embedding', 'pos_embedding'),
        body=tuple(f'encoder/block{i}' for i in range(1, m.depth + 1)),
        post=('encoder/norm',),
    ),
    lora_targets=r'encoder/block\d+/(attn/(query|value)|mlp/fc\d)/kernel',
    ia3_rules=IA3_RULES,
    smoke=dict(width=16, depth=1, num_heads=2),
)
