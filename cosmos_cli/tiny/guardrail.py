"""Write a ``Cosmos-1.0-Guardrail/`` folder in NVIDIA's layout with stand-in models, for tests and benchmarks.

Every file the guardrail stages read is there, in its real format and place: word lists, an nltk data
folder, LlamaGuard + Aegis adapter and SigLIP in the Hugging Face cache layout (``save_pretrained``),
``safety_filter.pt`` and ``Resnet50_Final.pth``. The models are random, with knobs that force a verdict:

- ``llm_verdict``: the Llama's embeddings and output head are set so that greedy decoding repeats one
  token (``safe`` or ``unsafe``); ``raise`` gives the model fewer embedding rows than the tokenizer has ids,
  so the check fails with an ``IndexError`` while loading still works.
- ``video_verdict``: the safety MLP's last layer is zero with a bias on class 0 (``safe``) or 2
  (``unsafe``: Violence); ``raise`` builds SigLIP for 4-channel images, so RGB frames fail inside the check.
- ``faces``: RetinaFace's class head is zero with a bias for background (``none``) or face (``everywhere``)
  on every anchor, and the box head is zero, so every anchor box is detected as it is.

The word lists and nltk data are the stand-ins' (:mod:`cosmos_cli.stages.standin_files.blocklist`).

``TINY_GUARDRAIL`` sizes (:mod:`cosmos_cli.stages.standin_files.sizes`) make the whole folder in about a
second (plus the ~105 MB RetinaFace file, whose shapes are fixed by ResNet-50); the released sizes
(LlamaGuard-7b, SigLIP so400m: ``cosmos_cli.models.released.GUARDRAIL``) are for ``scripts/bench_guardrail.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Literal

import torch

from cosmos_cli.checkpoints import GUARDRAIL_DIR
from cosmos_cli.guardrail.aegis_policy import moderation_prompt
from cosmos_cli.guardrail.layout import (
    AEGIS_ADAPTER_REPO,
    LLAMAGUARD_REPO,
    SIGLIP_REPO,
    GuardrailLayout,
    hub_cache_folder,
)
from cosmos_cli.models.building import default_dtype
from cosmos_cli.models.released import GuardrailSizes as StandinSizes
from cosmos_cli.stages.standin_files.blocklist import write_blocklist
from cosmos_cli.stages.standin_files.sizes import TINY_GUARDRAIL
from cosmos_cli.stages.text_encoder import quiet_transformers

Verdict = Literal["safe", "unsafe", "raise"]
Faces = Literal["none", "everywhere"]

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
ANSWER_TOKENS = ("safe", "unsafe", *(f"O{i}" for i in range(1, 13)))
UNSAFE_CLASS = 2  # Violence


def write_tiny_guardrail(
    root: Path,
    seed: int = 0,
    *,
    llm_verdict: Verdict = "safe",
    video_verdict: Verdict = "safe",
    faces: Faces = "none",
) -> Path:
    """Write ``root/Cosmos-1.0-Guardrail/`` with tiny stand-ins (replacing an old copy); return its path."""
    return write_guardrail_standins(
        root, TINY_GUARDRAIL, seed, llm_answer=llm_verdict, video_verdict=video_verdict, faces=faces
    )


def write_guardrail_standins(
    root: Path,
    sizes: StandinSizes,
    seed: int = 0,
    *,
    llm_answer: str = "safe",
    video_verdict: Verdict = "safe",
    faces: Faces = "none",
    device: str | torch.device = "cpu",
    parts: tuple[str, ...] = ("blocklist", "aegis", "video_filter", "face_blur"),
) -> Path:
    """Write the guardrail folder (only ``parts``) atomically: built beside it, then moved into place.

    ``llm_answer`` is ``safe``, ``unsafe``, ``raise`` or any token to repeat (the benchmark uses ``</s>``
    so that generation stops after one token, as LlamaGuard's real two-token answers nearly do).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / GUARDRAIL_DIR
    staging = Path(tempfile.mkdtemp(prefix=f".{GUARDRAIL_DIR}.", dir=root))
    try:
        layout = GuardrailLayout(staging)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if "blocklist" in parts:
                write_blocklist(layout.blocklist_dir)
            if "aegis" in parts:
                write_aegis(layout.aegis_cache, sizes, llm_answer, device)
            if "video_filter" in parts:
                write_video_filter(layout.video_filter_dir, sizes, video_verdict, device)
            if "face_blur" in parts:
                write_retinaface(layout.retinaface, faces)
        _replace_dir(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _replace_dir(new: Path, final: Path) -> None:
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(new, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, final)


# --- Aegis: LlamaGuard + adapter ---------------------------------------------------------------------------


def _snapshot_dir(cache_dir: Path, repo_id: str) -> Path:
    """Create ``models--org--name/{refs/main, snapshots/<rev>/}`` as ``from_pretrained(cache_dir=)`` does."""
    folder = hub_cache_folder(cache_dir, repo_id)
    revision = hashlib.sha1(repo_id.encode()).hexdigest()
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    snapshot = folder / "snapshots" / revision
    snapshot.mkdir(parents=True)
    return snapshot


def _llama_vocab(size: int | None) -> list[str]:
    """Specials, the answer tokens, every word of the moderation prompt, then fillers up to ``size``."""
    words = list(SPECIAL_TOKENS) + list(ANSWER_TOKENS)
    for word in moderation_prompt("").split():
        if word not in words:
            words.append(word)
    words += [f"<filler_{i}>" for i in range((size or 0) - len(words))]
    return words


def write_llama_tokenizer(folder: Path, vocab: list[str]) -> None:
    """A word-level ``tokenizer.json`` (whitespace split; LlamaGuard's is SentencePiece) + its config."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>"}
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "unk_token": "<unk>"}, indent=2))


def write_aegis(cache_dir: Path, sizes: StandinSizes, answer: str, device: str | torch.device = "cpu") -> None:
    """LlamaGuard stand-in (weights, tokenizer) and a LoRA adapter for it, in the Hub cache layout."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = _llama_vocab(sizes.llama.get("vocab_size"))
    # "raise": the model has rows only for specials and answers, so the prompt's words index past the end.
    n_rows = len(SPECIAL_TOKENS) + len(ANSWER_TOKENS) if answer == "raise" else len(vocab)
    target = vocab.index("safe" if answer == "raise" else answer)
    config = LlamaConfig(
        **{**sizes.llama, "vocab_size": n_rows},
        num_key_value_heads=sizes.llama["num_attention_heads"],
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    dtype = torch.bfloat16 if sizes.llama["hidden_size"] >= 1024 else torch.float32
    with default_dtype(dtype), torch.device(device):
        model = LlamaForCausalLM(config)
    with torch.no_grad():
        # Every token embeds to (nearly) the same large vector, so the final hidden state points along it
        # whatever the random layers add; only the target token's output row is aligned with it.
        embed = model.model.embed_tokens.weight
        embed.copy_(100.0 + torch.randn_like(embed))
        model.lm_head.weight.zero_()
        model.lm_head.weight[target] = 1.0
    base = _snapshot_dir(cache_dir, LLAMAGUARD_REPO)
    with quiet_transformers(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(base)
        adapter = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", init_lora_weights=False, **sizes.lora))
        adapter_dir = _snapshot_dir(cache_dir, AEGIS_ADAPTER_REPO)
        adapter.save_pretrained(adapter_dir, save_embedding_layers=False)
    write_llama_tokenizer(base, vocab)
    # Named after the real base only now: peft would try to reach the Hub to look that name up while saving.
    adapter_config = adapter_dir / "adapter_config.json"
    config_data = json.loads(adapter_config.read_text())
    adapter_config.write_text(json.dumps({**config_data, "base_model_name_or_path": LLAMAGUARD_REPO}, indent=2))


# --- video content safety filter ----------------------------------------------------------------------------


def write_video_filter(folder: Path, sizes: StandinSizes, verdict: Verdict, device: str | torch.device = "cpu") -> None:
    """SigLIP (whole ``SiglipModel``, as the real repo) in the Hub cache layout, and ``safety_filter.pt``."""
    from transformers import SiglipConfig, SiglipModel

    from cosmos_cli.guardrail.video_filter import VideoSafetyModel

    vision = dict(sizes.siglip_vision, num_channels=4 if verdict == "raise" else 3)
    text = dict(sizes.siglip_text, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    config = SiglipConfig(text_config=text, vision_config=vision)
    with torch.device(device):
        model = SiglipModel(config)
    snapshot = _snapshot_dir(folder, SIGLIP_REPO)
    with quiet_transformers():
        model.save_pretrained(snapshot)
    side = vision["image_size"]
    processor = {
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor",
        "processor_class": "SiglipProcessor",
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"height": side, "width": side},
    }
    (snapshot / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))

    classifier = VideoSafetyModel(input_size=vision["hidden_size"])
    last = classifier.network.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[UNSAFE_CLASS if verdict == "unsafe" else 0] = 10.0
    torch.save({"model": classifier.state_dict()}, folder / "safety_filter.pt")


# --- face blur filter -------------------------------------------------------------------------


def write_retinaface(path: Path, faces: Faces) -> None:
    """A randomly initialised RetinaFace-R50 state dict with real names and shapes (~105 MB)."""
    from cosmos_cli.guardrail.retinaface import RetinaFace

    net = RetinaFace()
    face_logit = 10.0 if faces == "everywhere" else -10.0
    with torch.no_grad():
        for head in net.ClassHead:
            head.conv1x1.weight.zero_()
            head.conv1x1.bias.copy_(torch.tensor([-face_logit, face_logit]).repeat(2))
        for head in net.BboxHead:
            head.conv1x1.weight.zero_()
            head.conv1x1.bias.zero_()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
