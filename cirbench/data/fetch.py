"""Download FashionIQ: annotation files, image URL lists, then the images themselves.

The annotation files (``captions/``, ``image_splits/``) are in the dataset's public repository
(XiaoxiaoGuo/fashion-iq). That repository's README sends image downloads to a companion
repository (hongwang600/fashion-iq-metadata) whose ``image_url/asin2url.{category}.txt`` lists one
``<asin> <url>`` per line (tab-separated, sometimes padded with spaces). Many of those product
URLs are dead: the report counts them, lists them, and says how many val queries keep both their
reference and target image.

Resumable: a file already in place is complete (every download is written atomically, see
``cirbench.files``), so a rerun fetches only what is missing, dead links and transient failures
included. Requests go through the one HTTP client (``cirbench.http_client``): transient errors
(5xx, 408, 425, 429, timeouts, connection errors) are retried with exponential backoff; other 4xx
answers (401 and 403 included) are dead links and are not retried.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from cirbench import __version__
from cirbench.data.fashioniq import DEFAULT_CATEGORIES, caption_path, read_category, split_path
from cirbench.data.images import check_image_id, index_image_folder
from cirbench.errors import DataError
from cirbench.files import write_atomic, write_json_atomic
from cirbench.http_client import HTTPFailure, HttpClient, RetryPolicy, redact_url

ANNOTATIONS_BASE_URL = "https://raw.githubusercontent.com/XiaoxiaoGuo/fashion-iq/master"
URL_LISTS_BASE_URL = "https://raw.githubusercontent.com/hongwang600/fashion-iq-metadata/master"
SPLITS = ("train", "val", "test")
REPORT_NAME = "fetch_report.json"
USER_AGENT = f"Mozilla/5.0 (compatible; cirbench-fetch/{__version__})"


class TransientError(Exception):
    """Worth retrying: server error, timeout, dropped connection."""


class DeadLink(Exception):
    """Not worth retrying: 404 and the other client errors, or not an image."""


@dataclass(frozen=True)
class FetchSettings:
    workers: int = 8
    timeout: float = 30.0  # seconds per request
    retries: int = 3  # extra attempts after a transient error
    backoff: float = 1.0  # seconds before the first retry, doubled for each next one


def fetch_client(settings: FetchSettings) -> HttpClient:
    """The HTTP client of one fetch, shared by its download threads."""
    policy = RetryPolicy(max_attempts=settings.retries + 1, backoff_s=settings.backoff, timeout_s=settings.timeout)
    return HttpClient(policy, headers={"User-Agent": USER_AGENT}, max_connections=settings.workers)


def download(client: HttpClient, url: str) -> bytes:
    """The bytes at ``url``; ``DeadLink`` or, once the retries are spent, ``TransientError``."""
    try:
        return client.get(url)
    except HTTPFailure as exc:
        raise (TransientError if exc.transient else DeadLink)(str(exc)) from None


def annotation_files(categories: Sequence[str], splits: Sequence[str]) -> list[Path]:
    """Annotation paths relative to the data root, as in the dataset's repository."""
    return [p(Path("."), c, s) for c in categories for s in splits for p in (caption_path, split_path)]


def url_list_file(category: str) -> Path:
    return Path("image_url") / f"asin2url.{category}.txt"


def fetch_files(root: Path, base_url: str, relative_paths: Iterable[Path], client: HttpClient,
                check: Callable[[bytes, str], None]) -> list[Path]:
    """Download the files not yet under ``root``; ``check(data, url)`` refuses a bad one before it lands."""
    fetched = []
    for relative in relative_paths:
        target = root / relative
        if target.is_file():
            continue
        url = f"{base_url.rstrip('/')}/{relative.as_posix()}"
        try:
            data = download(client, url)
        except (DeadLink, TransientError) as exc:
            raise DataError(redact_url(url), "download", f"{exc}; check the base URL or the network") from None
        check(data, url)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data)
        fetched.append(target)
    return fetched


def check_json(data: bytes, url: str) -> None:
    try:
        json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(redact_url(url), "download", f"not a JSON file ({exc})") from None


def check_text(data: bytes, url: str) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(redact_url(url), "download", f"not a UTF-8 text file ({exc})") from None


def read_url_list(path: Path) -> dict[str, str]:
    """``<image id> <http(s) url>`` per line -> {id: url}; the first URL of a repeated id wins."""
    urls: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].startswith(("http://", "https://")):
            raise DataError(path, f"line {number}", f"expected '<image id> <http(s) URL>', got {line!r}")
        urls.setdefault(check_image_id(parts[0], path, f"line {number}"), parts[1])
    return urls


def wanted_image_ids(root: Path, categories: Sequence[str], splits: Sequence[str]) -> list[str]:
    """Every image the annotation files use (each split file lists its queries' images too)."""
    ids: dict[str, None] = {}
    for category in categories:
        for split in splits:
            ids.update(dict.fromkeys(read_category(root, category, split, require_target=split != "test").gallery))
    return list(ids)


