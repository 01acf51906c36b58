"""The keyword blocklist: each of NVIDIA's matching rules on the tiny word lists, via the stage and alone."""

from __future__ import annotations

import pytest

from cosmos_cli.errors import GuardrailBlocked
from cosmos_cli.guardrail.blocklist import Blocklist, exact_match, to_ascii
from cosmos_cli.stages.guardrail import TextGuardrailStage
from cosmos_cli.stages.standin_files.blocklist import write_blocklist
from cosmos_cli.stages.standin_files.sizes import TINY_GUARDRAIL
from cosmos_cli.tiny.guardrail import write_guardrail_standins


@pytest.fixture(scope="module")
def guardrail_dir(tmp_path_factory):
    return write_guardrail_standins(tmp_path_factory.mktemp("ckpt"), TINY_GUARDRAIL, parts=("blocklist",))


@pytest.fixture(scope="module")
def stage(guardrail_dir):
    stage = TextGuardrailStage(guardrail_dir, mode="blocklist")
    stage.load("cpu")
    return stage


@pytest.fixture(scope="module")
def blocklist(guardrail_dir):
    return Blocklist(guardrail_dir / "blocklist")


def test_custom_word_blocks_with_exit_code_3(stage):
    with pytest.raises(GuardrailBlocked) as err:
        stage.check("a forbiddenword scene")
    assert err.value.exit_code == 3
    assert str(err.value) == (
        "guardrail blocked the prompt "
        "(blocklist: Prompt blocked by censorship: Censored Prompt: a **** scene)"
    )


@pytest.mark.parametrize(
    "prompt",
    [
        "A robot arm picks up a red cup and places it on a wooden table.",
        "A video recorded from a moving vehicle's perspective, capturing roads and buildings.",
        "Rate this 5* hotel: nothing forbidden here, just words.",
    ],
)
def test_clean_prompts_pass(stage, prompt):
    stage.check(prompt)


def test_blocklist_mode_loads_no_model(stage):
    assert stage.modules() == []


def test_lemmatisation_catches_inflections(blocklist):
    prompt = "two forbiddenwords here"
    assert blocklist.censor(prompt) is None  # whole-word fuzzy matching alone misses the plural
    assert blocklist.lemmatise(prompt) == "two forbiddenword here"
    safe, message = blocklist.is_safe(prompt)
    assert not safe and message.endswith("two **** here")


@pytest.mark.parametrize(
    "prompt", ["a f0rbiddenw0rd scene", "a FORBIDDENWORD scene", "a forb1ddenword, again"]
)
def test_profanity_fuzzy_matching(blocklist, prompt):
    safe, message = blocklist.is_safe(prompt)
    assert not safe and "censorship" in message


def test_whitelist_exempts_a_listed_word(blocklist, tmp_path):
    assert blocklist.is_safe("a harmlessword scene") == (True, "Input is safe")
    write_blocklist(tmp_path / "blocklist")
    (tmp_path / "blocklist" / "whitelist" / "list.txt").write_text("")
    without_whitelist = Blocklist(tmp_path / "blocklist")
    assert not without_whitelist.is_safe("a harmlessword scene")[0]


def test_exact_match_is_whole_word_and_whitespace_insensitive(blocklist):
    safe, message = blocklist.is_safe("well badphrase here")
    assert not safe and message.startswith("Prompt blocked by exact match blocklist")
    assert not blocklist.is_safe("say TWO \t  words now")[0]
    assert blocklist.is_safe("xbadphrasex is not the word")[0]


def test_partial_match_catches_a_near_miss(blocklist):
    safe, message = blocklist.is_safe("well badphrasse here")
    assert not safe and message.startswith("Prompt blocked by partial match blocklist")
    assert message.endswith("Partial Match Word: badphrase")


def test_partial_match_rules():
    # entries shorter than 4 characters only match exactly; longer ones tolerate half a letter of difference
    assert exact_match("an abc scene", ["abc"]) is not None
    assert exact_match("an abd scene", ["abc"]) is None
    assert exact_match("a sunflowers field", ["sunflower"]) is not None
    assert exact_match("a sunflowr field", ["sunflower"]) is None


def test_empty_prompt_is_blocked(blocklist):
    assert blocklist.is_safe("") == (False, "Input is empty")


def test_non_ascii_is_folded_before_matching(blocklist):
    assert to_ascii("caf\u00e9\u00e9 ok") == "caf  ok"
    assert not blocklist.is_safe("a forbiddenword\u2122 scene")[0]


def test_blank_lines_in_lists_are_ignored(tmp_path):
    write_blocklist(tmp_path / "blocklist")
    (tmp_path / "blocklist" / "exact_match" / "more.txt").write_text("\n\nzzz\n\n")
    blocklist = Blocklist(tmp_path / "blocklist")
    assert blocklist.exact_match_words[-1] == "zzz"
    assert blocklist.is_safe("an ordinary prompt")[0]


def test_off_mode_checks_nothing(tmp_path):
    stage = TextGuardrailStage(tmp_path / "absent", mode="off")
    stage.load("cpu")
    stage.check("a forbiddenword scene")


def test_check_before_load_is_a_programming_error(guardrail_dir):
    with pytest.raises(RuntimeError):
        TextGuardrailStage(guardrail_dir, mode="blocklist").check("hello")
