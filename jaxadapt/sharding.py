"""Device mesh and shardings: batch over ('data', 'fsdp'), parameters by rules.

jax.jit with NamedSharding on a Mesh is the current form of pjit; the step
function is written once for one device and the shardings say how XLA spreads
it. Parameters are replicated unless `mesh.param_rules` shard them over
'fsdp' (FSDP); optimizer state follows its parameter.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jaxadapt.errors import UserError


class MeshError(UserError):
  """A mesh or batch size that the devices cannot realise."""


BATCH_AXES = ('data', 'fsdp')


def make_mesh(mesh_cfg: ml_collections.ConfigDict, devices=None) -> Mesh:
  """A ('data', 'fsdp') mesh; one size may be -1 meaning 'all remaining devices'."""
  devices = np.asarray(devices if devices is not None else jax.devices())
  sizes = {'data': mesh_cfg.data, 'fsdp': mesh_cfg.fsdp}
  known = int(np.prod([s for s in sizes.values() if s != -1]))
  if list(sizes.values()).count(-1) > 1:
    raise MeshError('mesh: at most one of mesh.data, mesh.fsdp may be -1')
  if devices.size % known:
    raise MeshError(
        f'mesh: {devices.size} devices cannot be split into data={mesh_cfg.data} '
        f'x fsdp={mesh_cfg.fsdp}'
    )
  sizes = {k: (devices.size // known if v == -1 else v) for k, v in sizes.items()}
  if sizes['data'] * sizes['fsdp'] != devices.size:
    raise MeshError(
        f"mesh: data={sizes['data']} x fsdp={sizes['fsdp']} != {devices.size} devices; "
        f'set one of them to -1'
    )
  return Mesh(devices.reshape(sizes['data'], sizes['fsdp']), BATCH_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over every device of the mesh."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh, what: str = 'batch_size') -> None:
  """The global batch must split evenly over devices (and hence processes)."""
  n = mesh.devices.size
  if batch_size % n:
    lower, upper = batch_size // n * n, (batch_size // n + 1) * n
    raise MeshError(
        f'{what}={batch_size} is not divisible by the {n} devices; '
        f'use {lower or upper} or {upper} (or change mesh.data/mesh.fsdp)'
    )


def global_batch(local: dict, mesh: Mesh) -> dict:
  """Assembles process-local numpy arrays into global jax.Arrays on the mesh."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local
  )


# Leaves smaller than this stay replicated under 'fsdp': splitting a bias across devices
# saves nothing and costs a gather every step.
MIN_SHARD_SIZE = 4096


def param_specs(shapes: dict[str, tuple[int, ...]], rules, mesh: Mesh) -> dict[str, P]:
  """PartitionSpec per parameter path from `mesh.param_rules` (first match wins).

  Rule values: 'replicate'; 'fsdp' (split the largest dimension that the fsdp axis
  divides, replicate if none does or the leaf is small); or an explicit tuple such as
  ('fsdp', None) used as the PartitionSpec.
  """
  from jaxadapt import path_rules  # Local: pure Python, sharding is imported early.

  decided = path_rules.match(rules, list(shapes), 'mesh.param_rules')
  n = mesh.shape['fsdp']
  specs = {}
  for path, value in decided.items():
    shape = shapes[path]
    if value in (None, 'replicate'):
      specs[path] = P()
    elif value == 'fsdp':
      dims = sorted(range(len(shape)), key=lambda d: -shape[d])
      dim = next((d for d in dims if shape[d] % n == 0), None)
      if dim is None or n == 1 or int(np.prod(shape)) < MIN_SHARD_SIZE:
        specs[path] = P()
      else:
        specs[path] = P(*[('fsdp' if d == dim else None) for d in range(len(shape))])
    elif isinstance(value, (tuple, list)):
      if len(value) > len(shape):
        raise MeshError(
            f"mesh.param_rules: spec {tuple(value)} for '{path}' has more entries "
            f'than its {len(shape)} dimensions'
        )
      specs[path] = P(*value)
    else:
      raise MeshError(
          f"mesh.param_rules: bad value {value!r} for '{path}'; use 'replicate', "
          f"'fsdp' or a PartitionSpec tuple such as ('fsdp', None)"
      )
  return specs


def tree_shardings(tree, specs: dict[str, P], shapes: dict[str, tuple[int, ...]], mesh: Mesh):
  """NamedShardings for any pytree whose leaves sit under parameter paths.

  Parameters map to their own spec; optimizer-state leaves (Adam's mu and nu are
  parameter-shaped trees nested inside optax states) follow the parameter whose path
  ends their key path and whose shape they share; everything else is replicated.
  """

  def sharding_of(key_path, leaf):
    keys = [k.key for k in key_path if isinstance(k, jax.tree_util.DictKey)]
    for start in range(len(keys)):
      path = '/'.join(str(k) for k in keys[start:])
      if path in specs and tuple(shapes[path]) == tuple(getattr(leaf, 'shape', ())):
        return NamedSharding(mesh, specs[path])
    return NamedSharding(mesh, P())

  return jax.tree_util.tree_map_with_path(sharding_of, tree)


def plan(params, rules, mesh: Mesh):
  """(NamedShardings for `params`, {path: PartitionSpec}, {path: shape}) from the rules.

  `params` may be abstract (ShapeDtypeStructs): nothing is allocated.
  """
  from jaxadapt import param_tree

  shapes = {p: tuple(v.shape) for p, v in param_tree.flatten(params).items()}
  specs = param_specs(shapes, rules, mesh)
  return tree_shardings(params, specs, shapes, mesh), specs, shapes


def shard_params(params, rules, mesh: Mesh):
  """(params placed by the rules, {path: PartitionSpec}, {path: shape})."""
  shardings, specs, shapes = plan(params, rules, mesh)
  return jax.device_put(params, shardings), specs, shapes
