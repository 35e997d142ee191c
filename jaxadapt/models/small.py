"""The four MNIST-1D models of Greydanus (2020), "Scaling down deep learning".

Flax ports of the PyTorch reference (github.com/greydanus/mnist1d, notebooks/models.py):
`Linear` (LinearBase), `MLP` (MLPBase), `CNN1D` (ConvBase), `GRU` (GRUBase). They take
sequences [B, L, C] (MNIST-1D: L=40, C=1); any [B, *spatial, C] batch works, its positions
read in row-major order as one sequence. The call signature is the registry's:
`(x, train=False, features_only=False)`, with `dropout` (0, as in the paper) before `head`.

Parameter counts on MNIST-1D (40 steps, 10 classes) [PyTorch reference]:
linear 410 [410], mlp 15,210 [15,210], cnn1d 5,210 [5,210], gru 5,110 [5,134]. flax's
GRUCell keeps one input bias per gate where torch.nn.GRU adds a second, recurrent one to the
reset and update gates (b_hr, b_hz); those only ever appear summed with b_ir, b_iz, so the
24 extra torch parameters (2 directions x 2 gates x 6) add nothing the flax GRU cannot express.

Initialisation follows PyTorch's defaults (uniform +-1/sqrt(fan_in) for Linear/Conv1d kernels
and biases, +-1/sqrt(hidden) for every GRU tensor) so training behaves like the reference,
except `head`, which is zero as in every registry model.
"""

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from .common import zeros
from .spec import Blocks, ModelSpec

# PyTorch's kaiming_uniform(a=sqrt(5)) default is uniform(+-1/sqrt(fan_in)): variance 1/(3 fan_in).
torch_kernel = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


def torch_uniform(bound: float) -> nn.initializers.Initializer:
  """uniform(-bound, bound): PyTorch's bias init (bound = 1/sqrt(fan_in)) and GRU init."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def _dense(features: int, fan_in: int, name: str) -> nn.Dense:
  return nn.Dense(
      features, kernel_init=torch_kernel, bias_init=torch_uniform(1 / math.sqrt(fan_in)), name=name
  )


def _head(x: jax.Array, num_classes: int, dropout: float, train: bool) -> jax.Array:
  x = nn.Dropout(dropout, deterministic=not train)(x)
  return nn.Dense(num_classes, kernel_init=zeros, bias_init=zeros, name='head')(x)


class Linear(nn.Module):
  """Logistic regression: flatten -> `head`. 410 parameters on MNIST-1D."""

  num_classes: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, features_only: bool = False) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    if features_only:
      return x
    return _head(x, self.num_classes, self.dropout, train)


class MLP(nn.Module):
  """ReLU layers `fc{i}` of `widths`, then `head`. 15,210 parameters on MNIST-1D.

  As in the reference MLPBase, a layer whose width equals the previous one's adds its
  input back (h = h + relu(fc2(h))) when `residual` is set.
  """

  num_classes: int
  widths: Sequence[int] = (100, 100)
  residual: bool = True
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, features_only: bool = False) -> jax.Array:
    h = x.reshape(x.shape[0], -1)
    for i, width in enumerate(self.widths, start=1):
      y = nn.relu(_dense(width, h.shape[-1], f'fc{i}')(h))
      h = h + y if self.residual and i > 1 and h.shape[-1] == width else y
    if features_only:
      return h
    return _head(h, self.num_classes, self.dropout, train)


class CNN1D(nn.Module):
  """ConvBase: `conv{i}` 1D convs (25 channels, kernels 5/3/3, stride 2, padding 1, ReLU),
  flatten, `head`. 40 -> 19 -> 10 -> 5 steps; 5,210 parameters on MNIST-1D.

  Kernels are 3D (k, in, out); the flattened features are position-major (torch's are
  channel-major), a fixed reordering of the head's inputs.
  """

  num_classes: int
  channels: int = 25
  kernel_sizes: Sequence[int] = (5, 3, 3)
  stride: int = 2
  padding: int = 1
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, features_only: bool = False) -> jax.Array:
    h = x.reshape(x.shape[0], -1, x.shape[-1])
    for i, k in enumerate(self.kernel_sizes, start=1):
      fan_in = k * h.shape[-1]
      h = nn.Conv(
          self.channels,
          (k,),
          (self.stride,),
          padding=((self.padding, self.padding),),
          kernel_init=torch_kernel,
          bias_init=torch_uniform(1 / math.sqrt(fan_in)),
          name=f'conv{i}',
      )(h)
      h = nn.relu(h)
    h = h.reshape(h.shape[0], -1)
    if features_only:
      return h
    return _head(h, self.num_classes, self.dropout, train)


class GRU(nn.Module):
  """GRUBase: one GRU layer (`hidden` 6, bidirectional), `head` over the flattened outputs
  of every time step (T x 2 x hidden features). 5,110 parameters on MNIST-1D.

  Built from nn.RNN(nn.GRUCell) (nn.Bidirectional when `bidirectional`); zero initial
  state. Paths: gru/{forward_rnn,backward_rnn}/cell/{ir,iz,in,hr,hz,hn}/{kernel,bias}
  (gru/cell/... when not bidirectional; hr, hz have no bias), head/{kernel,bias}.
  """

  num_classes: int
  hidden: int = 6
  bidirectional: bool = True
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, features_only: bool = False) -> jax.Array:
    h = x.reshape(x.shape[0], -1, x.shape[-1])
    init = torch_uniform(1 / math.sqrt(self.hidden))
    # parent=None: a submodule handed to another one belongs to it and takes its attribute
    # name (gru/forward_rnn/cell/...), instead of hanging off this module.
    cell = lambda: nn.GRUCell(
        self.hidden,
        kernel_init=init,
        recurrent_kernel_init=init,
        bias_init=init,
        parent=None,
        name='cell',
    )
    if self.bidirectional:
      rnn = nn.Bidirectional(nn.RNN(cell(), parent=None), nn.RNN(cell(), parent=None), name='gru')
    else:
      rnn = nn.RNN(cell(), name='gru')
    h = rnn(h)  # [B, T, hidden] or [B, T, 2 hidden] (forward, backward at each step)
    h = h.reshape(h.shape[0], -1)
    if features_only:
      return h
    return _head(h, self.num_classes, self.dropout, train)


LINEAR_SPEC = ModelSpec(
    module=Linear,
    input_kind='sequence',
    blocks=lambda m: Blocks(),
    lora_targets=None,
    no_lora='it has only the head; use linear_probe',
)
MLP_SPEC = ModelSpec(
    module=MLP,
    input_kind='sequence',
    blocks=lambda m: Blocks(body=tuple(f'fc{i}' for i in range(1, len(m.widths) + 1))),
    lora_targets=r'fc\d+/kernel',
    smoke=dict(widths=(16, 16)),
)
CNN1D_SPEC = ModelSpec(
    module=CNN1D,
    input_kind='sequence',
    blocks=lambda m: Blocks(body=tuple(f'conv{i}' for i in range(1, len(m.kernel_sizes) + 1))),
    lora_targets=None,
    no_lora=(
        'its Conv1D kernels are 3D and LoRA adapts 2D Dense and 4D Conv kernels; '
        'use bitfit or partial_ft instead'
    ),
    smoke=dict(channels=4),
)
GRU_SPEC = ModelSpec(
    module=GRU,
    input_kind='sequence',
    blocks=lambda m: Blocks(body=('gru',)),  # one recurrent layer: one block
    lora_targets=r'gru/.*/(i|h)[rzn]/kernel',
    smoke=dict(hidden=2),
)
