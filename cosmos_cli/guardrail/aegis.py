"""Aegis: LlamaGuard-7b with NVIDIA's Aegis-Defensive LoRA adapter, asked whether a prompt is safe.

Same model, prompt, tokenisation (no BOS: the prompt starts with ``[INST]``), 100 new tokens and verdict rule
as NVIDIA's ``Aegis.filter_aegis_output``; bf16 as there. Decoding is pinned to greedy so that the verdict
cannot depend on a sampling setting in ``generation_config.json``. Errors propagate: the stage turns them
into a block (NVIDIA answers "safe" when the check crashes).
"""

from __future__ import annotations

import warnings

import torch

from cosmos_cli.errors import ModelNotDownloaded
from cosmos_cli.guardrail.aegis_policy import block_reason, is_unsafe_verdict, moderation_prompt
from cosmos_cli.guardrail.hf import require_all_weights
from cosmos_cli.guardrail.layout import GuardrailLayout
from cosmos_cli.stages.text_encoder import quiet_transformers

MAX_NEW_TOKENS = 100
DTYPE = torch.bfloat16


class Aegis:
    """The LLM prompt check; ``model`` is a ``PeftModel`` wrapping LlamaGuard-7b."""

    def __init__(self, model: torch.nn.Module, tokenizer) -> None:
        self.model = model
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, layout: GuardrailLayout, device: torch.device) -> Aegis:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        base_dir, adapter_dir = layout.llamaguard_snapshot(), layout.aegis_adapter_snapshot()
        if base_dir is None or adapter_dir is None:
            raise ModelNotDownloaded(
                f"Aegis files not found under {layout.aegis_cache}",
                f"run: cosmos-cli download 5b-video2world --checkpoint-dir {layout.root.parent}",
            )
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(base_dir)
            base, info = AutoModelForCausalLM.from_pretrained(base_dir, dtype=DTYPE, output_loading_info=True)
            require_all_weights(info, base_dir, "LlamaGuard-7b")
            with warnings.catch_warnings():  # peft's deprecation notices are not the user's business
                warnings.simplefilter("ignore", FutureWarning)
                model = PeftModel.from_pretrained(base, adapter_dir)
        model.to(device, dtype=DTYPE).eval()
        return cls(model, tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def moderate(self, prompt: str) -> str:
        """The model's raw answer (``safe``, or ``unsafe`` and a line of ``O<n>`` codes)."""
        inputs = self.tokenizer([moderation_prompt(prompt)], add_special_tokens=False, return_tensors="pt")
        inputs = inputs.to(self.device)
        with quiet_transformers():
            output = self.model.generate(
                **inputs,
                max_new_tokens=MAX_NEW_TOKENS,
                do_sample=False,
                pad_token_id=self.tokenizer.eos_token_id,
            )
        return self.tokenizer.decode(output[0][inputs["input_ids"].shape[-1] :], skip_special_tokens=True)

    def is_safe(self, prompt: str) -> tuple[bool, str]:
        answer = self.moderate(prompt)
        if is_unsafe_verdict(answer):
            return False, block_reason(answer)
        return True, ""
