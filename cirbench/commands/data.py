"""Commands that put data on disk: ``cirbench fetch`` and ``cirbench make-standins``.

The library modules behind them load inside the commands, so ``cirbench --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cirbench.commands.core import refuse_unused, user_errors
from cirbench.files import check_writable_folder
from cirbench.progress import progress_bar


FETCHABLE = ("fashioniq",)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("fetch")(fetch)
    app.command("make-standins")(make_standins)


def fetch(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., help="What to download: fashioniq."),
    root: Path = typer.Option(..., "--root", help="Folder to fill: captions/, image_splits/, image_url/, images/."),
    base_url: Optional[str] = typer.Option(
        None, "--base-url", show_default="the dataset's repository, XiaoxiaoGuo/fashion-iq on GitHub",
        help="Raw base URL of the annotation files (captions/, image_splits/).",
    ),
    url_lists_base_url: Optional[str] = typer.Option(
        None, "--url-lists-base-url", show_default="hongwang600/fashion-iq-metadata on GitHub",
        help="Raw base URL of the image URL lists (image_url/asin2url.<category>.txt).",
    ),
    images: bool = typer.Option(True, "--images/--no-images", help="Also download the images."),
    workers: int = typer.Option(8, "--workers", min=1, help="Concurrent image downloads."),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, help="Seconds per request."),
    retries: int = typer.Option(3, "--retries", min=0, help="Retries after a transient error (5xx, timeout)."),
    category: List[str] = typer.Option([], "--category", help="Only these categories (repeatable)."),
    split: List[str] = typer.Option([], "--split", help="Only these splits (repeatable): train, val, test."),
) -> None:
    """Download a dataset's annotation files and images; resumable, reports dead links.

    A rerun skips complete files and retries the rest; counts and dead ids go to ROOT/fetch_report.json.

    Example: cirbench fetch fashioniq --root data/fashioniq --workers 16
    """
    from cirbench.data import fetch as fetching

    if dataset not in FETCHABLE:
        raise typer.BadParameter(
            f"can fetch {', '.join(FETCHABLE)}; enhFashionIQ is built with `cirbench build-enhfiq`"
        )
    settings = fetching.FetchSettings(workers=workers, timeout=timeout, retries=retries)
    with user_errors():
        if not images:
            refuse_unused(ctx, "they download images, and --no-images downloads none", "workers", "url_lists_base_url")
        check_writable_folder(root, "--root")
    with user_errors(), progress_bar() as progress:
        task = progress.add_task("images", total=None)
        report = fetching.fetch_fashioniq(
            root,
            base_url=base_url or fetching.ANNOTATIONS_BASE_URL,
            url_lists_base_url=url_lists_base_url or fetching.URL_LISTS_BASE_URL,
            categories=tuple(category) or fetching.DEFAULT_CATEGORIES,
            splits=tuple(split) or fetching.SPLITS,
            images=images,
            settings=settings,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    _print_fetch_report(report, root / fetching.REPORT_NAME)


def _print_fetch_report(report, report_path: Path) -> None:
    from rich.console import Console

    console = Console()
    console.print(f"annotation files downloaded: {report.annotation_files_downloaded}")
    result = report.images
    if result is not None:
        console.print(
            f"images: {result.downloaded} downloaded, {result.already_present} already present, "
            f"{len(result.dead)} dead links, {len(result.failed)} failed of {result.wanted}"
        )
        if result.failed:
            console.print(f"[yellow]{len(result.failed)} transient failures: run the command again to retry them.[/]")
    for name, counts in report.val_queries.items():
        console.print(f"val {name}: {counts['usable']} of {counts['total']} queries have both images")
    console.print(f"report: {report_path}")


def make_standins(
    root: Path = typer.Option(..., "--root", help="FashionIQ-layout folder; images go to ROOT/images/."),
    size: int = typer.Option(32, "--size", min=4, max=1024, help="Image side in pixels."),
    annotations: Optional[Path] = typer.Option(
        None, "--annotations", help="Copy captions/ and image_splits/ from this folder into ROOT first."
    ),
    split: List[str] = typer.Option([], "--split", help="Only the images of these splits (repeatable)."),
) -> None:
    """Write deterministic stand-in images for every image the annotation files name.

    Runs the pipeline on real annotation files without their images; existing images are kept.

    Example: cirbench make-standins --root /tmp/fiq --annotations ../shared/data/fashioniq --split val
    """
    from cirbench.data import standins

    with user_errors():
        check_writable_folder(root, "--root")
        copied = standins.copy_annotations(annotations, root) if annotations else 0
        image_ids = standins.annotation_image_ids(root, split or None)
        with progress_bar() as progress:
            task = progress.add_task("stand-in images", total=len(image_ids))
            written = standins.write_standin_images(
                root, image_ids, size=size, on_image=lambda: progress.advance(task)
            )
    typer.echo(
        f"{copied} annotation files copied; {written} stand-in images written, "
        f"{len(image_ids) - written} already present, in {root / 'images'}"
    )
