"""`sotai data download`: fetch the tag data a real install builds its index from.

- the tag list and Japanese names from GitHub at pinned commits (MIT; their licenses are fetched
  beside them), streamed with a progress bar and resumed from a ``.part`` file;
- the original design's wiki dataset ``isek-ai/danbooru-wiki-2024`` (title, other_names, body)
  through ``huggingface_hub.snapshot_download`` (its own progress bars, resumes interrupted files).

Without a network both fail with a message that says what to do instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from sotai.errors import SotaiError

WIKI_REPO = "isek-ai/danbooru-wiki-2024"
WIKI_DIR = "danbooru-wiki-2024"


@dataclass(frozen=True)
class RemoteFile:
    name: str   # file name in the data directory
    url: str


_TAGCOMPLETE = "https://raw.githubusercontent.com/DominikDoom/a1111-sd-webui-tagcomplete/6ffeeafc49256106266922989ffe8b6b5ef4981f"
_BOORU_JA = "https://raw.githubusercontent.com/boorutan/booru-japanese-tag"
TAG_FILES = (
    RemoteFile("danbooru_tags.csv", f"{_TAGCOMPLETE}/tags/danbooru.csv"),
    RemoteFile("LICENSE.tagcomplete", f"{_TAGCOMPLETE}/LICENSE"),
    RemoteFile("danbooru_ja_hand.csv", f"{_BOORU_JA}/994f51efb02c9a8ff888ea9669a60670a821c57e/danbooru-jp.csv"),
    RemoteFile("danbooru_ja_machine.csv",
               f"{_BOORU_JA}/bdd34f48d8feb55997394131a26b869031e7f23f/danbooru-machine-jp.csv"),
    RemoteFile("LICENSE.booru-japanese-tag", f"{_BOORU_JA}/554ebd89bc35c6b3b296fadc0f88e42441f03cbb/LICENSE"),
)

OFFLINE_HELP = ("no network: copy a data directory (danbooru_tags.csv and the tag,japanese files) from a machine "
                "that has one and point SOTAI_TAG_DATA at it, or use the embedded default by leaving "
                "SOTAI_TAG_DATA unset")


class DownloadError(SotaiError):
    pass


def fetch(file: RemoteFile, dest_dir: Path, client=None) -> Path:
    """Download one file, resuming a partial ``.part`` download with an HTTP Range request."""
    import httpx

    target = dest_dir / file.name
    if target.is_file():
        return target
    part = target.with_name(target.name + ".part")
    done = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={done}-"} if done else {}
    own = client is None
    client = client or httpx.Client(follow_redirects=True, timeout=60)
    try:
        with client.stream("GET", file.url, headers=headers) as resp:
            if resp.status_code == 416:  # the .part is already complete
                part.rename(target)
                return target
            resp.raise_for_status()
            if resp.status_code != 206:  # the server ignored Range: start over
                done = 0
            total = int(resp.headers.get("content-length", 0)) + done or None
            with open(part, "ab" if done else "wb") as fh, tqdm(
                total=total, initial=done, unit="B", unit_scale=True, desc=file.name
            ) as bar:
                for chunk in resp.iter_bytes(1 << 16):
                    fh.write(chunk)
                    bar.update(len(chunk))
    except httpx.TransportError as exc:
        raise DownloadError(f"{file.url}: {exc.__class__.__name__}: {exc}; {OFFLINE_HELP}; "
                            f"then rerun `sotai data download` to resume") from None
    except httpx.HTTPStatusError as exc:
        raise DownloadError(f"{file.url}: HTTP {exc.response.status_code}") from None
    finally:
        if own:
            client.close()
    part.rename(target)
    return target


def download_tag_files(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for f in TAG_FILES:
        fetch(f, dest)
    return dest


def download_wiki(dest: Path, repo_id: str = WIKI_REPO, revision: str | None = None,
                  with_tag_files: bool = True) -> Path:
    """Download the tag files and the wiki dataset into ``dest`` (resumable); return ``dest``."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    dest = Path(dest)
    if with_tag_files:
        download_tag_files(dest)
    try:
        snapshot_download(repo_id=repo_id, repo_type="dataset", revision=revision,
                          local_dir=dest / WIKI_DIR, allow_patterns=["*.parquet", "README.md", "LICENSE*"])
    except LocalEntryNotFoundError as exc:
        raise DownloadError(f"{repo_id}: cannot reach the Hugging Face Hub ({exc}); {OFFLINE_HELP}; "
                            f"then rerun `sotai data download` to resume") from None
    except OSError as exc:  # requests/httpx connection errors are OSErrors underneath
        raise DownloadError(f"{repo_id}: {exc}; {OFFLINE_HELP}; then rerun `sotai data download` to resume") from None
    return dest
