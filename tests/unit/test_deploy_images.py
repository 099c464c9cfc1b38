"""The container images (issue 12): ``deploy/docker/*.Dockerfile`` pass hadolint, copy only
files that exist, run only entry points that exist, install only the extra each image needs,
and stay non-root, pinned, multi-stage and HEALTHCHECK-free. No Docker engine runs here, so
these checks are what stands between a typo and a broken image."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import re
import shlex
import tomllib

import pytest
from deploy_files import DEPLOY, ROOT, Instruction, dockerfile_instructions, run, venv_tool

import jobqueue.settings
from jobqueue_operator import settings as operator_settings

DOCKERFILES = {name: DEPLOY / "docker" / f"{name}.Dockerfile" for name in ("worker", "operator")}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = {"worker": ("books", "fast", "ui"), "operator": ("operator",)}
PINNED_BASE = re.compile(r"python:\d+\.\d+\.\d+-slim-[a-z]+@sha256:[0-9a-f]{64}")


def _stages(path: pathlib.Path) -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for instruction in dockerfile_instructions(path):
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _final(path: pathlib.Path, keyword: str) -> list[Instruction]:
    return [i for i in _stages(path)[-1] if i.keyword == keyword]


def _exec_form(instruction: Instruction) -> list[str]:
    value = json.loads(instruction.arguments)
    assert isinstance(value, list), f"line {instruction.line}: use the exec (JSON) form"
    return [str(part) for part in value]


def test_hadolint_finds_nothing() -> None:
    done = run([venv_tool("hadolint"), "--no-color", *map(str, DOCKERFILES.values())])
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_is_really_linting(tmp_path: pathlib.Path) -> None:
    # A clean run proves nothing if the linter reads nothing: it must refuse a bad file.
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install -y curl\n")
    done = run([venv_tool("hadolint"), "--no-color", str(bad)])
    assert done.returncode != 0
    assert "DL3008" in done.stdout


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_copied_file_exists_and_is_in_the_build_context(name: str) -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line.removeprefix("!").rstrip("/") for line in ignore if line.startswith("!")}
    copies = [i for i in dockerfile_instructions(DOCKERFILES[name]) if i.keyword == "COPY"]
    local = [i for i in copies if not i.arguments.startswith("--from=")]
    assert local, "the image copies the project in"
    for instruction in local:
        *sources, _target = shlex.split(instruction.arguments)
        for source in sources:
            assert (ROOT / source).exists(), f"line {instruction.line}: no {source}"
            # .dockerignore starts with `*`: only what it lets back in reaches the build.
            assert source.rstrip("/") in allowed, f"{source} is not let in by .dockerignore"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_pinned_multistage_non_root_without_healthcheck(name: str) -> None:
    instructions = dockerfile_instructions(DOCKERFILES[name])
    base = next(
        i for i in instructions if i.keyword == "ARG" and i.arguments.startswith("PYTHON_BASE=")
    )
    assert PINNED_BASE.fullmatch(base.arguments.removeprefix("PYTHON_BASE="))
    stages = _stages(DOCKERFILES[name])
    assert len(stages) >= 2, "a build stage and a final stage"
    assert all(stage[0].arguments.split()[0] == "${PYTHON_BASE}" for stage in stages)
    assert not [i for i in instructions if i.keyword == "HEALTHCHECK"], "probes, not HEALTHCHECK"
    # The final stage gets the built virtualenv, not the sources or a pip run of its own.
    final = stages[-1]
    assert [i.arguments for i in final if i.keyword == "COPY"] == [
        "--from=build /opt/jobqueue /opt/jobqueue"
    ]
    assert not [i for i in final if i.keyword == "RUN" and "pip" in i.arguments]
    (user,) = _final(DOCKERFILES[name], "USER")
    uid, _, gid = user.arguments.partition(":")
    # Numeric and not root, so the pod's runAsNonRoot can check it.
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) > 0
    assert int(gid) > 0


@pytest.mark.parametrize("name", DOCKERFILES)
def test_oci_labels(name: str) -> None:
    text = " ".join(i.arguments for i in _final(DOCKERFILES[name], "LABEL"))
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z]+)="([^"]*)"', text))
    for key in ("title", "description", "version", "revision", "licenses", "source"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"no {key} label"
    assert labels["org.opencontainers.image.title"] == f"jobqueue-{name}"
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_installs_only_its_own_extra(name: str) -> None:
    instructions = dockerfile_instructions(DOCKERFILES[name])
    # A build argument (the worker's EXTRAS) counts with its default, what a plain build gets.
    defaults = dict(
        i.arguments.split("=", 1) for i in instructions if i.keyword == "ARG" and "=" in i.arguments
    )
    runs = re.sub(
        r"\$\{(\w+)\}",
        lambda found: defaults.get(found.group(1), found.group(0)),
        " ".join(i.arguments for i in instructions if i.keyword == "RUN"),
    )
    installed = re.findall(r'pip install [^"]*"\.\[([a-z,]+)\]"', runs)
    assert [tuple(extras.split(",")) for extras in installed] == [EXTRAS[name]]
    assert set(EXTRAS[name]) <= set(PYPROJECT["project"]["optional-dependencies"])


def test_the_operator_image_carries_no_book_pipeline() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert not set(extras["operator"]) & set(extras["books"])
    assert not [item for item in extras["operator"] if item.startswith("jobqueue[")]


def test_worker_entry_point_runs_its_command() -> None:
    entrypoint = _exec_form(_final(DOCKERFILES["worker"], "ENTRYPOINT")[0])
    command = _exec_form(_final(DOCKERFILES["worker"], "CMD")[0])
    assert entrypoint == ["jobqueue"]
    assert "jobqueue" in PYPROJECT["project"]["scripts"]
    done = run([venv_tool("jobqueue"), *command, "--help"])
    assert done.returncode == 0, done.stderr


def test_worker_image_serves_probes_on_the_port_it_exposes() -> None:
    (expose,) = _final(DOCKERFILES["worker"], "EXPOSE")
    env = " ".join(i.arguments for i in _final(DOCKERFILES["worker"], "ENV"))
    assert f"{jobqueue.settings.METRICS_PORT.env}={expose.arguments}" in env.split()


def test_operator_entry_point_is_the_operator_module() -> None:
    entrypoint = _exec_form(_final(DOCKERFILES["operator"], "ENTRYPOINT")[0])
    assert entrypoint == ["python", "-m", "jobqueue_operator"]
    (expose,) = _final(DOCKERFILES["operator"], "EXPOSE")
    assert int(expose.arguments) == operator_settings.METRICS_PORT.default


@pytest.mark.xfail(
    importlib.util.find_spec("jobqueue_operator.__main__") is None,
    reason="operator/jobqueue_operator/__main__.py comes with the operator (issue 11)",
    strict=True,
)
def test_operator_module_is_runnable() -> None:
    # Until issue 11 lands this is an expected failure, listed in every run's summary; once
    # __main__.py exists the mark turns off and the check is an ordinary one.
    assert importlib.util.find_spec("jobqueue_operator.__main__") is not None
