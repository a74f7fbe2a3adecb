"""An offline CLIP tokenizer built from the BPE merges that ship with ``open_clip``.

The Hugging Face CLIP tokenizer needs a ``vocab.json`` and a ``merges.txt``. Both can be derived from open_clip's
bundled ``bpe_simple_vocab_16e6.txt.gz`` with the same construction open_clip's ``SimpleTokenizer`` uses, so no hub
download is ever needed. The two files are written once into a cache directory and reused afterwards.

Example:
    >>> from vadapters.models.tokenizer import clip_tokenizer
    >>> tok = clip_tokenizer()
    >>> len(tok), tok.bos_token_id, tok.eos_token_id
    (49408, 49406, 49407)
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import pathlib
import tempfile

__all__ = ["CLIP_BOS_ID", "CLIP_EOS_ID", "CLIP_VOCAB_SIZE", "clip_bpe_files", "clip_cache_dir", "clip_tokenizer"]

CLIP_VOCAB_SIZE = 49408
CLIP_BOS_ID = 49406
CLIP_EOS_ID = 49407
_NUM_MERGES = 49152 - 256 - 2
_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"


def clip_cache_dir() -> pathlib.Path:
    """Return the directory that holds the converted CLIP BPE files.

    ``$VADAPTERS_CACHE/clip_bpe`` when the variable is set, else ``~/.cache/vadapters/clip_bpe``.

    Example:
        >>> clip_cache_dir().name
        'clip_bpe'
    """
    root = os.environ.get("VADAPTERS_CACHE")
    base = pathlib.Path(root).expanduser() if root else pathlib.Path.home() / ".cache" / "vadapters"
    return base / "clip_bpe"


def _byte_alphabet() -> list[str]:
    """Return the 256 printable unicode stand-ins of the byte values, in CLIP's byte-vocabulary order."""
    printable = list(range(ord("!"), ord("~") + 1))
    printable += list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def _vocab_and_merges(bpe_path: str) -> tuple[dict[str, int], list[str]]:
    """Build the token->id map and the merge lines from open_clip's gzipped merges file."""
    with gzip.open(bpe_path, "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    merges = lines[1 : _NUM_MERGES + 1]  # the first line is a version header
    byte_tokens = _byte_alphabet()
    tokens = byte_tokens + [t + "</w>" for t in byte_tokens]
    tokens += ["".join(m.split()) for m in merges]
    tokens += [_BOS, _EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise RuntimeError(f"unexpected CLIP vocabulary size {len(vocab)} (expected {CLIP_VOCAB_SIZE})")
    return vocab, merges


def _bundled_bpe() -> str:
    """Path of open_clip's ``bpe_simple_vocab_16e6.txt.gz`` (found without importing open_clip, which is slow)."""
    spec = importlib.util.find_spec("open_clip")
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = pathlib.Path(root) / "bpe_simple_vocab_16e6.txt.gz"
        if candidate.is_file():
            return str(candidate)
    from open_clip.tokenizer import default_bpe

    return default_bpe()


def _atomic_write(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def clip_bpe_files(cache_dir: str | os.PathLike | None = None) -> tuple[pathlib.Path, pathlib.Path]:
    """Return ``(vocab.json, merges.txt)`` paths, converting open_clip's bundled BPE on first use.

    Args:
        cache_dir: Where to keep the files. Defaults to :func:`clip_cache_dir`.

    Returns:
        The two paths. They are written atomically and only when missing.

    Example:
        >>> vocab, merges = clip_bpe_files()
        >>> vocab.name, merges.name
        ('vocab.json', 'merges.txt')
    """
    folder = pathlib.Path(cache_dir) if cache_dir is not None else clip_cache_dir()
    try:
        return _convert_once(folder)
    except OSError:
        if cache_dir is not None:
            raise
        # Read-only home directory: fall back to a per-user folder under the system temp dir.
        return _convert_once(
            pathlib.Path(tempfile.gettempdir()) / f"vadapters-{getattr(os, 'getuid', lambda: 0)()}" / "clip_bpe"
        )


def _convert_once(folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    if vocab_path.is_file() and merges_path.is_file():
        return vocab_path, merges_path
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _vocab_and_merges(_bundled_bpe())
    # merges first, vocab last: a present vocab.json means both files are complete.
    _atomic_write(merges_path, "#version: 0.2\n" + "\n".join(merges) + "\n")
    _atomic_write(vocab_path, json.dumps(vocab, ensure_ascii=False))
    return vocab_path, merges_path


def clip_tokenizer(max_length: int = 77):
    """Build a ``transformers.CLIPTokenizer`` equal to OpenAI CLIP's, without touching the network.

    Ids match open_clip's tokenizer for ordinary text; the one difference is Hugging Face's: a literal
    ``<|startoftext|>`` / ``<|endoftext|>`` inside a prompt is read as the special token.

    Args:
        max_length: The tokenizer's ``model_max_length`` (77 for every Stable Diffusion text encoder).

    Returns:
        A fresh ``CLIPTokenizer`` (49408 tokens, bos 49406, eos = pad 49407).

    Example:
        >>> tok = clip_tokenizer()
        >>> tok("a photo of a cat").input_ids
        [49406, 320, 1125, 539, 320, 2368, 49407]
    """
    from transformers import CLIPTokenizer

    vocab_path, merges_path = clip_bpe_files()
    # transformers 5: the file paths must be positional; ``vocab_file=``/``merges_file=`` keywords are silently
    # ignored and give an empty tokenizer.
    tok = CLIPTokenizer(str(vocab_path), str(merges_path), pad_token=_EOS)
    tok.model_max_length = max_length
    tok.pad_token = _EOS
    if len(tok) != CLIP_VOCAB_SIZE:
        raise RuntimeError(f"CLIPTokenizer built with {len(tok)} tokens; expected {CLIP_VOCAB_SIZE}")
    return tok
