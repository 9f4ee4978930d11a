"""Dataset registry and safe downloads from the official sources.

:data:`DATASETS` names every dataset the configs use: where it comes from, which file the
readers need, where that file is expected (relative to the data directory, default
``data/raw``; ``$DURGRU_DATA`` overrides), its licence and, when known, its checksum.

:func:`ensure_file` returns the expected file, downloading it first when it is missing and the
source allows anonymous downloads. A download goes to ``<target>.<...>.part-<random>`` in the
target's directory, is checked (size against ``Content-Length``; sha256 of the archive and of
the extracted file where known), and only then renamed into place with ``os.replace``. Any
failure (network error, truncated transfer, checksum mismatch, interruption) deletes the
partial files and raises an error naming the URL to fetch and the path to put the file at.
Datasets behind a login, a licence form or in 7z archives are never downloaded: the error says
exactly which file to fetch and where to put it.

Checksums: ``sha256`` is of the file the readers use (the extracted member), ``archive_sha256``
of the downloaded archive. Where neither is known (``None``), an existing file is only checked
against the known size, if any, and a download is accepted with a warning that prints its
sha256, so it can be pinned here.

Command line: ``python -m durgru_jax.data.download [--data-dir D] [--list] NAME...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import secrets
import sys
import tarfile
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from absl import logging

from durgru_jax.errors import UserError

ENV_VAR = "DURGRU_DATA"
DEFAULT_DATA_DIR = "data/raw"
_CHUNK = 1 << 20


class DatasetNotFoundError(FileNotFoundError, UserError):
    """The file is missing and cannot (or may not) be downloaded automatically."""


class ChecksumError(ValueError, UserError):
    """A file's sha256 (or size) differs from the expected one."""


class DownloadError(RuntimeError, UserError):
    """A download failed; nothing was left behind."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One dataset file the readers consume.

    ``url``: the official direct download (``manual is None``) or, for manual datasets, the
    official page to get the file from. ``filename``: the member inside the archive
    (``archive`` set) or the downloaded file's name. ``target``: where the file goes, relative
    to the data directory. ``sha256``: of the file at ``target``; ``archive_sha256``: of the
    downloaded archive; ``None`` = not known. ``manual``: why and how to fetch it by hand.
    """

    name: str
    url: str
    filename: str
    target: str
    sha256: str | None
    licence: str
    manual: str | None = None
    archive: str | None = None  # "zip" | "tar" | None (a plain file)
    archive_sha256: str | None = None
    size: int | None = None  # bytes of the file at target, if known
    page: str = ""  # human-readable information page
    config: str | None = None  # configs/<name>.py, if there is one
    notes: str = ""

    @property
    def downloadable(self) -> bool:
        return self.manual is None


_GL = "https://files.grouplens.org/datasets/movielens"
_ML_LICENCE = (
    "GroupLens usage licence: research use; no redistribution without permission; "
    "cite Harper & Konstan, TiiS 5(4):19, 2015"
)
_KUAIREC_URL = "https://zenodo.org/records/18164998/files/KuaiRec.zip"
_KUAIREC_LICENCE = "CC BY-SA 4.0; cite Gao et al., CIKM 2022"

DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec(
            name="ml100k",
            url=f"{_GL}/ml-100k.zip",
            filename="ml-100k/u.data",
            target="ml-100k/u.data",
            sha256="06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
            archive="zip",
            archive_sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
            size=1_979_173,
            licence=_ML_LICENCE,
            page="https://grouplens.org/datasets/movielens/100k/",
            config="configs/ml100k.py",
        ),
        DatasetSpec(
            name="ml1m",
            url=f"{_GL}/ml-1m.zip",
            filename="ml-1m/ratings.dat",
            target="ml-1m/ratings.dat",
            sha256=None,
            archive="zip",
            archive_sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
            licence=_ML_LICENCE,
            page="https://grouplens.org/datasets/movielens/1m/",
            config="configs/ml1m.py",
        ),
        DatasetSpec(
            name="ml10m",
            url=f"{_GL}/ml-10m.zip",
            filename="ml-10M100K/ratings.dat",
            target="ml-10m/ratings.dat",
            sha256=None,
            archive="zip",
            archive_sha256="813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862",
            licence=_ML_LICENCE,
            page="https://grouplens.org/datasets/movielens/10m/",
        ),
        DatasetSpec(
            name="ml20m",
            url=f"{_GL}/ml-20m.zip",
            filename="ml-20m/ratings.csv",
            target="ml-20m/ratings.csv",
            sha256=None,
            archive="zip",
            archive_sha256="96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
            licence=_ML_LICENCE,
            page="https://grouplens.org/datasets/movielens/20m/",
            config="configs/ml20m.py",
        ),
        DatasetSpec(
            name="ml25m",
            url=f"{_GL}/ml-25m.zip",
            filename="ml-25m/ratings.csv",
            target="ml-25m/ratings.csv",
            sha256=None,
            archive="zip",
            archive_sha256="8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
            licence=_ML_LICENCE,
            page="https://grouplens.org/datasets/movielens/25m/",
        ),
        DatasetSpec(
            name="ml32m",
            url=f"{_GL}/ml-32m.zip",
            filename="ml-32m/ratings.csv",
            target="ml-32m/ratings.csv",
            sha256=None,
            archive="zip",
            licence=_ML_LICENCE,
            page="https://grouplens.org/datasets/movielens/32m/",
        ),
        DatasetSpec(
            name="taobao",
            url="https://tianchi.aliyun.com/dataset/649",
            filename="UserBehavior.csv",
            target="taobao/UserBehavior.csv",
            sha256=None,
            archive="zip",
            licence="Tianchi dataset licence: research and non-commercial use only",
            manual=(
                "needs a (free) Alibaba Cloud / Tianchi login: download UserBehavior.csv.zip "
                "from the dataset page and unzip it"
            ),
            page="https://tianchi.aliyun.com/dataset/649",
            config="configs/taobao.py",
        ),
        DatasetSpec(
            name="tianchi",
            url="https://tianchi.aliyun.com/dataset/46",
            filename="tianchi_mobile_recommend_train_user.csv",
            target="tianchi/tianchi_mobile_recommend_train_user.csv",
            sha256=None,
            archive="zip",
            licence="Tianchi dataset licence: research and non-commercial use only",
            manual=(
                "needs a (free) Alibaba Cloud / Tianchi login: download "
                "tianchi_mobile_recommend_train_user.zip (Alibaba mobile recommendation, 2015) "
                "from the dataset page and unzip it. The later 'fresh_comp' file "
                "tianchi_fresh_comp_train_user.csv has the same columns and may be used instead "
                "(pass it with --config.data.path)"
            ),
            page="https://tianchi.aliyun.com/dataset/46",
            config="configs/tianchi.py",
        ),
        DatasetSpec(
            name="yoochoose",
            url="https://s3-eu-west-1.amazonaws.com/yc-rdata/yoochoose-data.7z",
            filename="yoochoose-clicks.dat",
            target="yoochoose/yoochoose-clicks.dat",
            sha256=None,
            archive="7z",
            licence="CC BY-NC-ND 4.0 (dataset-README.txt in the archive)",
            manual=(
                "the archive is 7z, which Python cannot unpack: download yoochoose-data.7z "
                "(RecSys Challenge 2015; also mirrored at "
                "https://www.kaggle.com/datasets/chadgostopp/recsys-challenge-2015) and extract "
                "it with `7z x yoochoose-data.7z`"
            ),
            page="https://recsys.acm.org/recsys15/challenge/",
            config="configs/yoochoose.py",
        ),
        DatasetSpec(
            name="diginetica",
            url="https://competitions.codalab.org/competitions/11161",
            filename="train-item-views.csv",
            target="diginetica/train-item-views.csv",
            sha256=None,
            archive="zip",
            licence="CIKM Cup 2016 (DIGINETICA) terms: research use",
            manual=(
                "needs a CodaLab login (CIKM Cup 2016 Track 2): download "
                "dataset-train-diginetica.zip from the competition's data page and unzip it"
            ),
            page="https://competitions.codalab.org/competitions/11161",
            config="configs/diginetica.py",
        ),
        DatasetSpec(
            name="kuairec",
            url=_KUAIREC_URL,
            filename="KuaiRec 2.0/data/small_matrix.csv",
            target="kuairec/small_matrix.csv",
            sha256=None,
            archive="zip",
            licence=_KUAIREC_LICENCE,
            page="https://kuairec.com/",
            config="configs/kuairec.py",
            notes="fully observed 1,411 users x 3,327 videos; same archive as kuairec_big",
        ),
        DatasetSpec(
            name="kuairec_big",
            url=_KUAIREC_URL,
            filename="KuaiRec 2.0/data/big_matrix.csv",
            target="kuairec/big_matrix.csv",
            sha256=None,
            archive="zip",
            licence=_KUAIREC_LICENCE,
            page="https://kuairec.com/",
            notes="7,176 users x 10,728 videos, sparse; same archive as kuairec",
        ),
        DatasetSpec(
            name="criteo",
            url="https://ailab.criteo.com/ressources/",
            filename="train.txt",
            target="criteo/train.txt",
            sha256=None,
            archive="tar",
            licence="Criteo terms of use: non-commercial research (Kaggle copy: competition rules)",
            manual=(
                "the files are behind Criteo's terms-of-use page (or a Kaggle login for "
                "https://www.kaggle.com/c/criteo-display-ad-challenge): download "
                "criteo-research-kaggle-display-advertising-challenge-dataset.tar.gz (Kaggle "
                "Display Advertising Challenge, 4.3 GB) and extract train.txt; the Kaggle "
                "train.csv variant (with an Id column) works too (pass it with "
                "--config.data.path)"
            ),
            page="https://ailab.criteo.com/ressources/",
            config="configs/criteo.py",
        ),
    ]
}


