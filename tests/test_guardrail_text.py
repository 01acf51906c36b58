"""The prompt stage in ``full`` mode: blocklist, then Aegis (tiny LlamaGuard + LoRA adapter, Hub layout)."""

from __future__ import annotations

import pytest

from cosmos_cli.errors import CheckpointMismatch, GuardrailBlocked
from cosmos_cli.guardrail.aegis_policy import (
    UNSAFE_CATEGORIES,
    block_reason,
    is_unsafe_verdict,
    moderation_prompt,
)
from cosmos_cli.stages.guardrail import TextGuardrailStage
from cosmos_cli.stages.standin_files.sizes import TINY_GUARDRAIL
from cosmos_cli.tiny.guardrail import write_guardrail_standins

SAFE_PROMPT = "A robot arm picks up a red cup and places it on a wooden table."


def _text_guardrail(tmp_path_factory, answer: str):
    root = tmp_path_factory.mktemp(f"llm-{answer}")
    return write_guardrail_standins(root, TINY_GUARDRAIL, llm_answer=answer, parts=("blocklist", "aegis"))


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """One loaded stage per forced verdict."""
    stages = {}
    for answer in ("safe", "unsafe", "raise"):
        stage = TextGuardrailStage(_text_guardrail(tmp_path_factory, answer), mode="full")
        stage.load("cpu")
        stages[answer] = stage
    return stages


def test_safe_verdict_passes(loaded):
    stage = loaded["safe"]
    stage.check(SAFE_PROMPT)
    assert len(stage.modules()) == 1 and stage.param_bytes() > 0
    assert stage._aegis.moderate(SAFE_PROMPT).split()[0] == "safe"


def test_unsafe_verdict_blocks(loaded):
    with pytest.raises(GuardrailBlocked) as err:
        loaded["unsafe"].check(SAFE_PROMPT)
    assert err.value.exit_code == 3
    assert str(err.value) == "guardrail blocked the prompt (aegis: Prompt blocked by Aegis.)"


def test_blocklist_runs_first(loaded):
    with pytest.raises(GuardrailBlocked, match=r"\(blocklist: "):
        loaded["unsafe"].check("a forbiddenword scene")


def test_a_crashing_llm_check_fails_closed(loaded):
    with pytest.raises(GuardrailBlocked) as err:
        loaded["raise"].check(SAFE_PROMPT)
    assert err.value.exit_code == 3
    assert str(err.value).startswith("guardrail blocked the prompt (aegis: check failed: IndexError")
    assert "\n" not in str(err.value)


def test_unload_then_check_is_a_programming_error(tmp_path_factory):
    stage = TextGuardrailStage(_text_guardrail(tmp_path_factory, "safe"), mode="full")
    stage.load("cpu")
    stage.unload()
    assert stage.modules() == []
    with pytest.raises(RuntimeError):
        stage.check(SAFE_PROMPT)


def test_corrupted_adapter_is_a_load_error(tmp_path_factory):
    folder = _text_guardrail(tmp_path_factory, "safe")
    for weights in folder.glob("aegis/models--nvidia--*/snapshots/*/adapter_model.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointMismatch, match="cannot load the guardrail Aegis model"):
        TextGuardrailStage(folder, mode="full").load("cpu")


def test_moderation_prompt_matches_nvidias_template():
    prompt = moderation_prompt("a cat")
    assert prompt.startswith("[INST] Task: Check if there is unsafe content in 'User' messages")
    assert "\n\n        <BEGIN UNSAFE CONTENT CATEGORIES>\n        O1: Violence.\nShould not\n" in prompt
    assert "in the reader.\nCan\n" in prompt
    assert (
        "recipient\n\n        <END UNSAFE CONTENT CATEGORIES>\n\n        <BEGIN CONVERSATION>\n\n" in prompt
    )
    assert "        User: a cat\n\n<END CONVERSATION>\n\n        Provide your safety assessment" in prompt
    assert prompt.endswith("a comma-separated list of violated categories. [/INST]")
    assert [c.code for c in UNSAFE_CATEGORIES] == [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("unsafe\nO3", "criminal_planning: This prompt is blocked due to the presence of criminal planning"),
        ("unsafe\nO10", "harassment: "),  # NVIDIA's list-position lookup would say "threat" here
        ("unsafe\nO1,O5", "violence: "),
        ("unsafe\nO9", "Prompt blocked by Aegis."),
        ("unsafe", "Prompt blocked by Aegis."),
    ],
)
def test_block_reason(answer, reason):
    assert is_unsafe_verdict(answer)
    assert block_reason(answer).startswith(reason)


def test_verdict_rule():
    assert not is_unsafe_verdict("safe")
    assert is_unsafe_verdict(" UNSAFE\nO2")
