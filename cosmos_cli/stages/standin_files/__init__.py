"""Small stand-ins for the parts of a release that cannot be rebuilt at their real shape, with the released
files' interface: the DV8x16x16 and CV8x8x8 tokenizers (NVIDIA ships them only as TorchScript), a T5
tokenizer, the guardrail's word lists, and the network sizes that fit a tiny AR model.

Production code: the ``--load-format dummy`` stages (:mod:`cosmos_cli.stages.standins`) write and read these.
The tiny test checkpoints (:mod:`cosmos_cli.tiny`) build on them too, never the other way round.
"""