def default_data_dir() -> Path:
    """``$DURGRU_DATA`` if set and non-empty, else ``data/raw`` (relative to the cwd)."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DATA_DIR)


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def _how_to(spec: DatasetSpec, target: Path) -> str:
    """Exactly what to fetch and where to put it."""
    if spec.archive:
        get = f"fetch {spec.url}, extract {spec.filename!r} from its {spec.archive} archive"
    else:
        get = f"fetch {spec.url}"
    return f"{get} and put that file at {target} (or pass --config.data.path=FILE)" + (
        f"; expected sha256 {spec.sha256}" if spec.sha256 else ""
    )


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: str | os.PathLike, spec: DatasetSpec) -> None:
    """Raises :class:`ChecksumError` if ``path`` is not ``spec``'s file (sha256, else size)."""
    path = Path(path)
    if spec.sha256:
        actual = _sha256_file(path)
        if actual != spec.sha256:
            raise ChecksumError(
                f"{path}: sha256 {actual} does not match the expected {spec.sha256} of "
                f"{spec.name} ({spec.filename}). The file is corrupt, truncated or another "
                f"version: delete it and run again to download it, or {_how_to(spec, path)}"
            )
    elif spec.size is not None:
        actual_size = path.stat().st_size
        if actual_size != spec.size:
            raise ChecksumError(
                f"{path}: {actual_size} bytes, expected {spec.size} for {spec.name} "
                f"({spec.filename}): delete it and run again, or {_how_to(spec, path)}"
            )
    else:
        logging.info("%s: no known checksum for %s; not verified", path, spec.name)


def _part(target: Path, suffix: str = "") -> Path:
    return target.with_name(f"{target.name}{suffix}.part-{secrets.token_hex(4)}")


def _copy_hashing(src: BinaryIO, dest: Path, total: int | None, what: str) -> tuple[str, int]:
    """Streams ``src`` into the new file ``dest``; returns (sha256, bytes). fsyncs ``dest``."""
    h = hashlib.sha256()
    n = 0
    next_log = 64 << 20
    with open(dest, "xb") as out:
        while chunk := src.read(_CHUNK):
            out.write(chunk)
            h.update(chunk)
            n += len(chunk)
            if n >= next_log:
                of = f" of {total / 2**20:.0f}" if total else ""
                logging.info("%s: %.0f%s MiB", what, n / 2**20, of)
                next_log += 64 << 20
        out.flush()
        os.fsync(out.fileno())
    return h.hexdigest(), n


