"""Multi-GPU generation: torchrun launch, process groups, tensor parallelism, sample sharding.

The model code (``cosmos_cli.models``) knows nothing of this package: tensor parallelism is a rewrite
applied to a plain :class:`~cosmos_cli.models.ar.transformer.Transformer` from outside
(:mod:`cosmos_cli.parallel.tp`), data parallelism is a pure split of the samples
(:mod:`cosmos_cli.parallel.data`), and the process groups come from the torchrun environment
(:mod:`cosmos_cli.parallel.dist`). :mod:`cosmos_cli.parallel.launch` builds the torchrun command line
and turns a failing rank into one error message. Submodules import torch (and ``tp`` megatron-core),
so import them where they are needed, not here.
"""
