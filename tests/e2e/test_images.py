"""The images of ``make images`` (``tests/cluster/images.py``, issue 22): each archive is
unpacked with umoci and run with runc the way a restricted pod runs it (read-only root, the
image's user, no capabilities), searched for what only the build needed, held to its size
goal, published with skopeo and imported into containerd the way the real node imports it.
The archives come from the cache (``make e2e`` builds them before pytest starts); the cache
key is checked against edits of what goes into an image."""

from __future__ import annotations

import collections.abc
import dataclasses
import errno
import gzip
import itertools
import json
import os
import pathlib
import re
import shutil
import subprocess
import tarfile
import typing

import pytest
import waiting
from deploy_files import outside_program

from cluster import images, node

# A cold build (the Debian base and three images) takes a minute or two on two cores.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1200)]

UID: typing.Final = 65532  # the manifests' runAsUser
IDS: typing.Final = [f"{i.repository}{'-' + i.variant if i.variant else ''}" for i in images.IMAGES]
# The web UI (`jobqueue ui`, the ui extra): in both worker images, which the chart runs it on.
# (The operator image holds the plugin's code, as every image holds the wheel's packages,
# but none of what it needs.)
UI_DEPENDENCIES: typing.Final = ("starlette", "jinja2", "uvicorn", "python_multipart")
UI_MODULES: typing.Final = ("jobqueue_ui", *UI_DEPENDENCIES)
# What each image must import, and must not have (the operator carries no book pipeline).
MODULES: typing.Final = {
    ("jobqueue-worker", ""): (
        ("lxml.etree", "numpy", "uvloop", "psycopg", *UI_MODULES),
        ("kopf",),
    ),
    ("jobqueue-worker", "core"): (("uvloop", "psycopg", *UI_MODULES), ("lxml", "numpy", "kopf")),
    ("jobqueue-operator", ""): (
        ("kopf", "aiohttp", "psycopg"),
        ("lxml", "numpy", "uvloop", "kubernetes", *UI_DEPENDENCIES),
    ),
}
# The image's own layer: the virtualenv and the user's entries; anything else (an empty
# mount point such as /etc/pip.conf, a cache under /root) is left over from the build.
OWN_LAYER: typing.Final = re.compile(
    r"(etc|opt|run|etc/\.pwd\.lock|etc/(passwd|group|shadow|gshadow)-?|opt/jobqueue(/.*)?)"
)
COMPILERS: typing.Final = re.compile(
    r"(x86_64-linux-gnu-)?(cc|c\+\+|cpp|gcc|g\+\+|clang(\+\+)?|tcc|ld(\.bfd|\.gold)?|as|make)(-[0-9.]+)?"
)
_containers = itertools.count(1)


def _require_root_and_tools() -> None:
    for program, package in {**images.BUILD_TOOLS, "skopeo": "skopeo"}.items():
        outside_program(program, f"Debian's {package} package (`make images` installs it)")
    if os.geteuid() != 0:
        reason = "the images are built and run as root (mmdebstrap, buildah, runc)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def built() -> dict[images.Image, images.Built]:
    _require_root_and_tools()
    return {item.image: item for item in images.built()}


@dataclasses.dataclass
class Bundle:
    """An image unpacked by umoci into a runtime bundle, run with runc."""

    folder: pathlib.Path
    image_config: dict[str, typing.Any]
    runtime_config: dict[str, typing.Any]
    state: pathlib.Path

    @property
    def rootfs(self) -> pathlib.Path:
        return self.folder / "rootfs"

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """``argv`` in a container as a restricted pod runs it: the image's user and
        environment, a read-only root, no capabilities, no new privileges, no network."""
        config = json.loads(json.dumps(self.runtime_config))
        process = config["process"]
        process.update(
            terminal=False,
            args=argv,
            env=self.image_config["config"]["Env"],
            noNewPrivileges=True,
            capabilities={kind: [] for kind in process["capabilities"]},
        )
        config["root"]["readonly"] = True
        (self.folder / "config.json").write_text(json.dumps(config))
        name = f"jobqueue-images-{os.getpid()}-{next(_containers)}"
        return subprocess.run(
            ["runc", "--root", str(self.state), "run", "--bundle", str(self.folder), name],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def _layout(archive: pathlib.Path, into: pathlib.Path) -> pathlib.Path:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def _config(layout: pathlib.Path, tag: str) -> dict[str, typing.Any]:
    index = json.loads((layout / "index.json").read_text())
    (entry,) = (
        m
        for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == tag
    )
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / entry["digest"].removeprefix("sha256:")).read_text())
    digest = manifest["config"]["digest"].removeprefix("sha256:")
    return typing.cast(dict[str, typing.Any], json.loads((blobs / digest).read_text()))


