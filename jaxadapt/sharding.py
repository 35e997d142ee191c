"""Device mesh and shardings: batch over ('data', 'fsdp'), parameters replicated.

jax.jit with NamedSharding on a Mesh is the current form of pjit; the step
function is written once for one device and the shardings say how XLA spreads
it. Parameters are replicated here; rule-driven FSDP sharding of parameters
plugs in through `param_sharding`.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ('data', 'fsdp')


def make_mesh(mesh_cfg: ml_collections.ConfigDict, devices=None) -> Mesh:
  """A ('data', 'fsdp') mesh; one size may be -1 meaning 'all remaining devices'."""
  devices = np.asarray(devices if devices is not None else jax.devices())
  sizes = {'data': mesh_cfg.data, 'fsdp': mesh_cfg.fsdp}
  known = int(np.prod([s for s in sizes.values() if s != -1]))
  if list(sizes.values()).count(-1) > 1:
    raise ValueError("mesh: at most one of mesh.data, mesh.fsdp may be -1")
  if devices.size % known:
    raise ValueError(f"mesh: {devices.size} devices cannot be split into data={mesh_cfg.data} "
                     f"x fsdp={mesh_cfg.fsdp}")
  sizes = {k: (devices.size // known if v == -1 else v) for k, v in sizes.items()}
  if sizes['data'] * sizes['fsdp'] != devices.size:
    raise ValueError(f"mesh: data={sizes['data']} x fsdp={sizes['fsdp']} != {devices.size} devices; "
                     f"set one of them to -1")
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
    raise ValueError(f"{what}={batch_size} is not divisible by the {n} devices; "
                     f"use {lower or upper} or {upper} (or change mesh.data/mesh.fsdp)")


def global_batch(local: dict, mesh: Mesh) -> dict:
  """Assembles process-local numpy arrays into global jax.Arrays on the mesh."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local)
