"""Hugging Face Hub ids wherever vadapters accepts a path, resolved by `huggingface_hub` itself.

A string that is not an existing local path and has the form `ORG/NAME[/PATH/IN/REPO]` names a Hub repository
(and optionally a folder or file inside it). `resolve` returns a local path: the path itself when it exists, or the
file / folder that `huggingface_hub.hf_hub_download` / `snapshot_download` put in (or found in) the Hugging Face
cache (`HF_HUB_CACHE`, `HF_HOME`). With `HF_HUB_OFFLINE=1` huggingface_hub answers from the cache alone; whatever
is neither local nor cached raises one `CheckpointError` naming the `hf download` command that fetches it.

Example:
    >>> split_hub_id("jiaxiangc/res-adapter/resadapter_v2_sd1.5")
    ('jiaxiangc/res-adapter', 'resadapter_v2_sd1.5')
    >>> split_hub_id("/no/such/folder") is None, split_hub_id("tiny") is None
    (True, True)
    >>> hub_id_of_cache_path("/c/hub/models--jiaxiangc--res-adapter/snapshots/abc123/resadapter_v2_sd1.5")
    'jiaxiangc/res-adapter/resadapter_v2_sd1.5'
"""

from __future__ import annotations

import os
import re

from vadapters.errors import CheckpointError

_CACHE_PATH = re.compile(r"models--([^/\\]+?)--([^/\\]+)[/\\]snapshots[/\\][^/\\]+(?:[/\\](.*))?$")


def split_hub_id(text: object) -> tuple[str, str | None] | None:
    """`(repo_id, path inside the repo or None)` when `text` names a Hub repository and is not a local path, else
    None. A Hub id is `ORG/NAME` (as `huggingface_hub.utils.validate_repo_id` accepts it), optionally followed by
    `/FOLDER/...` inside the repository.

    Example:
        >>> split_hub_id("ORG/NAME"), split_hub_id("./ORG/NAME")
        (('ORG/NAME', None), None)
    """
    if not isinstance(text, str) or not text or os.path.exists(text):
        return None
    if text.startswith(("/", ".", "~")) or "\\" in text or "//" in text or ":" in text:
        return None
    parts = text.strip("/").split("/")
    if len(parts) < 2:
        return None
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo_id = "/".join(parts[:2])
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return None
    return repo_id, "/".join(parts[2:]) or None


def hub_id_of_cache_path(path: str | os.PathLike) -> str | None:
    """`ORG/NAME[/PATH]` for a path inside a Hugging Face cache snapshot (`models--ORG--NAME/snapshots/REV/PATH`),
    else None: how a resolved hub id is named again (in messages and in an adapter's recorded base).

    Example:
        >>> hub_id_of_cache_path("/c/models--ORG--NAME/snapshots/0123"), hub_id_of_cache_path("/tmp/x")
        ('ORG/NAME', None)
    """
    match = _CACHE_PATH.search(os.fspath(path))
    if match is None:
        return None
    org, name, inner = match.groups()
    inner = (inner or "").strip("/\\").replace("\\", "/")
    return f"{org}/{name}" + (f"/{inner}" if inner else "")


def fetch_command(repo_id: str, inner: str | None = None, *, is_file: bool = False) -> str:
    """The `hf download` command that puts `repo_id` (or one file / folder of it) into the cache.

    Example:
        >>> fetch_command("jiaxiangc/res-adapter", "resadapter_v2_sd1.5")
        "hf download jiaxiangc/res-adapter --include 'resadapter_v2_sd1.5/*'"
    """
    if not inner:
        return f"hf download {repo_id}"
    return f"hf download {repo_id} {inner}" if is_file else f"hf download {repo_id} --include '{inner}/*'"


def not_cached_message(what: str, repo_id: str, inner: str | None = None, *, is_file: bool = False) -> str:
    """The one message for a Hub id that can be neither found in the cache nor downloaded."""
    from huggingface_hub import constants, is_offline_mode

    where = f"{repo_id}/{inner}" if inner else repo_id
    reason = "HF_HUB_OFFLINE=1 forbids downloads" if is_offline_mode() else "the download failed"
    return (
        f"{what} {where!r} is not a local path, and as a Hugging Face Hub id it is not in the cache "
        f"({constants.HF_HUB_CACHE}) and {reason}. Fetch it with `{fetch_command(repo_id, inner, is_file=is_file)}` "
        "(online, or on another machine and copy the cache), unset HF_HUB_OFFLINE, or pass a local path."
    )


def resolve(
    name_or_path: str | os.PathLike,
    *,
    subfolder: str | None = None,
    weight_name: str | None = None,
    revision: str | None = None,
    what: str = "adapter",
) -> str:
    """A local path for a local path or a Hub id, with `subfolder` / `weight_name` as in diffusers' loaders.

    Args:
        name_or_path: a local folder or file, or `ORG/NAME[/PATH]` on the Hugging Face Hub.
        subfolder (`str`, optional): a folder inside it (e.g. `"resadapter_v2_sd1.5"`).
        weight_name (`str`, optional): one file inside it; only that file is fetched.
        revision (`str`, optional): a branch, tag or commit of the Hub repository (default: `main`).
        what (`str`): what is being resolved, for messages.

    Raises:
        CheckpointError: a local path that does not exist, or a Hub id neither cached nor downloadable (naming the
            `hf download` command).

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> resolve(folder) == folder
        True
    """
    text = os.fspath(name_or_path)
    extra = [p.strip("/") for p in (subfolder, weight_name) if p]
    if os.path.exists(text):
        local = os.path.join(text, *extra)
        if not os.path.exists(local):
            raise CheckpointError(f"{what} not found: {local!r} (inside {text!r})")
        return local
    hub = split_hub_id(text)
    if hub is None:
        raise CheckpointError(f"{what} path not found: {text!r} (not a local path, nor a Hub id ORG/NAME[/FOLDER])")
    repo_id, rest = hub
    inner = "/".join(p for p in ([rest] if rest else []) + extra) or None
    return _download(repo_id, inner, is_file=weight_name is not None, revision=revision, what=what)


def _download(repo_id: str, inner: str | None, *, is_file: bool, revision: str | None, what: str) -> str:
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError

    failures = (OSError, EntryNotFoundError, ValueError)  # huggingface_hub's cache / HTTP errors are OSErrors
    try:
        if is_file:
            folder, _, filename = (inner or "").rpartition("/")
            return hf_hub_download(repo_id, filename, subfolder=folder or None, revision=revision)
        patterns = [inner, f"{inner}/*"] if inner else None
        snapshot = snapshot_download(repo_id, revision=revision, allow_patterns=patterns)
    except failures as err:
        raise CheckpointError(not_cached_message(what, repo_id, inner, is_file=is_file) + f" ({err})") from err
    target = os.path.join(snapshot, *inner.split("/")) if inner else snapshot
    if not os.path.exists(target) or (os.path.isdir(target) and not os.listdir(target)):
        # offline, huggingface_hub returns the cached snapshot of the revision without knowing what it lacks
        raise CheckpointError(not_cached_message(what, repo_id, inner, is_file=False))
    return target