@pytest.fixture(scope="module")
def bundles(
    built: dict[images.Image, images.Built], tmp_path_factory: pytest.TempPathFactory
) -> collections.abc.Callable[[images.Image], Bundle]:
    """Each image unpacked once, when a test first asks for it."""
    unpacked: dict[images.Image, Bundle] = {}
    state = tmp_path_factory.mktemp("runc-state")

    def bundle(image: images.Image) -> Bundle:
        if image not in unpacked:
            item = built[image]
            work = tmp_path_factory.mktemp(item.archive.name.removesuffix(".oci.tar"))
            layout = _layout(item.archive, work / "layout")
            folder = work / "bundle"
            done = subprocess.run(
                ["umoci", "unpack", "--image", f"{layout}:{item.tag}", str(folder)],
                capture_output=True,
                text=True,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            runtime = json.loads((folder / "config.json").read_text())
            unpacked[image] = Bundle(folder, _config(layout, item.tag), runtime, state)
        return unpacked[image]

    return bundle


@pytest.mark.parametrize("image", images.IMAGES, ids=IDS)
def test_help_runs_on_a_read_only_root_as_the_image_user(
    image: images.Image, bundles: collections.abc.Callable[[images.Image], Bundle]
) -> None:
    bundle = bundles(image)
    config = bundle.image_config["config"]
    entrypoint = list(config["Entrypoint"])
    commands = [[*entrypoint, "--help"]]
    if config.get("Cmd"):  # the worker's default command, `jobqueue worker`
        commands.append([*entrypoint, *config["Cmd"], "--help"])
    for argv in commands:
        done = bundle.run(argv)
        assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
        program = "python -m jobqueue_operator" if argv[0] == "python" else "jobqueue"
        assert done.stdout.startswith(f"usage: {program}"), done.stdout


@pytest.mark.parametrize("image", images.IMAGES, ids=IDS)
def test_runs_as_the_fixed_non_root_user_on_a_root_it_cannot_write(
    image: images.Image, bundles: collections.abc.Callable[[images.Image], Bundle]
) -> None:
    bundle = bundles(image)
    assert bundle.image_config["config"]["User"] == f"{UID}:{UID}"
    assert bundle.runtime_config["process"]["user"]["uid"] == UID
    assert f"jobqueue:x:{UID}:{UID}:" in (bundle.rootfs / "etc/passwd").read_text()
    probe = """if True:
        import errno, json, os
        try:
            open("/tmp/probe", "w").close()  # /tmp is on the root here, world-writable
            refused = 0
        except OSError as error:
            refused = error.errno
        flags = os.statvfs("/").f_flag
        print(json.dumps([os.getuid(), os.getgid(), bool(flags & os.ST_RDONLY), refused]))
    """
    done = bundle.run(["python", "-c", probe])
    assert done.returncode == 0, done.stderr
    uid, gid, read_only, refused = json.loads(done.stdout)
    assert (uid, gid) == (UID, UID)
    assert read_only
    assert refused == errno.EROFS


@pytest.mark.parametrize("image", images.IMAGES, ids=IDS)
def test_has_its_extras_and_no_other(
    image: images.Image, bundles: collections.abc.Callable[[images.Image], Bundle]
) -> None:
    present, absent = MODULES[image.repository, image.variant]
    script = (
        "import importlib, importlib.util, sys\n"
        "for name in sys.argv[1].split(','): importlib.import_module(name)\n"
        "print(','.join(n for n in sys.argv[2].split(',') if importlib.util.find_spec(n)))\n"
    )
    done = bundles(image).run(["python", "-c", script, ",".join(present), ",".join(absent)])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"should not be in the image: {done.stdout}"


def test_the_book_worker_embeds_with_the_weights_it_ships(
    bundles: collections.abc.Callable[[images.Image], Bundle],
) -> None:
    # No network in the container: the default embedder's weights must be in the image.
    worker = next(i for i in images.IMAGES if i.repository == "jobqueue-worker" and not i.variant)
    script = (
        "from jobqueue_books import embedding\n"
        "vectors = embedding.load_embedder('use').embed(['a lighthouse keeper', 'маяк'])\n"
        "print(len(vectors), len(vectors[0]))\n"
    )
    done = bundles(worker).run(["python", "-c", script])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "512"]


