"""The weights directory: fetching official files safely, listing and verifying what is there."""

from __future__ import annotations

import http.client
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from service.core.weights import OFFICIAL_WEIGHTS, OfficialWeights, sha256_file, verify_weights
from service.errors import StartupError

CHUNK = 1 << 16
PARTIAL_SUFFIX = ".part"


class FetchError(Exception):
    """A download failed; the message names the URL, the digest and the manual remedy."""


def _manual_remedy(weights: OfficialWeights, url: str, final: Path) -> str:
    return (
        f"Download {url} by other means, check that its SHA-256 is {weights.sha256}, "
        f"and put it at {final} (or pass --weights PATH)."
    )


def fetch(
    weights: OfficialWeights,
    directory: Path,
    *,
    url: str | None = None,
    timeout: float = 10.0,
    progress: bool = True,
) -> Path:
    """Download ``weights`` into ``directory``, resuming a partial file; verified before it is named.

    The bytes go to ``<name>.part``; only after the full SHA-256 matches is it
    renamed (atomically) to its final name, so a half file never carries it.
    """
    url = url or weights.url
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / weights.filename
    if final.is_file() and sha256_file(final) == weights.sha256:
        return final
    partial = directory / (weights.filename + PARTIAL_SUFFIX)
    offset = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (https URL from our table or the user)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the partial file is already complete
            response = None
        else:
            raise FetchError(f"cannot download {url}: HTTP {error.code}. {_manual_remedy(weights, url, final)}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise FetchError(f"cannot download {url}: {reason}. {_manual_remedy(weights, url, final)}") from None
    if response is not None:
        with response:
            if offset and response.status != 206:
                offset = 0  # the server ignored the range: start over
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length else None
            try:
                with partial.open("ab" if offset else "wb") as out, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, desc=weights.filename, disable=not progress
                ) as bar:
                    for chunk in iter(lambda: response.read(CHUNK), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as error:
                raise FetchError(
                    f"download of {url} broke off ({error!r}); run the same command again to resume"
                ) from None
            if total is not None and partial.stat().st_size < total:
                raise FetchError(
                    f"download of {url} broke off at {partial.stat().st_size} of {total} bytes; "
                    "run the same command again to resume"
                )
    digest = sha256_file(partial)
    if digest != weights.sha256:
        partial.unlink()
        raise FetchError(
            f"downloaded {url} has SHA-256 {digest}, expected {weights.sha256}; the file was removed"
        )
    os.replace(partial, final)
    return final


@dataclass(frozen=True)
class WeightsEntry:
    """One file found in the weights directory, and whether its digest checks out."""

    path: Path
    model: str
    size: int
    sha256: str
    verified: bool
    note: str


def scan(directory: Path) -> list[WeightsEntry]:
    """Every weights file in ``directory`` with its verification status."""
    by_filename = {w.filename: w.model for w in OFFICIAL_WEIGHTS.values()}
    entries = []
    for path in sorted(directory.glob("*")):
        if path.suffix not in {".pth", ".pt", ".bin"} or not path.is_file():
            continue
        try:
            digest = verify_weights(path)
            verified, note = True, "pinned digest" if path.name in by_filename else "hash suffix matches"
        except StartupError as error:
            digest, verified, note = sha256_file(path), False, str(error)
        entries.append(WeightsEntry(path, by_filename.get(path.name, "custom"), path.stat().st_size, digest, verified, note))
    return entries


def place_version(
    repository: Path, name: str, fill: Callable[[Path], dict[str, str | None]], version: int | None = None
) -> Path:
    """Assemble a new version of model ``name`` in ``repository``: ``fill(folder)`` writes its files and returns
    the model.toml keys. Returns the version folder.

    The folder is assembled under a hidden name and renamed into place, so a
    polling server never sees half a version. ``version`` None: one above the highest.
    """
    from service.core.repository import MODEL_FILE, MODEL_NAME, version_folders, write_model_file

    if not MODEL_NAME.match(name):
        raise FetchError(f"model name {name!r} must be letters, digits, '_', '.' or '-' (64 at most)")
    model_dir = repository / name
    existing = [v.version for v in version_folders(repository, name)]
    number = version if version is not None else max(existing, default=0) + 1
    if number < 1:
        raise FetchError(f"versions are positive integers; got {number}")
    final = model_dir / str(number)
    if final.exists():
        raise FetchError(f"{final} already exists: versions are immutable, publish a new one")
    staging = model_dir / f".tmp-{number}-{os.getpid()}"
    staging.mkdir(parents=True)
    try:
        write_model_file(staging / MODEL_FILE, fill(staging))
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def place_in_repository(
    weights: Path,
    repository: Path,
    name: str,
    *,
    architecture: str,
    version: int | None = None,
    labels: Path | None = None,
    backend: str | None = None,
) -> Path:
    """Copy ``weights`` (and ``labels``) into a new version of model ``name``, checked as a server would load it.

    The weights must load strictly into ``architecture`` and have as many
    classes as the labels (ImageNet's 1000 without ``labels``): a version that
    a server would refuse is refused here.
    """
    from service.core.architectures import ARCHITECTURES, imagenet_labels
    from service.core.models import BACKENDS, read_labels

    if architecture not in ARCHITECTURES:
        raise FetchError(f"unknown architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    if backend is not None and backend not in BACKENDS:
        raise FetchError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    for source in (weights, labels):
        if source is not None and not source.is_file():
            raise FetchError(f"{source} is not a file")
    try:
        label_names = read_labels(labels) if labels is not None else imagenet_labels()
        num_classes = _class_count(architecture, weights)
    except StartupError as error:
        raise FetchError(str(error)) from None
    if num_classes != len(label_names):
        labels_source = str(labels) if labels is not None else "the ImageNet labels"
        raise FetchError(
            f"{weights} has {num_classes} classes but {labels_source} has {len(label_names)} labels: "
            "pass --labels FILE with one label per class"
        )

    def fill(folder: Path) -> dict[str, str | None]:
        shutil.copyfile(weights, folder / weights.name)
        if labels is not None:
            shutil.copyfile(labels, folder / labels.name)
        return {
            "architecture": architecture,
            "weights": weights.name,
            "sha256": sha256_file(folder / weights.name),
            "labels": labels.name if labels is not None else None,
            "backend": backend,
        }

    return place_version(repository, name, fill, version)


def _class_count(architecture: str, weights: Path) -> int:
    """The class count of ``weights``, loaded strictly as the server would (needs the [torch] extra)."""
    try:
        from service.core.torch_networks import build_network
    except ImportError as error:
        raise StartupError(
            f"checking {weights} needs torch ({error.name} is not installed): pip install 'classify-service[torch]'"
        ) from None
    return build_network(architecture, weights)[1]