def image_extension(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    return None


def download_image(folder: Path, image_id: str, url: str, client: HttpClient) -> tuple[str, str]:
    """("downloaded" | "dead" | "failed", reason)."""
    try:
        data = download(client, url)
    except DeadLink as exc:
        return "dead", str(exc)
    except TransientError as exc:
        return "failed", f"{exc} (after {client.policy.max_attempts - 1} retries)"
    extension = image_extension(data)
    if extension is None:
        return "dead", f"not a JPEG or PNG image (first bytes {data[:8]!r})"
    write_atomic(folder / f"{image_id}{extension}", data)
    return "downloaded", ""


@dataclass
class ImageFetchResult:
    wanted: int = 0
    downloaded: int = 0
    already_present: int = 0
    dead: dict[str, str] = field(default_factory=dict)  # id -> reason
    failed: dict[str, str] = field(default_factory=dict)  # id -> reason; a rerun tries them again


def fetch_images(folder: Path, image_ids: Sequence[str], urls: dict[str, str], settings: FetchSettings,
                 client: HttpClient, on_progress: Callable[[int, int], None] | None = None) -> ImageFetchResult:
    """Download the images not yet in ``folder``, ``settings.workers`` at a time, with ``client``.

    ``on_progress(done, total)`` is called from this thread after each image.
    """
    folder.mkdir(parents=True, exist_ok=True)
    present = index_image_folder(folder)
    result = ImageFetchResult(wanted=len(image_ids))
    result.already_present = sum(1 for i in image_ids if i in present)
    todo = [i for i in image_ids if i not in present]
    result.dead.update({i: "no URL in the URL lists" for i in todo if i not in urls})
    to_download = [i for i in todo if i in urls]
    done = result.already_present + len(result.dead)
    if on_progress:
        on_progress(done, len(image_ids))
    pool = ThreadPoolExecutor(max_workers=settings.workers)
    try:
        futures = {pool.submit(download_image, folder, i, urls[i], client): i for i in to_download}
        for future in as_completed(futures):
            status, reason = future.result()
            _record(result, futures[future], status, reason)
            done += 1
            if on_progress:
                on_progress(done, len(image_ids))
    finally:  # on Ctrl-C: drop the queued downloads, let the running ones finish their file
        pool.shutdown(wait=True, cancel_futures=True)
    return result


def _record(result: ImageFetchResult, image_id: str, status: str, reason: str) -> None:
    if status == "downloaded":
        result.downloaded += 1
    elif status == "dead":
        result.dead[image_id] = reason
    else:
        result.failed[image_id] = reason


def val_queries_usable(root: Path, categories: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per category: val queries in total, and those whose reference and target images are both here."""
    index = index_image_folder(root / "images")
    usable = {}
    for category in categories:
        annotations = read_category(root, category, "val", require_target=True).annotations
        kept = sum(1 for a in annotations if a.reference_id in index and a.target_id in index)
        usable[category] = {"total": len(annotations), "usable": kept}
    return usable


@dataclass
class FetchReport:
    root: str
    annotations_base_url: str
    url_lists_base_url: str
    categories: list[str]
    splits: list[str]
    annotation_files_downloaded: int
    images: ImageFetchResult | None  # None with --no-images
    val_queries: dict[str, dict[str, int]]

    def to_json(self) -> dict:
        report = asdict(self)
        if self.images is not None:  # ids sorted: downloads finish in any order
            for outcome in ("dead", "failed"):
                report["images"][outcome] = dict(sorted(report["images"][outcome].items()))
                report["images"][f"{outcome}_count"] = len(report["images"][outcome])
        return {"dataset": "fashioniq", **report}


def fetch_fashioniq(
    root: str | Path,
    base_url: str = ANNOTATIONS_BASE_URL,
    url_lists_base_url: str = URL_LISTS_BASE_URL,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    splits: Sequence[str] = SPLITS,
    images: bool = True,
    settings: FetchSettings = FetchSettings(),
    on_progress: Callable[[int, int], None] | None = None,
) -> FetchReport:
    """Fetch what is missing under ``root`` and write ``root/fetch_report.json``."""
    root = Path(root)
    with fetch_client(settings) as client:
        fetched = fetch_files(root, base_url, annotation_files(categories, splits), client, check_json)
        image_result = None
        if images:
            fetch_files(root, url_lists_base_url, [url_list_file(c) for c in categories], client, check_text)
            urls: dict[str, str] = {}
            for category in categories:
                for image_id, url in read_url_list(root / url_list_file(category)).items():
                    urls.setdefault(image_id, url)
            ids = wanted_image_ids(root, categories, splits)
            image_result = fetch_images(root / "images", ids, urls, settings, client, on_progress)
    usable = val_queries_usable(root, categories) if "val" in splits else {}
    report = FetchReport(str(root), redact_url(base_url), redact_url(url_lists_base_url), list(categories), list(splits),
                         len(fetched), image_result, usable)
    write_json_atomic(root / REPORT_NAME, report.to_json())
    return report