@pytest.mark.parametrize("image", images.IMAGES, ids=IDS)
def test_nothing_the_build_only_needed_is_left(
    image: images.Image,
    built: dict[images.Image, images.Built],
    bundles: collections.abc.Callable[[images.Image], Bundle],
) -> None:
    root = bundles(image).rootfs
    site = next((root / "opt/jobqueue/lib").glob("python3*/site-packages"))
    for gone in (
        "etc/pip.conf",
        "etc/xdg/pip",
        "root/.config",
        "root/.cache",
        "opt/jobqueue/pip.conf",
    ):
        assert not (root / gone).exists(), gone
    caches = [p for p in root.rglob("pip") if ".cache" in p.parts]
    assert caches == [], "pip's cache"
    assert list((root / "opt/jobqueue/bin").glob("pip*")) == []
    for tool in ("pip", "setuptools", "pkg_resources", "_distutils_hack"):
        assert not (site / tool).exists(), f"{tool} in the virtualenv"
    for folder in ("usr/bin", "usr/sbin", "usr/local/bin", "opt/jobqueue/bin"):
        found = [p.name for p in (root / folder).iterdir() if COMPILERS.fullmatch(p.name)]
        assert found == [], f"compilers in /{folder}"
    # The base keeps no installer: no dpkg, apt or perl (the dpkg database stays, for scanners).
    for program in ("dpkg", "apt", "apt-get", "perl", "debconf"):
        assert not (root / "usr/bin" / program).exists(), program
    status = images.read_dpkg_status((root / "var/lib/dpkg/status").read_text())
    assert set(status) & set(images.INSTALL_ONLY_PACKAGES) == set()
    assert {"python3.11", "passwd", "tzdata"} <= set(status)
    dangling = [
        str(link)
        for folder in ("usr/bin", "usr/sbin")
        for link in (root / folder).iterdir()
        if link.is_symlink() and not _resolves(root, link)
    ]
    assert dangling == [], "commands pointing at purged files"
    # The image's own layer holds the virtualenv and the user's entries, nothing else.
    extra = [
        name
        for name in _top_layer(built[image].archive, built[image].tag)
        if not OWN_LAYER.fullmatch(name)
    ]
    assert extra == [], "left in the image's layer by the build"


def _resolves(root: pathlib.Path, link: pathlib.Path) -> bool:
    target = pathlib.Path(os.readlink(link))
    for _ in range(10):  # follow the link inside the image, not on this machine
        path = root / target.relative_to("/") if target.is_absolute() else link.parent / target
        if not path.is_symlink():
            return path.exists()
        link, target = path, pathlib.Path(os.readlink(path))
    return False


def _top_layer(archive: pathlib.Path, tag: str) -> list[str]:
    with tarfile.open(archive) as outer:
        layer = images.manifest(outer, tag)["layers"][-1]
        blob = outer.extractfile("blobs/sha256/" + layer["digest"].removeprefix("sha256:"))
        assert blob is not None
        with tarfile.open(fileobj=gzip.GzipFile(fileobj=blob), mode="r|") as members:
            return [member.name.removeprefix("./").rstrip("/") for member in members]


def test_sizes_are_within_their_goals(built: dict[images.Image, images.Built]) -> None:
    # The issue's goal for the worker without the book pipeline; the others are held where
    # they are (see the README for why the operator is larger).
    assert next(i for i in images.IMAGES if i.variant == "core").goal_mb == 150
    for image, item in built.items():
        assert item.uncompressed_bytes <= image.goal_mb * images.MB, (
            f"{item.reference}: {item.uncompressed_bytes / images.MB:.0f} MB"
        )
        assert item.archive_bytes == item.archive.stat().st_size
        assert 0 < item.archive_bytes < item.uncompressed_bytes
        assert item.layers == 2, "the base and the image's own layer"


@pytest.mark.parametrize("image", images.IMAGES, ids=IDS)
def test_size_is_what_the_image_unpacks_to(
    image: images.Image,
    built: dict[images.Image, images.Built],
    bundles: collections.abc.Callable[[images.Image], Bundle],
) -> None:
    # The measured size against the unpacked files: the layers' tar streams add headers.
    root = bundles(image).rootfs
    inodes = {p.lstat().st_ino: p.lstat().st_size for p in root.rglob("*") if not p.is_symlink()}
    files = sum(size for size in inodes.values())
    assert files <= built[image].uncompressed_bytes <= files * 1.2


