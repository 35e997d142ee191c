"""jaxadapt: scratch vs transfer vs fine-tune vs PEFT vs distillation, measured, in JAX/Flax."""

__version__ = '0.1.0'
