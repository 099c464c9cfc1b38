"""``make images``: the worker and operator images of ``deploy/docker/``, built without a
Docker engine into OCI archives under ``${XDG_CACHE_HOME:-~/.cache}/jobqueue/images/``.

Three steps, each cached under a digest of what goes into it:

1. The base (``PYTHON_BASE``): a Debian bookworm root file system made by ``mmdebstrap``
   with Python 3.11 and only what the Dockerfiles call (``python`` with ``venv``,
   ``groupadd``/``useradd``, ``/bin/sh``), from which every package that only installing it
   needed (dpkg, perl, debconf, coreutils...) is then purged; ``umoci`` packs it as a one-layer
   OCI image. Its key is the recipe below plus the digests of the Debian archive's package
   indices (read from the suites' InRelease files), so a Debian update makes a new base.
2. Each image: ``buildah bud --pull=never`` of its Dockerfile, unmodified, on that base, in a
   buildah store of its own that is removed afterwards. pip inside the build needs this
   machine's pip configuration and CA bundle; they are mounted read-only at paths the base
   already has (root's home, the CA bundle), because buildah leaves an empty file in the
   image for a mount point it had to create. The key covers the base, the Dockerfile, the
   build arguments and every file of the build context, which is staged from exactly the
   files hashed.
3. ``buildah push`` to ``<name>-<tag>.oci.tar`` (tag: the version of ``pyproject.toml``,
   ``-core`` for the worker without the book pipeline), sizes measured from the archive, a
   link ``images/<name>-<tag>.oci.tar`` to the newest.

``python -m cluster.images`` builds what the cache lacks and prints the archives and their
sizes; ``built()`` does the same for the tests. It needs root and Debian's mmdebstrap, umoci,
buildah and runc (``make images`` installs them). A lock keeps two runs from building at once.
"""

from __future__ import annotations

import argparse
import collections.abc
import contextlib
import dataclasses
import fnmatch
import gzip
import hashlib
import io
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import typing
import urllib.error
import urllib.request

from cluster import build, versions

ROOT: typing.Final = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILES: typing.Final = ROOT / "deploy" / "docker"
STDERR: typing.Final = 2
MB: typing.Final = 1_000_000  # sizes in decimal megabytes, as buildah and registries give them

# Each program and the Debian package that has it; buildah runs RUN steps with runc.
BUILD_TOOLS: typing.Final = {
    "mmdebstrap": "mmdebstrap",
    "mmtarfilter": "mmdebstrap",
    "umoci": "umoci",
    "buildah": "buildah",
    "runc": "runc",
}

SUITE: typing.Final = "bookworm"
MIRRORS: typing.Final = (
    ("http://deb.debian.org/debian", "bookworm"),
    ("http://deb.debian.org/debian", "bookworm-updates"),
    ("http://deb.debian.org/debian-security", "bookworm-security"),
)
# What the images run on and what the Dockerfiles' RUN steps call: /bin/sh (dash), python
# (python-is-python3) with venv (ensurepip's wheels), groupadd and useradd (passwd); and the
# one library manylinux wheels (numpy's) expect of the system that Python does not bring.
RUNTIME_PACKAGES: typing.Final = (
    "base-files",
    "base-passwd",
    "ca-certificates",
    "dash",
    "libc-bin",
    "libstdc++6",
    "netbase",
    "passwd",
    "python-is-python3",
    "python3",
    "python3-venv",
    "tzdata",
)
# What dpkg and the maintainer scripts need while installing; purged afterwards, with every
# library that only they used. A dependency on one of them does not keep it.
INSTALL_ONLY_PACKAGES: typing.Final = (
    "coreutils",
    "debconf",
    "debianutils",
    "diffutils",
    "dpkg",
    "findutils",
    "grep",
    "mawk",
    "perl-base",
    "sed",
    "tar",
)
# The purge runs in three dpkg calls: first everything else (their maintainer scripts use
# the text tools and rm), then the text tools, then what dpkg checks for at each start (tar,
# diff, rm) with dpkg itself, coreutils last since dpkg's own postrm calls rm.
TEXT_TOOLS: typing.Final = ("debianutils", "findutils", "grep", "mawk", "sed")
PURGED_LAST: typing.Final = ("diffutils", "tar", "dpkg", "coreutils")
PATH_EXCLUDES: typing.Final = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
)
MMDEBSTRAP_OPTIONS: typing.Final = (
    "--variant=custom",  # only the packages named, and what they depend on
    "--format=tar",
    # /bin, /lib and /sbin as links into /usr, as Debian has it since bookworm, without the
    # usrmerge package (and the perl it needs).
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    # No service is started by these packages; the diversion would outlive dpkg's purge.
    "--skip=chroot/start-stop-daemon",
)
BASE_ENV: typing.Final = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
)
BASE_CMD: typing.Final = "python3"
# Bump when the base is made differently in a way the data above does not show.
BASE_RECIPE_VERSION: typing.Final = 1