@pytest.mark.parametrize("image", images.IMAGES, ids=IDS)
def test_archive_is_ready_to_publish_with_skopeo(
    image: images.Image, built: dict[images.Image, images.Built], tmp_path: pathlib.Path
) -> None:
    item = built[image]
    done = subprocess.run(
        ["skopeo", "inspect", f"oci-archive:{item.archive}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    labels = json.loads(done.stdout)["Labels"]
    assert labels["org.opencontainers.image.title"] == image.repository
    assert labels["org.opencontainers.image.version"] == images.package_version()
    record = json.loads((item.archive.parent / "image.json").read_text())
    assert labels["org.opencontainers.image.revision"] == record["build_arguments"]["REVISION"]
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", record["build_arguments"]["REVISION"])
    # What `skopeo copy ... docker://registry/...` does, into a layout instead of a registry.
    target = f"oci:{tmp_path / 'copy'}:{item.tag}"
    done = subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci-archive:{item.archive}", target],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_archives_import_into_containerd_under_their_names(
    built: dict[images.Image, images.Built], tmp_path: pathlib.Path
) -> None:
    """As the real node imports images: plain ``ctr images import``."""
    if shutil.which("containerd") is None:
        try:
            node.install_packages()
        except node.NodeError as error:
            outside_program("containerd", f"Debian's containerd package ({error})")
    socket = tmp_path / "containerd.sock"
    config = tmp_path / "containerd.toml"
    config.write_text(
        f'version = 2\nroot = "{tmp_path / "root"}"\nstate = "{tmp_path / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{socket}"\n'
    )
    log = (tmp_path / "containerd.log").open("w")
    daemon = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=log)
    ctr = ["ctr", "--address", str(socket), "-n", node.NAMESPACE]
    try:
        waiting.eventually_sync(
            lambda: (
                subprocess.run([*ctr, "version"], capture_output=True, check=False).returncode == 0
            ),
            timeout=30,
            what="containerd's socket",
        )
        for item in built.values():
            done = subprocess.run(
                [*ctr, "images", "import", str(item.archive)],
                capture_output=True,
                text=True,
                check=False,
            )
            assert done.returncode == 0, done.stderr
        listed = subprocess.run(
            [*ctr, "images", "ls", "-q"], capture_output=True, text=True, check=True
        )
        version = images.package_version()
        names = {images.local_name(image, version) for image in built}
        assert names <= set(listed.stdout.split()), listed.stdout
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        log.close()


def test_a_second_build_takes_the_archives_from_the_cache(
    built: dict[images.Image, images.Built],
) -> None:
    stamps = {item.archive: item.archive.stat().st_mtime_ns for item in built.values()}
    again = images.built()
    assert all(item.reused for item in again)
    assert {item.archive: item.archive.stat().st_mtime_ns for item in again} == stamps
    for item in again:  # the stable name the real node and publishing use
        link = images.cache_dir() / item.archive.name
        assert link.resolve() == item.archive.resolve()


def test_the_key_follows_what_goes_into_an_image(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "tree"
    for path in (
        "pyproject.toml",
        "README.md",
        ".dockerignore",
        "worker",
        "operator",
        "deploy/docker",
    ):
        source = images.ROOT / path
        if source.is_dir():
            shutil.copytree(source, root / path, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / path)
    image = next(i for i in images.IMAGES if i.variant == "core")
    arguments = images.build_arguments(image, "0.1.0", "abc", "unknown")
    stages = itertools.count()

    def key(base: str = "base", args: dict[str, str] | None = None) -> str:
        digest = images.stage_context(root, tmp_path / f"context-{next(stages)}")
        return images.image_key(
            image, base_key=base, context_digest=digest, arguments=args or arguments, root=root
        )

    first = key()
    assert key() == first
    # Not in the build context: bytecode, and files outside what .dockerignore lets in.
    (root / "worker/jobqueue/__pycache__").mkdir(exist_ok=True)
    (root / "worker/jobqueue/__pycache__/cli.cpython-311.pyc").write_bytes(b"\0")
    (root / "notes.txt").write_text("not copied into the image")
    assert key() == first
    assert key(base="another base") != first
    assert key(args={**arguments, "EXTRAS": "books,fast"}) != first
    dockerfile = root / "deploy/docker" / image.dockerfile
    dockerfile.write_text(dockerfile.read_text() + "\n")
    changed = key()
    assert changed != first
    source = root / "worker/jobqueue/cli.py"
    source.write_text(source.read_text() + "\n# edited\n")
    assert key() != changed
    # A new file in a package goes in too.
    before = key()
    (root / "operator/jobqueue_operator/new_module.py").write_text("")
    assert key() != before


def test_the_base_keeps_the_runtime_closure_only() -> None:
    status = """Package: app
Status: install ok installed
Version: 1
Depends: libc6 (>= 2.34), awk | mawk, debconf (>= 0.5) | debconf-2.0

Package: libc6
Status: install ok installed
Version: 2

Package: gawk
Status: install ok installed
Version: 3
Provides: awk

Package: debconf
Status: install ok installed
Version: 4
Provides: debconf-2.0
Depends: perl-base

Package: perl-base
Status: install ok installed
Version: 5

Package: removed
Status: deinstall ok config-files
Version: 6
"""
    packages = images.read_dpkg_status(status)
    assert set(packages) == {"app", "libc6", "gawk", "debconf", "perl-base"}
    # A dependency only an installer satisfies is left unmet; a virtual one is followed.
    assert images.runtime_closure(packages, ["app"], {"debconf"}) == {"app", "libc6", "gawk"}
    everything = {"app", "libc6", "gawk", "debconf", "perl-base"}
    assert images.runtime_closure(packages, ["app"], ()) == everything
