"""NeMo 2 checkpoints of the Cosmos AR models: find, read (torch alone), map to our names, write back.

``layout`` finds the folder and refuses what we cannot read, ``dist_reader`` reads regions of the
torch_dist tensors, ``mapping`` holds the key mapping with its transforms (spec ``nemo.md`` section 2),
``config`` turns ``context/model.yaml`` and the tensor shapes into our :class:`ModelArgs`, ``state``
gives the model's state dict (lazy for tensor-parallel ranks) and ``convert`` writes either format.
"""
