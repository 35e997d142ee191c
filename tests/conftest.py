"""Test set-up: 8 simulated CPU devices (set before jax is imported anywhere)."""

import atexit
import os
import shutil
import tempfile

os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
).strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

# One XLA compilation cache for the session (the CLI reads JAXADAPT_XLA_CACHE): the
# many small runs of the suite compile identical programs, and repeats become free.
_cache = tempfile.mkdtemp(prefix='jaxadapt-test-xla-')
atexit.register(shutil.rmtree, _cache, True)
os.environ['JAXADAPT_XLA_CACHE'] = _cache

import jax  # noqa: E402  (after XLA_FLAGS, on purpose)
import pytest  # noqa: E402

from jaxadapt import host  # noqa: E402

host.keep_freed_memory()  # as the CLI does: XLA's per-step buffers reuse the same pages

jax.config.update('jax_compilation_cache_dir', _cache)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


@pytest.fixture(scope='session')
def mnist1d_data_dir(tmp_path_factory):
  """A TFDS data_dir of the session's own, where MNIST-1D is generated once."""
  return str(tmp_path_factory.mktemp('mnist1d_tfds'))
