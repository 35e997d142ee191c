"""Regenerates the timm and BiT golden files that tests/test_importers.py compares against.

timm needs torchvision, whose wheels here need torch's CUDA build (~5.5 GB), so CI does not
install timm; instead this script, run once in a throwaway virtualenv, builds tiny random-init
models with timm, writes their weights in each source's own layout and records their outputs:

    python3 -m venv /tmp/goldvenv
    /tmp/goldvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm==1.0.31 numpy safetensors
    /tmp/goldvenv/bin/python tests/golden/make_golden.py

Each case is a directory under tests/golden/ with the checkpoint, `io.npz` (`inputs` NHWC
float32 and the reference `logits`) and nothing else. Every tensor (biases, norm scales,
BatchNorm statistics included) is randomised, so a mapping that swaps, skips or mis-lays any
of them changes the outputs. The BiT and big_vision files are written in those sources'
layouts and checked by loading them back with timm's own npz readers (`_load_weights`),
an implementation independent of ours.
"""

import json
import pathlib
from functools import partial

import numpy as np
import timm
import torch
from safetensors.torch import save_file
from timm.layers import GroupNormAct, StdConv2d
from timm.models import resnetv2, vision_transformer

HERE = pathlib.Path(__file__).resolve().parent


def randomise(model: torch.nn.Module, seed: int) -> None:
  """Every parameter and buffer random (variances positive): nothing stays at 0 or 1."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, t in model.state_dict().items():
      if not t.is_floating_point():
        continue
      if name.endswith('running_var'):
        t.copy_(torch.rand(t.shape, generator=g) + 0.5)
      elif name.endswith(('weight', 'gamma')) and t.ndim == 1:  # norm scales around 1
        t.copy_(1.0 + 0.3 * torch.randn(t.shape, generator=g))
      else:
        t.copy_(0.2 * torch.randn(t.shape, generator=g))


def run(model: torch.nn.Module, inputs_nhwc: np.ndarray) -> np.ndarray:
  model.eval()
  with torch.no_grad():
    return model(torch.from_numpy(inputs_nhwc).permute(0, 3, 1, 2)).numpy()


def save_io(case: pathlib.Path, inputs: np.ndarray, logits: np.ndarray) -> None:
  np.savez(case / 'io.npz', inputs=inputs.astype(np.float32), logits=logits.astype(np.float32))


def inputs(seed: int, size: int) -> np.ndarray:
  return np.random.default_rng(seed).normal(size=(2, size, size, 3)).astype(np.float32)


def timm_case(name: str, arch: str, size: int, seed: int, **model_args) -> torch.nn.Module:
  """A timm state dict as safetensors plus the hub's config.json (architecture, model_args)."""
  case = HERE / name
  case.mkdir(exist_ok=True)
  model = timm.create_model(arch, pretrained=False, num_classes=5, **model_args)
  randomise(model, seed)
  x = inputs(seed, size)
  save_file({k: v.contiguous() for k, v in model.state_dict().items()}, case / 'model.safetensors')
  config = {'architecture': arch, 'num_classes': 5, 'model_args': model_args}
  (case / 'config.json').write_text(json.dumps(config, indent=1) + '\n')
  save_io(case, x, run(model, x))
  return model


def bit_case() -> None:
  """A tiny BiT ResNetV2 written as a BiT .npz (HWIO kernels, 'resnet/...' names)."""
  case = HERE / 'bit'
  case.mkdir(exist_ok=True)
  make = lambda: resnetv2.ResNetV2(
      layers=[2, 1],
      channels=(32, 64),
      stem_chs=8,
      stem_type='fixed',
      conv_layer=partial(StdConv2d, eps=1e-8),
      norm_layer=partial(GroupNormAct, num_groups=8),
      num_classes=5,
  )
  model = make()
  randomise(model, 3)
  hwio = lambda t: t.detach().numpy().transpose(2, 3, 1, 0) if t.ndim == 4 else t.detach().numpy()
  w = {
      'resnet/root_block/standardized_conv2d/kernel': hwio(model.stem.conv.weight),
      'resnet/group_norm/gamma': hwio(model.norm.weight),
      'resnet/group_norm/beta': hwio(model.norm.bias),
      'resnet/head/conv2d/kernel': hwio(model.head.fc.weight),
      'resnet/head/conv2d/bias': hwio(model.head.fc.bias),
  }
  for i, stage in enumerate(model.stages):
    for j, block in enumerate(stage.blocks):
      p = f'resnet/block{i + 1}/unit{j + 1:02d}/'
      for r, unit in enumerate('abc', start=1):
        w[f'{p}{unit}/standardized_conv2d/kernel'] = hwio(getattr(block, f'conv{r}').weight)
        w[f'{p}{unit}/group_norm/gamma'] = hwio(getattr(block, f'norm{r}').weight)
        w[f'{p}{unit}/group_norm/beta'] = hwio(getattr(block, f'norm{r}').bias)
      if block.downsample is not None:
        w[f'{p}a/proj/standardized_conv2d/kernel'] = hwio(block.downsample.conv.weight)
  np.savez(case / 'bit.npz', **w)
  x = inputs(3, 32)
  want = run(model, x)
  check = make()
  resnetv2._load_weights(check, str(case / 'bit.npz'))  # timm's own BiT reader
  np.testing.assert_allclose(run(check, x), want, rtol=0, atol=0)
  save_io(case, x, want)


