"""BERT text encoder (Devlin et al. 2019) with the ViT's parameter paths, for Hugging Face
BERT checkpoints (all-MiniLM-L6-v2 among them).

Input: token ids [N, L] (int32; the attention mask is `ids != pad_id`, which is exactly
the mask a tokenizer's padding produces). Word + position + token-type (all type 0)
embeddings, LayerNorm, then post-LN blocks: x = norm1(x + attn(x)); x = norm2(x + mlp(x)),
exact (erf) GELU, LayerNorm eps 1e-12 by default (Hugging Face's).

`pool`: 'mean' averages the unmasked tokens (sentence-transformers), 'cls' reads the
first token, 'pooler' is BERT's tanh(Dense(CLS)) (BertForSequenceClassification). The
head sees the pooled vector, which is also what `features_only` returns.

Paths: `embedding/{word,position,token_type}/embedding`, `embedding/norm/{scale,bias}`,
`encoder/block{i}/attn/{query,key,value,out}/{kernel,bias}`,
`encoder/block{i}/mlp/{fc1,fc2}/{kernel,bias}`, `encoder/block{i}/norm{1,2}/{scale,bias}`,
`pooler/{kernel,bias}` (pool='pooler' only), `head/{kernel,bias}`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from . import prompts as prompt_lib
from .common import ModelError, zeros
from .spec import Blocks, ModelSpec
from .vit import IA3_RULES, GELUS, MLP, SelfAttention, check_choice, dense_init

POOLS = ('mean', 'cls', 'pooler')


class BertBlock(nn.Module):
  num_heads: int
  mlp_dim: int
  dropout: float
  gelu: str
  norm_eps: float

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, train: bool) -> jax.Array:
    drop = nn.Dropout(self.dropout, deterministic=not train)
    norm = lambda name: nn.LayerNorm(epsilon=self.norm_eps, use_fast_variance=False, name=name)
    x = norm('norm1')(x + drop(SelfAttention(self.num_heads, name='attn')(x, mask)))
    y = MLP(self.mlp_dim, self.dropout, self.gelu, name='mlp')(x, train)
    return norm('norm2')(x + drop(y))


class BertEncoder(nn.Module):
  depth: int
  num_heads: int
  mlp_dim: int
  dropout: float
  gelu: str
  norm_eps: float

  @nn.compact
  def __call__(
      self, x: jax.Array, mask: jax.Array, train: bool, prompts: jax.Array | None = None
  ) -> jax.Array:
    """`prompts` (prompt_depth, P, width) go after [CLS] before each of the first blocks;
    `mask` must already cover them."""
    for i in range(1, self.depth + 1):
      if prompts is not None and i <= prompts.shape[0]:
        x = prompt_lib.place(x, prompts[i - 1], 1, first=i == 1)
      x = BertBlock(
          self.num_heads, self.mlp_dim, self.dropout, self.gelu, self.norm_eps, name=f'block{i}'
      )(x, mask, train)
    return x


class Embedding(nn.Module):
  vocab_size: int
  max_len: int
  type_vocab_size: int
  width: int
  norm_eps: float

  @nn.compact
  def __call__(self, ids: jax.Array) -> jax.Array:
    init = nn.initializers.normal(0.02)
    if ids.shape[1] > self.max_len:
      raise ModelError(f'bert: sequences of {ids.shape[1]} tokens exceed max_len={self.max_len}')
    embed = lambda n, name: nn.Embed(n, self.width, embedding_init=init, name=name)
    positions = jnp.arange(ids.shape[1])[None]
    # Single sentences: every token has type 0.
    x = (
        embed(self.vocab_size, 'word')(ids)
        + embed(self.max_len, 'position')(positions)
        + embed(self.type_vocab_size, 'token_type')(jnp.zeros_like(positions))
    )
    return nn.LayerNorm(epsilon=self.norm_eps, use_fast_variance=False, name='norm')(x)


class Bert(nn.Module):
  """BERT encoder + pooling + head. Defaults are all-MiniLM-L6-v2's architecture."""

  num_classes: int
  vocab_size: int = 30522
  max_len: int = 512
  type_vocab_size: int = 2
  width: int = 384
  depth: int = 6
  num_heads: int = 12
  mlp_dim: int | None = None  # default 4 * width
  pool: str = 'mean'  # 'mean' | 'cls' | 'pooler'
  gelu: str = 'exact'  # 'exact' | 'tanh'
  norm_eps: float = 1e-12
  dropout: float = 0.0
  pad_id: int = 0
  num_prompts: int = 0  # prompt tuning: learned tokens after [CLS], always attended
  prompt_depth: int = 1  # blocks that get fresh prompts: 1 = first only, depth = every block

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, features_only: bool = False) -> jax.Array:
    check_choice('pool', self.pool, POOLS)
    check_choice('gelu', self.gelu, GELUS)
    if x.ndim != 2:
      raise ModelError(f'bert takes token ids [N, L], got an input of shape {x.shape}')
    ids = x.astype(jnp.int32)
    mask = ids != self.pad_id
    h = Embedding(
        self.vocab_size,
        self.max_len,
        self.type_vocab_size,
        self.width,
        self.norm_eps,
        name='embedding',
    )(ids)
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    prompt_lib.check(self.num_prompts, self.prompt_depth, self.depth)
    prompts, attend = None, mask
    if self.num_prompts:
      shape = (self.prompt_depth, self.num_prompts, self.width)
      prompts = self.param('prompt', nn.initializers.normal(0.02), shape)
      attend = prompt_lib.extend_mask(mask, self.num_prompts, 1)
    h = BertEncoder(
        self.depth,
        self.num_heads,
        self.mlp_dim or 4 * self.width,
        self.dropout,
        self.gelu,
        self.norm_eps,
        name='encoder',
    )(h, attend, train, prompts)
    if self.num_prompts:  # pooling and the head never see the prompt positions
      h = prompt_lib.remove(h, self.num_prompts, 1)
    if self.pool == 'mean':
      m = mask[..., None].astype(h.dtype)
      feats = (h * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1e-9)
    else:
      feats = h[:, 0]
      if self.pool == 'pooler':
        feats = jnp.tanh(nn.Dense(self.width, kernel_init=dense_init, name='pooler')(feats))
    if features_only:
      return feats
    return nn.Dense(self.num_classes, kernel_init=zeros, bias_init=zeros, name='head')(feats)


SPEC = ModelSpec(
    module=Bert,
    input_kind='tokens',
    blocks=lambda m: Blocks(
        stem=('embedding',),
        body=tuple(f'encoder/block{i}' for i in range(1, m.depth + 1)),
        post=('pooler',) if m.pool == 'pooler' else (),
    ),
    lora_targets=r'encoder/block\d+/(attn/(query|value)|mlp/fc\d)/kernel',
    ia3_rules=IA3_RULES,
    smoke=dict(width=16, depth=1, num_heads=2, mlp_dim=32),
)