BUILDAH_FLAGS: typing.Final = ("--pull=never", "--network=host", "--identity-label=false")
# Bump when an image is built differently in a way its key does not show otherwise.
IMAGE_RECIPE_VERSION: typing.Final = 2
# pip inside the build: this machine's configuration and the CA bundle it names.
PIP_CONF: typing.Final = pathlib.Path("/etc/pip.conf")
CA_BUNDLE: typing.Final = pathlib.Path("/etc/ssl/certs/ca-certificates.crt")
# The images' names for a local runtime (``ctr images import``), like the test node's pause.
LOCAL_REGISTRY: typing.Final = "jobqueue.test"
KEPT_PER_IMAGE: typing.Final = 2  # cache entries kept per image tag (and bases), newest first


class BuildError(Exception):
    """The images could not be built; the message says which step failed."""


@dataclasses.dataclass(frozen=True)
class Image:
    """One image ``make images`` builds: a Dockerfile of ``deploy/docker/`` and its build
    arguments; ``variant`` goes after the version in the tag."""

    repository: str
    dockerfile: str
    what: str
    goal_mb: int  # the uncompressed size it must stay within (tests/e2e/test_images.py)
    variant: str = ""
    build_args: tuple[tuple[str, str], ...] = ()

    def tag(self, version: str) -> str:
        return f"{version}-{self.variant}" if self.variant else version

    def file_name(self, version: str) -> str:
        return f"{self.repository}-{self.tag(version)}.oci.tar"


IMAGES: typing.Final = (
    Image(
        "jobqueue-worker",
        "worker.Dockerfile",
        "the worker with the book pipeline and the UI: jobqueue[books,fast,ui], the default",
        goal_mb=300,
    ),
    Image(
        "jobqueue-worker",
        "worker.Dockerfile",
        "the worker and the UI without the book pipeline: jobqueue[fast,ui]",
        goal_mb=150,
        variant="core",
        build_args=(("EXTRAS", "fast,ui"),),
    ),
    Image(
        "jobqueue-operator",
        "operator.Dockerfile",
        "the operator: jobqueue[operator]",
        goal_mb=150,
    ),
)


@dataclasses.dataclass(frozen=True)
class Base:
    archive: pathlib.Path  # an OCI archive whose one image is tagged "base"
    key: str


@dataclasses.dataclass(frozen=True)
class Built:
    """An image in the cache: its OCI archive (one image, tagged ``tag``) and its sizes."""

    image: Image
    archive: pathlib.Path
    tag: str
    key: str
    uncompressed_bytes: int  # the layers' tar streams, as buildah and registries count
    archive_bytes: int
    layers: int
    python_distributions: tuple[str, ...]  # name-version of each in /opt/jobqueue
    build_seconds: float
    reused: bool

    @property
    def reference(self) -> str:
        return f"{self.image.repository}:{self.tag}"


def _log(message: str) -> None:
    print(f"[cluster.images] {message}", file=sys.stderr, flush=True)


def _run(
    command: collections.abc.Sequence[str | os.PathLike[str]], **options: typing.Any
) -> subprocess.CompletedProcess[str]:
    argv = [str(part) for part in command]
    result = subprocess.run(argv, check=False, text=True, **options)
    if result.returncode != 0:
        said = (result.stderr or "").strip()[-2000:]
        tail = f": {said}" if said else ""
        raise BuildError(f"`{shlex.join(argv)}` exited {result.returncode}{tail}")
    return result


def missing_tools(tools: collections.abc.Mapping[str, str] = BUILD_TOOLS) -> list[str]:
    """The Debian packages whose programs are not on PATH."""
    return sorted({package for program, package in tools.items() if not shutil.which(program)})