def _fetch(url: str, dest: Path, timeout: float) -> tuple[str, int]:
    req = urllib.request.Request(url, headers={"User-Agent": "durgru-jax"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        sha, n = _copy_hashing(resp, dest, total, f"downloading {url}")
    if total is not None and n != total:
        raise DownloadError(f"transfer cut short: got {n} of {total} bytes")
    return sha, n


def _check(kind: str, actual: str, expected: str | None, n: int, what: str) -> None:
    if expected is None:
        logging.warning(
            "%s: no published %s checksum to verify against; accepted unverified "
            "(%d bytes, sha256 %s)",
            what,
            kind,
            n,
            actual,
        )
    elif actual != expected:
        raise ChecksumError(f"{what}: sha256 {actual} does not match the expected {expected}")


def _find_member(names: Sequence[str], member: str) -> str:
    if member in names:
        return member
    base = member.rsplit("/", 1)[-1]
    hits = [n for n in names if n.rsplit("/", 1)[-1] == base]
    if len(hits) == 1:
        return hits[0]
    raise DownloadError(f"the archive has no member {member!r} (it has {len(names)} members)")


def _extract(archive: Path, kind: str, member: str, dest: Path) -> tuple[str, int]:
    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            name = _find_member(zf.namelist(), member)
            info = zf.getinfo(name)
            with zf.open(info) as src:  # CRC-checked by zipfile
                return _copy_hashing(src, dest, info.file_size, f"extracting {name}")
    if kind == "tar":
        with tarfile.open(archive, "r:*") as tf:
            names = [m.name for m in tf.getmembers() if m.isfile()]
            name = _find_member(names, member)
            src = tf.extractfile(name)
            assert src is not None
            with src:
                return _copy_hashing(src, dest, None, f"extracting {name}")
    raise DownloadError(f"cannot unpack {kind} archives")


def _install_member(spec: DatasetSpec, archive: Path, target: Path) -> None:
    """Extracts ``spec``'s member to a part file, verifies it, renames it to ``target``."""
    part = _part(target)
    try:
        sha, n = _extract(archive, spec.archive or "", spec.filename, part)
        _check("file", sha, spec.sha256, n, f"{spec.name} {spec.filename}")
        if spec.sha256 is None and spec.size is not None and n != spec.size:
            raise ChecksumError(f"{spec.filename}: {n} bytes, expected {spec.size}")
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)


def _siblings(spec: DatasetSpec) -> list[DatasetSpec]:
    """Other registered datasets in the same archive (extracted alongside, once)."""
    if spec.archive is None or DATASETS.get(spec.name) != spec:
        return []
    return [
        s
        for s in DATASETS.values()
        if s.name != spec.name and s.url == spec.url and s.archive == spec.archive
    ]


def _download(spec: DatasetSpec, target: Path, data_dir: Path, timeout: float) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    logging.info("%s: downloading %s to %s", spec.name, spec.url, target)
    if spec.archive is None:
        part = _part(target)
        try:
            sha, n = _fetch(spec.url, part, timeout)
            _check("file", sha, spec.sha256, n, spec.url)
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
        return
    archive = _part(target, "." + spec.url.rsplit("/", 1)[-1].split("?")[0])
    try:
        sha, n = _fetch(spec.url, archive, timeout)
        _check("archive", sha, spec.archive_sha256, n, spec.url)
        _install_member(spec, archive, target)
        for sib in _siblings(spec):
            sib_target = data_dir / sib.target
            if sib_target.exists():
                continue
            try:
                sib_target.parent.mkdir(parents=True, exist_ok=True)
                _install_member(sib, archive, sib_target)
                logging.info("%s: also extracted %s", spec.name, sib_target)
            except Exception as e:  # noqa: BLE001 - a sibling is a bonus, never a failure
                logging.warning("%s: could not also extract %s: %s", spec.name, sib_target, e)
    finally:
        archive.unlink(missing_ok=True)


def ensure_file(
    name: str,
    data_dir: str | os.PathLike | None = None,
    allow_download: bool = True,
    *,
    spec: DatasetSpec | None = None,
    path: str | os.PathLike | None = None,
    verify: bool = True,
    timeout: float = 60.0,
) -> Path:
    """The path of dataset ``name``'s file, downloading it first if needed and possible.

    ``data_dir``: the data directory (default :func:`default_data_dir`); the file is expected
    at ``data_dir / spec.target``, or at ``path`` when given. ``spec``: overrides the
    registry entry (tests, mirrors). ``verify``: check an existing file's checksum (or size).
    Raises :class:`DatasetNotFoundError` (manual dataset, or ``allow_download=False``),
    :class:`ChecksumError` (an existing file is not the expected one) or
    :class:`DownloadError`; each message names the URL to fetch and the path to put it at.
    """
    spec = spec or get_spec(name)
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    target = Path(path) if path is not None else data_dir / spec.target
    if target.is_file():
        if verify:
            verify_file(target, spec)
        return target
    if target.exists():
        raise DatasetNotFoundError(f"{target} exists but is not a file")
    if not spec.downloadable:
        raise DatasetNotFoundError(
            f"{spec.name}: {target} not found. It cannot be downloaded automatically "
            f"({spec.manual}). To use it, {_how_to(spec, target)}. Licence: {spec.licence}."
        )
    if not allow_download:
        raise DatasetNotFoundError(
            f"{spec.name}: {target} not found and downloading is switched off. "
            f"To use it, {_how_to(spec, target)}. Licence: {spec.licence}."
        )
    try:
        _download(spec, target, data_dir, timeout)
    except Exception as e:
        raise DownloadError(
            f"{spec.name}: could not download {spec.url} ({type(e).__name__}: {e}); "
            f"nothing was left behind. To use it, {_how_to(spec, target)}."
        ) from e
    logging.info("%s: ready at %s", spec.name, target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m durgru_jax.data.download",
        description="Download datasets from their official sources, or say where to put them.",
    )
    ap.add_argument("names", nargs="*", help=f"datasets: {', '.join(DATASETS)}")
    ap.add_argument("--data-dir", default=None, help=f"default: ${ENV_VAR} or {DEFAULT_DATA_DIR}")
    ap.add_argument("--list", action="store_true", help="list the registry")
    ap.add_argument("--no-download", action="store_true", help="only check existing files")
    args = ap.parse_args(argv)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    if args.list or not args.names:
        for s in DATASETS.values():
            how = "download" if s.downloadable else "manual"
            print(f"{s.name:12s} {how:8s} {data_dir / s.target}  <- {s.url}")
        return 0
    rc = 0
    for n in args.names:
        try:
            print(ensure_file(n, data_dir, allow_download=not args.no_download))
        except (KeyError, DatasetNotFoundError, ChecksumError, DownloadError) as e:
            print(f"error: {e}", file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
