"""The keyword blocklist on the prompt, with NVIDIA's matching rules (cosmos1 ``guardrail/blocklist``).

Four rules run in this order, each able to block:

1. *censor*: ``better_profanity`` fuzzy matching (letter swaps such as ``0`` for ``o``, multi-word entries)
   against the ``custom/`` lists, except words in the ``whitelist/`` lists, on the ASCII-folded prompt;
2. the same on the prompt after nltk tokenisation and WordNet lemmatisation (``forbiddenwords`` ->
   ``forbiddenword``), so plurals and inflections do not slip through;
3. *exact match*: whole-word, case-insensitive, whitespace-insensitive search for each ``exact_match/`` entry;
4. *partial match*: for entries of at least 4 characters, any run of as many prompt words whose difflib
   similarity is within 0.5 letters of the entry.

Differences from NVIDIA, all on malformed input: blank lines in the word lists are ignored (NVIDIA turns one
into an empty pattern that blocks every prompt), unreadable list files raise instead of being skipped, and
the whitelist pass does not index past the end of a censored prompt that has fewer words than the input.
"""

from __future__ import annotations

import re
import string
from difflib import SequenceMatcher
from pathlib import Path

from better_profanity import Profanity

PARTIAL_MATCH_MIN_CHARS = 4
PARTIAL_MATCH_LETTER_COUNT = 0.5

_CENSOR = "\u2588"
"""better_profanity's replacement character. Prompts are folded to ASCII first, so it cannot come from the
user (NVIDIA uses an ANSI-coloured ``*`` for the same reason: a literal ``*`` in a prompt must not block)."""


def read_word_list(folder: Path) -> list[str]:
    """Every non-blank line of every file in ``folder`` (sorted by name, so messages are reproducible)."""
    words: list[str] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        words.extend(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return words


def to_ascii(prompt: str) -> str:
    """Replace each run of non-ASCII characters by one space (NVIDIA's ``to_ascii``)."""
    return re.sub(r"[^\x00-\x7F]+", " ", prompt)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def partial_match(normalised_prompt: str, normalised_word: str, letter_count: float) -> bool:
    """True when a run of prompt words, as many as the entry has, is within ``letter_count`` letters of it."""
    prompt_words = normalised_prompt.split()
    n_words = len(normalised_word.split())
    threshold = (len(normalised_word) - float(letter_count)) / float(len(normalised_word))
    for start in range(len(prompt_words) - n_words + 1):
        candidate = " ".join(prompt_words[start : start + n_words])
        if SequenceMatcher(None, candidate, normalised_word).ratio() >= threshold:
            return True
    return False


def exact_match(
    prompt: str,
    words: list[str],
    min_chars: int = PARTIAL_MATCH_MIN_CHARS,
    letter_count: float = PARTIAL_MATCH_LETTER_COUNT,
) -> str | None:
    """NVIDIA's ``check_against_whole_word_blocklist``: the block message, or None when nothing matches."""
    normalised_prompt = _normalise(prompt)
    for word in words:
        normalised_word = _normalise(word)
        if re.search(r"\b" + re.escape(normalised_word) + r"\b", normalised_prompt):
            return f"Prompt blocked by exact match blocklist: Prompt: {prompt}, Exact Match Word: {word}"
        if len(normalised_word) >= min_chars and partial_match(normalised_prompt, normalised_word, letter_count):
            return (
                f"Prompt blocked by partial match blocklist: Prompt: {normalised_prompt}, "
                f"Partial Match Word: {normalised_word}"
            )
    return None


class Blocklist:
    """The word lists and nltk data of ``Cosmos-1.0-Guardrail/blocklist/``, ready to check prompts."""

    def __init__(self, blocklist_dir: Path) -> None:
        import nltk

        nltk_data = str(blocklist_dir / "nltk_data")
        # nltk looks resources up on a process-wide path; ours goes first so that a different WordNet in
        # ~/nltk_data cannot change the lemmas.
        if nltk_data not in nltk.data.path:
            nltk.data.path.insert(0, nltk_data)
        self._nltk = nltk
        self._lemmatizer = nltk.WordNetLemmatizer()
        self.blocklist_words = read_word_list(blocklist_dir / "custom")
        self.whitelist_words = read_word_list(blocklist_dir / "whitelist")
        self.exact_match_words = read_word_list(blocklist_dir / "exact_match")
        self._whitelist = {w.lower() for w in self.whitelist_words}
        # A private instance: better_profanity's module-level `profanity` is shared by the whole process.
        self._profanity = Profanity(self.blocklist_words)
        self._profanity.load_censor_words(self.blocklist_words, whitelist_words=list(self.whitelist_words))

    def censor(self, prompt: str) -> str | None:
        """Rule 1 or 2: the block message, or None. Whitelisted words are restored after censoring."""
        censored_words = self._profanity.censor(prompt, censor_char=_CENSOR).split()
        for i, token in enumerate(prompt.split()[: len(censored_words)]):
            if token.strip(string.punctuation).lower() in self._whitelist:
                censored_words[i] = token
        censored = " ".join(censored_words)
        if _CENSOR in censored:
            return f"Prompt blocked by censorship: Censored Prompt: {censored.replace(_CENSOR, '*')}"
        return None

    def lemmatise(self, prompt: str) -> str:
        tokens = self._nltk.word_tokenize(prompt)
        return " ".join(self._lemmatizer.lemmatize(token) for token in tokens)

    def is_safe(self, prompt: str) -> tuple[bool, str]:
        """(safe, message) exactly as NVIDIA's ``Blocklist.is_safe`` orders its rules."""
        if not prompt:
            return False, "Input is empty"
        prompt = to_ascii(prompt)
        message = (
            self.censor(prompt) or self.censor(self.lemmatise(prompt)) or exact_match(prompt, self.exact_match_words)
        )
        return (False, message) if message else (True, "Input is safe")