def package_version(root: pathlib.Path = ROOT) -> str:
    return str(tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"])


# The base.


@dataclasses.dataclass(frozen=True)
class _Package:
    name: str
    depends: tuple[tuple[str, ...], ...]  # each clause's alternatives
    provides: tuple[str, ...]
    version: str


def _names(field: str) -> list[str]:
    # "libc6 (>= 2.34), python3:any" -> names without versions or architecture qualifiers
    return [re.split(r"[\s(:]", item.strip(), maxsplit=1)[0] for item in field.split(",") if item]


def read_dpkg_status(text: str) -> dict[str, _Package]:
    """The installed packages of a ``/var/lib/dpkg/status``."""
    packages: dict[str, _Package] = {}
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line[:1].isspace() and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if not fields.get("Status", "").endswith(" installed"):
            continue
        clauses = ",".join(filter(None, (fields.get("Pre-Depends"), fields.get("Depends"))))
        depends = tuple(
            tuple(_names(clause.replace("|", ","))) for clause in clauses.split(",") if clause
        )
        name = fields["Package"]
        packages[name] = _Package(
            name, depends, tuple(_names(fields.get("Provides", ""))), fields.get("Version", "")
        )
    return packages


def runtime_closure(
    packages: collections.abc.Mapping[str, _Package],
    roots: collections.abc.Iterable[str],
    install_only: collections.abc.Container[str],
) -> set[str]:
    """``roots`` and everything they depend on, through installed packages other than
    ``install_only`` (a dependency only those satisfy is left unmet)."""
    providers: dict[str, list[str]] = {}
    for package in packages.values():
        for name in (package.name, *package.provides):
            providers.setdefault(name, []).append(package.name)
    keep: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        if name not in packages:
            raise BuildError(f"{name} is not installed in the base")
        keep.add(name)
        for alternatives in packages[name].depends:
            found = [p for a in alternatives for p in providers.get(a, []) if p not in install_only]
            if found:
                todo.append(found[0])
    return keep


def prune_rootfs(root: pathlib.Path) -> list[str]:
    """mmdebstrap's customize hook: purges every package outside the runtime closure, then
    clears what the build machine left (its resolv.conf and hostname, logs, debconf's
    cache). Returns the purged packages."""
    packages = read_dpkg_status((root / "var/lib/dpkg/status").read_text())
    drop = sorted(
        set(packages) - runtime_closure(packages, RUNTIME_PACKAGES, INSTALL_ONLY_PACKAGES)
    )
    text: list[str] = [name for name in TEXT_TOOLS if name in drop]
    tools: list[str] = [*text, *(name for name in PURGED_LAST if name in drop)]
    # The libraries the tools (dpkg among them) run on go in the last call, after them.
    late = runtime_closure(packages, tools, ()) & set(drop)
    first = [name for name in drop if name not in late]
    last = [name for name in tools if name not in text]
    last += sorted(late - set(tools))
    environment = {"PATH": BASE_ENV[0].removeprefix("PATH="), "DEBIAN_FRONTEND": "noninteractive"}
    for batch in (first, text, last):
        if batch is last:
            # dpkg purges itself after everything else of its call, coreutils included, and
            # its postrm would then run rm only to delete its logs, which go below anyway.
            (root / "var/lib/dpkg/info/dpkg.postrm").unlink(missing_ok=True)
        if batch:
            purge = ["dpkg", "--purge", "--force-remove-essential", "--force-depends", *batch]
            _run(["chroot", root, *purge], env=environment)
    shutil.rmtree(root / "var/cache/debconf", ignore_errors=True)
    for leftover in (root / "var/lib/dpkg").glob("*-old"):
        leftover.unlink()
    for log in (root / "var/log").rglob("*"):
        if log.is_file():
            log.unlink()
    for copied in ("etc/resolv.conf", "etc/hostname"):
        if (root / copied).exists():
            (root / copied).write_text("")  # the runtime mounts its own
    return drop


def _architecture() -> str:
    return _run(["dpkg", "--print-architecture"], capture_output=True).stdout.strip()


def debian_snapshot(architecture: str) -> str | None:
    """A digest of the package indices the base is made from (their hashes in each suite's
    InRelease), or None if the mirror cannot be reached."""
    digest = hashlib.sha256()
    for mirror, suite in MIRRORS:
        url = f"{mirror}/dists/{suite}/InRelease"
        try:
            with urllib.request.urlopen(url, timeout=30) as answer:
                text = answer.read().decode()
        except (OSError, urllib.error.URLError) as error:
            _log(f"cannot read {url}: {error}")
            return None
        index = f" main/binary-{architecture}/Packages.xz"
        lines = sorted(line.strip() for line in text.splitlines() if line.endswith(index))
        if not lines:
            raise BuildError(f"{url} lists no main/binary-{architecture}/Packages.xz")
        digest.update("\n".join([url, *lines]).encode())
    return digest.hexdigest()


def _base_recipe(architecture: str) -> str:
    recipe = {
        "version": BASE_RECIPE_VERSION,
        "suite": SUITE,
        "mirrors": MIRRORS,
        "architecture": architecture,
        "runtime": RUNTIME_PACKAGES,
        "install_only": INSTALL_ONLY_PACKAGES,
        "path_excludes": PATH_EXCLUDES,
        "options": MMDEBSTRAP_OPTIONS,
        "env": BASE_ENV,
        "cmd": BASE_CMD,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _tar_directory(folder: pathlib.Path, target: pathlib.Path) -> None:
    with tarfile.open(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            archive.add(path, arcname=str(path.relative_to(folder)), recursive=False)


def _base_packages(layer: pathlib.Path) -> str:
    with tarfile.open(layer) as rootfs:
        status = rootfs.extractfile("./var/lib/dpkg/status")
        if status is None:
            raise BuildError(f"{layer}: no /var/lib/dpkg/status")
        packages = read_dpkg_status(status.read().decode())
    return "".join(f"{p.name} {p.version}\n" for p in sorted(packages.values(), key=str))


def _make_base(folder: pathlib.Path, architecture: str) -> None:
    _log(f"making the base: Debian {SUITE} with Python ({', '.join(RUNTIME_PACKAGES)})")
    started = time.monotonic()
    partial = pathlib.Path(tempfile.mkdtemp(prefix=".partial-", dir=folder.parent))
    try:
        python = f"PYTHONPATH={shlex.quote(str(ROOT / 'tests'))} {shlex.quote(sys.executable)}"
        hook = f'{python} -m cluster.images --prune-rootfs "$1"'
        full = partial / "mmdebstrap.tar"
        _run(
            [
                "mmdebstrap",
                *MMDEBSTRAP_OPTIONS,
                f"--architectures={architecture}",
                "--include=" + ",".join(RUNTIME_PACKAGES + INSTALL_ONLY_PACKAGES),
                *(f"--dpkgopt={option}" for option in PATH_EXCLUDES),
                f"--customize-hook={hook}",
                SUITE,
                full,
                *(f"deb {mirror} {suite} main" for mirror, suite in MIRRORS),
            ],
            stdout=STDERR,
        )
        # The runtime makes /dev; device nodes in a layer only get in its way.
        layer = partial / "rootfs.tar"
        with full.open("rb") as source, layer.open("wb") as target:
            _run(["mmtarfilter", "--path-exclude=/dev/*"], stdin=source, stdout=target)
        full.unlink()
        layout = partial / "layout"
        image = f"{layout}:base"
        _run(["umoci", "init", "--layout", layout])
        _run(["umoci", "new", "--image", image])
        created_by = f"mmdebstrap {SUITE}: {' '.join(RUNTIME_PACKAGES)}"
        _run(
            [
                "umoci",
                "raw",
                "add-layer",
                "--image",
                image,
                "--history.created_by",
                created_by,
                layer,
            ]
        )
        env = [option for value in BASE_ENV for option in ("--config.env", value)]
        _run(["umoci", "config", "--image", image, *env, "--config.cmd", BASE_CMD])
        _run(["umoci", "gc", "--layout", layout])
        (partial / "packages.txt").write_text(_base_packages(layer))
        layer.unlink()
        _tar_directory(layout, partial / "base.oci.tar")
        shutil.rmtree(layout)
        partial.rename(folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    _log(f"base made in {time.monotonic() - started:.0f}s: {folder}")


def base_image(cache: pathlib.Path) -> Base:
    """The base for the Debian archive as it is now, made if the cache lacks it. When the
    mirror cannot be reached, the newest base of the same recipe is used, if any."""
    architecture = _architecture()
    recipe = _base_recipe(architecture)[:10]
    snapshot = debian_snapshot(architecture)
    if snapshot is None:
        made = sorted(cache.glob(f"base-{SUITE}-{recipe}-*/base.oci.tar"), key=_mtime)
        if not made:
            raise BuildError("the Debian mirror cannot be reached and no base is cached")
        _log(f"the Debian mirror cannot be reached: using {made[-1].parent.name}")
        return Base(made[-1], made[-1].parent.name)
    folder = cache / f"base-{SUITE}-{recipe}-{snapshot[:10]}"
    if not (folder / "base.oci.tar").is_file():
        _make_base(folder, architecture)
        _prune(cache, re.compile(rf"base-{SUITE}-[0-9a-f]{{10}}-[0-9a-f]{{10}}"), folder)
    return Base(folder / "base.oci.tar", folder.name)


# The images.


def _dockerignore_rules(root: pathlib.Path) -> tuple[list[str], list[str]]:
    """The paths ``.dockerignore`` lets in, and the name patterns it keeps out below them.
    Only the forms it uses are understood (``*`` first, ``!path``, ``**/pattern``); any other
    line fails, so the context staged here cannot drift from Docker's."""
    lines = [line.strip() for line in (root / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    if rules[:1] != ["*"]:
        raise BuildError(".dockerignore: the first rule must be `*` (make images relies on it)")
    included: list[str] = []
    excluded: list[str] = []
    for rule in rules[1:]:
        if rule.startswith("!") and "*" not in rule:
            included.append(rule[1:].rstrip("/"))
        elif rule.startswith("**/") and "/" not in rule[3:]:
            excluded.append(rule[3:])
        else:
            raise BuildError(f".dockerignore: make images does not understand {rule!r}")
    return included, excluded


def context_files(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    """The files of the build context, relative to ``root``, sorted."""
    included, excluded = _dockerignore_rules(root)
    found: list[pathlib.Path] = []
    for top in included:
        path = root / top
        paths = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in paths:
            relative = file.relative_to(root)
            parts = relative.parts
            if not any(
                fnmatch.fnmatchcase(part, pattern) for part in parts for pattern in excluded
            ):
                found.append(relative)
    return sorted(found)


def stage_context(source: pathlib.Path, target: pathlib.Path) -> str:
    """Copies the build context of ``source`` into ``target`` (with its ``.dockerignore``)
    and returns the digest of what was copied: paths, executable bits and contents."""
    digest = hashlib.sha256()
    for relative in [pathlib.Path(".dockerignore"), *context_files(source)]:
        copy = target / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / relative, copy)
        content = copy.read_bytes()
        executable = "x" if os.access(copy, os.X_OK) else "-"
        digest.update(f"{relative}\0{executable}\0".encode())
        digest.update(hashlib.sha256(content).digest())
    return digest.hexdigest()


def revision(root: pathlib.Path = ROOT) -> str:
    """The last commit that changed what goes into the images, ``-dirty`` if the work tree
    differs from it there; ``unknown`` outside a git checkout. Read-only git commands."""
    included, _ = _dockerignore_rules(root)
    paths = ["deploy/docker", ".dockerignore", *included]
    git = shutil.which("git")
    if git is None:
        return "unknown"
    base = [git, "--no-optional-locks", "-C", str(root)]
    log = subprocess.run(
        [*base, "log", "-1", "--format=%H", "--", *paths], capture_output=True, text=True
    )
    commit = log.stdout.strip()
    if log.returncode != 0 or not commit:
        return "unknown"
    status = subprocess.run(
        [*base, "status", "--porcelain", "--", *paths], capture_output=True, text=True
    )
    return commit + ("-dirty" if status.returncode != 0 or status.stdout.strip() else "")


def build_arguments(image: Image, version: str, revision: str, source: str) -> dict[str, str]:
    return {"VERSION": version, "REVISION": revision, "SOURCE": source, **dict(image.build_args)}


def image_key(
    image: Image,
    *,
    base_key: str,
    context_digest: str,
    arguments: dict[str, str],
    root: pathlib.Path = ROOT,
) -> str:
    recipe = {
        "version": IMAGE_RECIPE_VERSION,
        "flags": BUILDAH_FLAGS,
        "base": base_key,
        "image": [image.repository, image.variant, image.dockerfile],
        "arguments": arguments,
        "dockerfile": hashlib.sha256(
            (root / "deploy/docker" / image.dockerfile).read_bytes()
        ).hexdigest(),
        "context": context_digest,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


class _Readable(typing.Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Counting(io.RawIOBase):
    """Counts the bytes read through it."""

    def __init__(self, stream: _Readable) -> None:
        self.stream = stream
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: typing.Any) -> int:
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


def _member(archive: tarfile.TarFile, name: str) -> typing.IO[bytes]:
    member = archive.extractfile(name)
    if member is None:
        raise BuildError(f"{archive.name!r}: no {name}")
    return member


def _blob(archive: tarfile.TarFile, digest: str) -> typing.IO[bytes]:
    return _member(archive, "blobs/sha256/" + digest.removeprefix("sha256:"))


def manifest(archive: tarfile.TarFile, tag: str) -> dict[str, typing.Any]:
    """The image manifest tagged ``tag`` in an OCI archive."""
    index = json.load(_member(archive, "index.json"))
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return typing.cast(dict[str, typing.Any], json.load(_blob(archive, entry["digest"])))
    raise BuildError(f"{archive.name!r}: no image tagged {tag}")


def measure(path: pathlib.Path, tag: str) -> tuple[int, int, tuple[str, ...]]:
    """Uncompressed size, layer count and the Python distributions in ``/opt/jobqueue``."""
    total = 0
    distributions: set[str] = set()
    with tarfile.open(path) as archive:
        layers = manifest(archive, tag)["layers"]
        for layer in layers:
            blob = _blob(archive, layer["digest"])
            media = layer["mediaType"]
            if media.endswith("tar+gzip"):
                stream: _Readable = gzip.GzipFile(fileobj=blob)
            elif media.endswith(".tar"):
                stream = blob
            else:
                raise BuildError(f"{path}: layer of type {media}")
            counting = _Counting(stream)
            with tarfile.open(fileobj=counting, mode="r|") as members:
                for member in members:
                    found = re.match(
                        r"\.?/?opt/jobqueue/.*/site-packages/([^/]+)\.dist-info/", member.name
                    )
                    if found:
                        distributions.add(found.group(1))
            while counting.read(1 << 20):
                pass  # the end-of-archive padding tarfile leaves unread
            total += counting.count
    return total, len(layers), tuple(sorted(distributions))


def local_name(image: Image, version: str) -> str:
    """The name ``ctr images import`` gives the image: a reserved domain, so a runtime never
    tries to pull it from anywhere (a pod takes it with ``imagePullPolicy: Never``)."""
    return f"{LOCAL_REGISTRY}/{image.repository}:{image.tag(version)}"


def name_for_containerd(path: pathlib.Path, tag: str, name: str) -> None:
    """Adds ``io.containerd.image.name`` to the archive's index entry tagged ``tag``:
    ``ctr images import`` names an image only by that annotation (a bare tag, all that
    ``buildah push`` writes, becomes ``import-<date>:<tag>``)."""
    rewritten = path.with_name(path.name + ".partial")
    with tarfile.open(path) as source, tarfile.open(rewritten, "w") as target:
        for member in source.getmembers():
            data = source.extractfile(member) if member.isfile() else None
            if member.name == "index.json" and data is not None:
                index = json.load(data)
                for entry in index["manifests"]:
                    annotations = entry.setdefault("annotations", {})
                    if annotations.get("org.opencontainers.image.ref.name") == tag:
                        annotations["io.containerd.image.name"] = name
                text = json.dumps(index).encode()
                member.size = len(text)
                data = io.BytesIO(text)
            target.addfile(member, data)
    rewritten.replace(path)


def _mtime(path: pathlib.Path) -> float:
    return path.stat().st_mtime


def _prune(cache: pathlib.Path, name: re.Pattern[str], current: pathlib.Path) -> None:
    """Keeps the newest entries whose folder name matches ``name`` (``current`` always)."""
    entries = [p for p in cache.iterdir() if p.is_dir() and name.fullmatch(p.name) and p != current]
    for old in sorted(entries, key=_mtime, reverse=True)[KEPT_PER_IMAGE - 1 :]:
        _log(f"removing the old {old.name}")
        shutil.rmtree(old, ignore_errors=True)


class _Store:
    """A buildah store of this run's own (images, containers, layers), removed at the end."""

    def __init__(self, parent: pathlib.Path) -> None:
        self.folder = pathlib.Path(tempfile.mkdtemp(prefix=".buildah-", dir=parent))
        self.bases: dict[str, str] = {}

    def command(self, *arguments: str | os.PathLike[str]) -> list[str | os.PathLike[str]]:
        return [
            "buildah",
            "--root",
            self.folder / "root",
            "--runroot",
            self.folder / "run",
            *arguments,
        ]

    def base(self, base: Base) -> str:
        """The base pulled into the store, by the name builds give as ``PYTHON_BASE``."""
        if base.key not in self.bases:
            pulled = _run(
                self.command("pull", "--quiet", f"oci-archive:{base.archive}:base"),
                capture_output=True,
            )
            name = f"localhost/jobqueue-python-base:{base.key}"
            _run(self.command("tag", pulled.stdout.strip(), name))
            self.bases[base.key] = name
        return self.bases[base.key]

    def close(self) -> None:
        subprocess.run(self.command("rm", "--all"), capture_output=True, check=False)
        mounted = [
            line
            for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines()
            if str(self.folder) in line
        ]
        if mounted:
            _log(f"left in place, still mounted: {self.folder}")
            return
        shutil.rmtree(self.folder, ignore_errors=True)


def _pip_mounts(scratch: pathlib.Path) -> list[str]:
    """buildah options that give pip inside the build this machine's pip configuration (as
    root's own, in a home of its own) and CA bundle, read-only, at paths the base has."""
    options: list[str] = []
    if PIP_CONF.is_file():
        home = scratch / "home"
        (home / ".config" / "pip").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PIP_CONF, home / ".config" / "pip" / "pip.conf")
        options += ["--volume", f"{home}:/root:ro"]
    if CA_BUNDLE.is_file():
        options += ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    return options


def _build(
    image: Image,
    *,
    store: _Store,
    base: Base,
    context: pathlib.Path,
    arguments: dict[str, str],
    version: str,
    key: str,
    folder: pathlib.Path,
) -> Built:
    tag = image.tag(version)
    _log(f"building {image.repository}:{tag}, {image.what}")
    started = time.monotonic()
    partial = pathlib.Path(tempfile.mkdtemp(prefix=".partial-", dir=folder.parent))
    try:
        local = f"localhost/{image.repository}:{tag}"
        build_args = [f"--build-arg={name}={value}" for name, value in sorted(arguments.items())]
        _run(
            store.command(
                "bud",
                *BUILDAH_FLAGS,
                f"--build-arg=PYTHON_BASE={store.base(base)}",
                *build_args,
                *_pip_mounts(store.folder),
                "--file",
                DOCKERFILES / image.dockerfile,
                "--tag",
                local,
                context,
            ),
            stdout=STDERR,  # the build's log; standard output is for the report
        )
        archive = partial / image.file_name(version)
        _run(store.command("push", "--quiet", local, f"oci-archive:{archive}:{tag}"))
        name_for_containerd(archive, tag, local_name(image, version))
        uncompressed, layers, distributions = measure(archive, tag)
        seconds = time.monotonic() - started
        record = {
            "reference": f"{image.repository}:{tag}",
            "key": key,
            "base": base.key,
            "build_arguments": arguments,
            "uncompressed_bytes": uncompressed,
            "archive_bytes": archive.stat().st_size,
            "layers": layers,
            "python_distributions": distributions,
            "build_seconds": round(seconds, 1),
        }
        (partial / "image.json").write_text(json.dumps(record, indent=2) + "\n")
        partial.rename(folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    _log(f"built {image.repository}:{tag} in {seconds:.0f}s")
    return _load(image, folder / image.file_name(version), tag, reused=False)


def _load(image: Image, archive: pathlib.Path, tag: str, *, reused: bool) -> Built:
    record = json.loads((archive.parent / "image.json").read_text())
    return Built(
        image=image,
        archive=archive,
        tag=tag,
        key=record["key"],
        uncompressed_bytes=record["uncompressed_bytes"],
        archive_bytes=record["archive_bytes"],
        layers=record["layers"],
        python_distributions=tuple(record["python_distributions"]),
        build_seconds=record["build_seconds"],
        reused=reused,
    )


def _link(cache: pathlib.Path, built: Built) -> None:
    link = cache / built.archive.name
    temporary = cache / f".{built.archive.name}.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(built.archive.relative_to(cache))
    temporary.replace(link)


def cache_dir() -> pathlib.Path:
    return versions.cache_root() / "images"


def built(
    wanted: collections.abc.Sequence[Image] = IMAGES, *, source: str = "unknown"
) -> list[Built]:
    """The images' archives for the work tree as it is, built first where the cache has none."""
    if os.geteuid() != 0:
        raise BuildError("the images are built as root (mmdebstrap, buildah and runc run as root)")
    missing = missing_tools()
    if missing:
        raise BuildError(
            f"missing {', '.join(missing)}: apt-get install --no-install-recommends"
            f" {' '.join(missing)} (make images does it as root)"
        )
    version = package_version()
    commit = revision()
    arguments_of = {image: build_arguments(image, version, commit, source) for image in wanted}
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    results: list[Built] = []
    with build._locked(versions.cache_root() / "images.lock"), contextlib.ExitStack() as stack:
        base = base_image(cache)
        context = pathlib.Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix=".context-", dir=cache))
        )
        context_digest = stage_context(ROOT, context)
        store: _Store | None = None
        for image in wanted:
            tag = image.tag(version)
            arguments = arguments_of[image]
            key = image_key(
                image, base_key=base.key, context_digest=context_digest, arguments=arguments
            )
            folder = cache / f"{image.repository}-{tag}-{key[:12]}"
            archive = folder / image.file_name(version)
            if archive.is_file() and (folder / "image.json").is_file():
                results.append(_load(image, archive, tag, reused=True))
            else:
                if store is None:
                    store = _Store(cache)
                    stack.callback(store.close)
                results.append(
                    _build(
                        image,
                        store=store,
                        base=base,
                        context=context,
                        arguments=arguments,
                        version=version,
                        key=key,
                        folder=folder,
                    )
                )
                pattern = re.compile(
                    rf"{re.escape(image.repository)}-{re.escape(tag)}-[0-9a-f]{{12}}"
                )
                _prune(cache, pattern, folder)
            _link(cache, results[-1])
    return results


def _report(results: collections.abc.Sequence[Built], seconds: float) -> str:
    header = f"{'image':<28} {'uncompressed':>12} {'archive':>8} {'goal':>8}  archive"
    rows = [
        f"{item.reference:<28} {item.uncompressed_bytes / MB:>9.0f} MB"
        f" {item.archive_bytes / MB:>5.0f} MB {'<= ' + str(item.image.goal_mb):>8}"
        f"  {cache_dir() / item.archive.name}{'' if item.reused else '  (built now)'}"
        for item in results
    ]
    publish = "skopeo copy oci-archive:<archive> docker://<registry>/<name>:<tag>"
    return "\n".join([header, *rows, f"in {seconds:.0f}s; publish with {publish}"])


def main(argv: collections.abc.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cluster.images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--source", default="unknown", help="the repository URL for the images' source label"
    )
    parser.add_argument("--prune-rootfs", type=pathlib.Path, metavar="ROOT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.prune_rootfs is not None:
        print(f"purged: {' '.join(prune_rootfs(args.prune_rootfs))}", file=sys.stderr)
        return 0
    started = time.monotonic()
    try:
        results = built(source=args.source)
    except BuildError as error:
        print(f"cluster.images: error: {error}", file=sys.stderr)
        return 1
    print(_report(results, time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def with_files(
    built: Built,
    files: collections.abc.Mapping[str, pathlib.Path],
    env: collections.abc.Mapping[str, str],
    *,
    name: str,
    into: pathlib.Path,
) -> pathlib.Path:
    """An archive of ``built``'s image with ``files`` added (path in the image: file here,
    readable by all) and ``env`` set, named ``jobqueue.test/<name>`` for containerd: how a
    user adds their handlers to the worker image, and how the tests add theirs."""
    store = _Store(into)
    try:
        container = _run(
            store.command(
                "from", "--quiet", "--pull=never", f"oci-archive:{built.archive}:{built.tag}"
            ),
            capture_output=True,
        ).stdout.strip()
        for target, source in files.items():
            _run(store.command("copy", "--chmod", "0644", container, source, target))
        settings = [f"--env={key}={value}" for key, value in env.items()]
        _run(store.command("config", *settings, container))
        repository, _, tag = name.rpartition(":")
        local = f"localhost/{repository}:{tag}"
        _run(store.command("commit", "--quiet", container, local), capture_output=True)
        archive = into / f"{repository}-{tag}.oci.tar"
        _run(store.command("push", "--quiet", local, f"oci-archive:{archive}:{tag}"))
        name_for_containerd(archive, tag, f"{LOCAL_REGISTRY}/{name}")
        return archive
    finally:
        store.close()
