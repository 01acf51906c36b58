"""The plan reads downloaded Hugging Face configs through transformers' and peft's own config classes.

The folders hold configs at the released sizes, written by ``save_pretrained`` of the same classes NVIDIA's
models use (a whole-model ``SiglipConfig`` as google/siglip-so400m-patch14-384 ships, a Llama config without
``num_key_value_heads`` as LlamaGuard-7b's, a peft ``LoraConfig`` with a rank other than the assumed one), in
the Hugging Face cache layout the guardrail folder uses. No network builds run: only the shape is checked.
"""

from __future__ import annotations

import json
from pathlib import Path

from cosmos_cli.guardrail.layout import (
    AEGIS_ADAPTER_REPO,
    LLAMAGUARD_REPO,
    SIGLIP_REPO,
    GuardrailLayout,
    hub_cache_folder,
)
from cosmos_cli.models.released import GUARDRAIL, T5_11B
from cosmos_cli.offload import plan

AR_DIR = "Cosmos-1.0-Autoregressive-5B-Video2World"


def _snapshot(cache: Path, repo: str) -> Path:
    folder = hub_cache_folder(cache, repo) / "snapshots" / "0123abcd"
    folder.mkdir(parents=True)
    return folder


def test_configs_on_disk_are_read_by_their_library_classes(tmp_path):
    from peft import LoraConfig
    from transformers import LlamaConfig, SiglipConfig, T5Config

    T5Config(d_model=64, d_ff=256, num_layers=3, num_heads=2, d_kv=32, vocab_size=1000).save_pretrained(
        tmp_path / "google-t5/t5-11b"
    )
    guard = GuardrailLayout(tmp_path / "Cosmos-1.0-Guardrail")
    llama_dir = _snapshot(guard.aegis_cache, LLAMAGUARD_REPO)
    LlamaConfig(**GUARDRAIL.llama).save_pretrained(llama_dir)
    llama_file = llama_dir / "config.json"
    data = json.loads(llama_file.read_text())
    del data["num_key_value_heads"]  # LlamaGuard-7b's config predates the field
    llama_file.write_text(json.dumps(data))
    SiglipConfig(vision_config=GUARDRAIL.siglip_vision, text_config=GUARDRAIL.siglip_text).save_pretrained(
        _snapshot(guard.video_filter_dir, SIGLIP_REPO)
    )
    adapter = _snapshot(guard.aegis_cache, AEGIS_ADAPTER_REPO)
    LoraConfig(r=8, target_modules=["v_proj", "q_proj"], task_type="CAUSAL_LM").save_pretrained(adapter)

    shape = plan.shape_from_checkpoints(tmp_path, AR_DIR)
    assert shape.t5_config["d_model"] == 64 and shape.t5_config["num_layers"] == 3
    assert shape.t5_config["relative_attention_num_buckets"] == 32  # T5Config's default: the file leaves it out
    assert shape.llama_config == {**GUARDRAIL.llama, "num_key_value_heads": 32}  # the class's fallback: MHA
    assert shape.siglip_config == {**GUARDRAIL.siglip_vision, "num_channels": 3}  # the vision part only
    assert shape.lora == {"r": 8, "target_modules": ["q_proj", "v_proj"]}
    # The configs read from disk give the same sizes as the released ones they equal.
    released = plan.shape_from_checkpoints(tmp_path / "nothing", AR_DIR)
    assert released.llama_config == GUARDRAIL.llama and released.t5_config == T5_11B
    assert plan.video_guardrail_size(shape).weights == plan.video_guardrail_size(released).weights
