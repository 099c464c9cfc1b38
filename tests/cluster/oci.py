"""OCI image archives written in Python, for the few images the test node needs that are no
more than one static binary (the pod sandbox's ``pause``): a layer holding the file, a
config, a manifest and an index, tarred the way ``ctr images import`` reads them."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import pathlib
import tarfile
import typing

MEDIA: typing.Final = "application/vnd.oci.image"
# Fixed, so that the same binary always makes the same image (and digest).
EPOCH: typing.Final = 0


def _blob(files: dict[str, bytes], data: bytes) -> dict[str, typing.Any]:
    digest = hashlib.sha256(data).hexdigest()
    files[f"blobs/sha256/{digest}"] = data
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _layer(binary: pathlib.Path, path_in_image: str) -> tuple[bytes, str]:
    """The layer (gzipped tar of one executable) and its uncompressed digest."""
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = binary.read_bytes()
        info = tarfile.TarInfo(path_in_image.lstrip("/"))
        info.size, info.mode, info.mtime = len(data), 0o755, EPOCH
        tar.addfile(info, io.BytesIO(data))
    raw = plain.getvalue()
    return gzip.compress(raw, mtime=EPOCH), "sha256:" + hashlib.sha256(raw).hexdigest()


def write_single_binary_image(
    binary: pathlib.Path,
    archive: pathlib.Path,
    *,
    reference: str,
    path_in_image: str = "/pause",
    user: str = "65535:65535",
) -> None:
    """An image of ``binary`` alone, run as ``path_in_image`` by ``user``, written to the tar
    ``archive`` under the name ``reference`` (``registry/name:tag``)."""
    files: dict[str, bytes] = {}
    layer, diff_id = _layer(binary, path_in_image)
    layer_blob = _blob(files, layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": [path_in_image], "User": user},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_blob = _blob(files, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": f"{MEDIA}.manifest.v1+json",
        "config": {"mediaType": f"{MEDIA}.config.v1+json", **config_blob},
        "layers": [{"mediaType": f"{MEDIA}.layer.v1.tar+gzip", **layer_blob}],
    }
    manifest_blob = _blob(files, json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": f"{MEDIA}.index.v1+json",
        "manifests": [
            {
                "mediaType": f"{MEDIA}.manifest.v1+json",
                **manifest_blob,
                "annotations": {
                    "io.containerd.image.name": reference,
                    "org.opencontainers.image.ref.name": reference.rpartition(":")[2],
                },
            }
        ],
    }
    files["index.json"] = json.dumps(index, sort_keys=True).encode()
    files["oci-layout"] = json.dumps({"imageLayoutVersion": "1.0.0"}).encode()
    with tarfile.open(archive, "w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), EPOCH
            tar.addfile(info, io.BytesIO(data))
