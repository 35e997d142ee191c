"""Checks `export --format timm` against timm itself (not run by CI: timm needs a CUDA torch
here, see make_golden.py). Two steps, in two environments:

    # jaxadapt's venv: export the golden timm models (head changed, as if fine-tuned) and,
    # optionally, trained workdirs; record jaxadapt's logits on random inputs
    .venv/bin/python tests/golden/check_timm_export.py write /tmp/timm_export [WORKDIR ...]
    # timm's venv: timm.create_model('local-dir:<export>', pretrained=True), same inputs
    /tmp/goldvenv/bin/python tests/golden/check_timm_export.py check /tmp/timm_export

Each export directory holds model.safetensors, config.json and io.npz (inputs NHWC,
jaxadapt's logits); `check` prints max |logit difference| per export and fails above 1e-4.
"""

import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
TOL = 1e-4


def write(root: pathlib.Path, workdirs: list[str]) -> None:
  import json

  sys.path.insert(0, str(HERE.parents[1]))
  from jaxadapt import checkpoint, importers, models, param_tree
  from jaxadapt.importers import export

  def forward(model, kwargs, params, x):
    net = models.build_model(model, params['head/kernel'].shape[1], **kwargs)
    return np.asarray(net.apply({'params': param_tree.unflatten(params)}, x))

  for case in ('timm_vit', 'timm_resnet18', 'timm_resnet50'):
    checkpoint_ = f'timm:{HERE / case}/model.safetensors'
    plan, params = importers.load(checkpoint_)
    params['head/bias'] = params['head/bias'] + 0.5  # as if fine-tuned
    x = np.load(HERE / case / 'io.npz')['inputs']
    out = root / case
    export.export_params(plan.model, plan.kwargs, params, str(out), 'timm', {})
    np.savez(out / 'io.npz', inputs=x, logits=forward(plan.model, plan.kwargs, params, x))
  for wd in map(pathlib.Path, workdirs):
    config = json.loads((wd / 'config.json').read_text())
    out = root / wd.name
    export.export(str(wd), str(out), 'timm')
    _, back = importers.load(f'timm:{out}/model.safetensors')  # the merged parameters
    size = json.loads((out / 'config.json').read_text())['pretrained_cfg']['input_size']
    x = np.random.default_rng(0).normal(size=(2, size[1], size[2], size[0])).astype(np.float32)
    model = config['model']
    np.savez(out / 'io.npz', inputs=x, logits=forward(model['name'], model['kwargs'], back, x))
  print(f'wrote {sorted(p.name for p in root.iterdir())} under {root}')


def check(root: pathlib.Path) -> None:
  import timm
  import torch

  worst = 0.0
  for case in sorted(p for p in root.iterdir() if (p / 'io.npz').exists()):
    io = np.load(case / 'io.npz')
    model = timm.create_model(f'local-dir:{case}', pretrained=True).eval()
    with torch.no_grad():
      got = model(torch.from_numpy(io['inputs']).permute(0, 3, 1, 2)).numpy()
    diff = float(np.abs(got - io['logits']).max())
    worst = max(worst, diff)
    print(f'{case.name}: {type(model).__name__}, max |logit diff| {diff:.2e}')
  assert worst <= TOL, worst


if __name__ == '__main__':
  step, root = sys.argv[1], pathlib.Path(sys.argv[2])
  write(root, sys.argv[3:]) if step == 'write' else check(root)
