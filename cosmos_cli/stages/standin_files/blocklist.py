"""Write the guardrail's ``blocklist/`` folder: word lists in NVIDIA's three sub-folders and minimal nltk data.

Every file the blocklist check reads is there, in its real format and place, so the real
:class:`~cosmos_cli.guardrail.blocklist.Blocklist` loads it unchanged (the ``--load-format dummy`` text
guardrail does, and so do the tiny test checkpoints). The nltk data is a minimal but valid WordNet +
punkt_tab: WordNet's noun index lists only the custom blocklist words, so only their inflections lemmatise
(``forbiddenwords`` -> ``forbiddenword``); every other word is left as is, where the real WordNet would
lemmatise it. (The real WordNet cannot be downloaded in CI.)
"""

from __future__ import annotations

from pathlib import Path

CUSTOM_WORDS = ("forbiddenword", "harmlessword")
WHITELIST_WORDS = ("harmlessword",)
EXACT_MATCH_WORDS = ("badphrase", "two words")


def write_blocklist(folder: Path) -> None:
    """Word lists in the three sub-folders NVIDIA reads, and the nltk data the lemmatiser needs."""
    for name, words in (
        ("custom", CUSTOM_WORDS),
        ("whitelist", WHITELIST_WORDS),
        ("exact_match", EXACT_MATCH_WORDS),
    ):
        (folder / name).mkdir(parents=True)
        (folder / name / "list.txt").write_text("".join(f"{w}\n" for w in words))
    write_minimal_nltk_data(folder / "nltk_data", lemmas=[w for w in CUSTOM_WORDS if " " not in w])


def write_minimal_nltk_data(folder: Path, lemmas: list[str]) -> None:
    """The smallest WordNet and punkt_tab that nltk's ``WordNetLemmatizer`` and ``word_tokenize`` will load.

    WordNet's reader opens every file of the corpus and parses ``lexnames`` and the ``index.*`` files; the
    lemmatiser then only asks which lemmas the noun index holds. punkt_tab needs its four parameter files.
    """
    wordnet = folder / "corpora" / "wordnet"
    wordnet.mkdir(parents=True)
    for name in ("cntlist.rev", "index.sense", "index.adj", "index.adv", "index.verb"):
        (wordnet / name).write_text("")
    for pos in ("adj", "adv", "noun", "verb"):
        (wordnet / f"data.{pos}").write_text("")
        (wordnet / f"{pos}.exc").write_text("")
    (wordnet / "lexnames").write_text("00\tadj.all\t3\n")
    # "<lemma> <pos> <synsets> <pointers> <senses> <tagged senses> <synset offsets...>"
    (wordnet / "index.noun").write_text("".join(f"{w} n 1 0 1 0 {i:08d}\n" for i, w in enumerate(sorted(lemmas))))
    punkt = folder / "tokenizers" / "punkt_tab" / "english"
    punkt.mkdir(parents=True)
    for name in ("collocations.tab", "sent_starters.txt", "ortho_context.tab"):
        (punkt / name).write_text("")
    (punkt / "abbrev_types.txt").write_text("dr\nmr\nmrs\n")