def big_vision_case() -> None:
  """A tiny big_vision ViT .npz: `params/` prefix, [D, heads, head_dim] attention kernels,
  position embedding without the cls row, tanh GELU (flax's nn.gelu)."""
  case = HERE / 'big_vision'
  case.mkdir(exist_ok=True)
  make = lambda: vision_transformer.VisionTransformer(
      img_size=32,
      patch_size=8,
      embed_dim=32,
      depth=2,
      num_heads=2,
      num_classes=5,
      no_embed_class=True,  # big_vision adds positions before prepending cls
      act_layer='gelu_tanh',
  )
  model = make()
  randomise(model, 4)
  n = lambda t: t.detach().numpy()
  d, h = 32, 2
  w = {
      'params/embedding/kernel': n(model.patch_embed.proj.weight).transpose(2, 3, 1, 0),
      'params/embedding/bias': n(model.patch_embed.proj.bias),
      'params/cls': n(model.cls_token),
      'params/pos_embedding': n(model.pos_embed),
      'params/Transformer/encoder_norm/scale': n(model.norm.weight),
      'params/Transformer/encoder_norm/bias': n(model.norm.bias),
      'params/head/kernel': n(model.head.weight).T,
      'params/head/bias': n(model.head.bias),
  }
  for i, block in enumerate(model.blocks):
    p = f'params/Transformer/encoderblock_{i}/'
    qkv_w, qkv_b = n(block.attn.qkv.weight), n(block.attn.qkv.bias)
    for k, name in enumerate(('query', 'key', 'value')):
      w[f'{p}MultiHeadDotProductAttention_0/{name}/kernel'] = qkv_w[k * d : (k + 1) * d].T.reshape(
          d, h, d // h
      )
      w[f'{p}MultiHeadDotProductAttention_0/{name}/bias'] = qkv_b[k * d : (k + 1) * d].reshape(
          h, d // h
      )
    w[f'{p}MultiHeadDotProductAttention_0/out/kernel'] = n(block.attn.proj.weight).T.reshape(
        h, d // h, d
    )
    w[f'{p}MultiHeadDotProductAttention_0/out/bias'] = n(block.attn.proj.bias)
    for r, norm in enumerate((block.norm1, block.norm2)):
      w[f'{p}LayerNorm_{r}/scale'] = n(norm.weight)
      w[f'{p}LayerNorm_{r}/bias'] = n(norm.bias)
    for r, fc in enumerate((block.mlp.fc1, block.mlp.fc2)):
      w[f'{p}MlpBlock_0/Dense_{r}/kernel'] = n(fc.weight).T
      w[f'{p}MlpBlock_0/Dense_{r}/bias'] = n(fc.bias)
  np.savez(case / 'vit.npz', **w)
  x = inputs(4, 32)
  want = run(model, x)
  check = make()
  vision_transformer._load_weights(check, str(case / 'vit.npz'))  # timm's own npz reader
  np.testing.assert_allclose(run(check, x), want, rtol=1e-6, atol=1e-6)
  save_io(case, x, want)


def main() -> None:
  torch.manual_seed(0)
  timm_case(
      'timm_vit',
      'vit_tiny_patch16_224',
      32,
      1,
      img_size=32,
      patch_size=8,
      embed_dim=32,
      depth=2,
      num_heads=2,
  )
  # ResNet-50's structure (bottlenecks, strided 3x3, projection shortcuts) at a tiny width;
  # 48-pixel inputs, where torch's stem padding differs from flax's 'SAME'.
  small = dict(channels=(4, 8, 16, 32), stem_width=8)
  timm_case('timm_resnet50', 'resnet50', 48, 2, layers=(2, 1, 1, 1), **small)
  timm_case('timm_resnet18', 'resnet18', 48, 5, layers=(1, 1, 1, 1), **small)
  bit_case()
  big_vision_case()
  for f in sorted(HERE.rglob('*')):
    if f.is_file() and f.suffix != '.py':
      print(f'{f.relative_to(HERE)}: {f.stat().st_size:,} bytes')


if __name__ == '__main__':
  main()
