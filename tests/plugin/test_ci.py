"""CI metadata: what each CI service's environment gives, the git fallback, and joined shards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_testoqa import ci
from pytest_testoqa.ci import PROVIDERS
from pytest_testoqa.settings import OPTIONS, TOKEN_ENV
from tests.plugin.conftest import LiveServer

pytestmark = pytest.mark.timeout(180)

INNER_TIMEOUT = 120.0
GIT_TIMEOUT = 30.0
SHA = "3f786850e387550fdab836ed7e6dc881de23001b"
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]

# (environment, expected CiInfo fields) for each CI service, as its builds set them.
PROVIDER_CASES = [
    pytest.param(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_REPOSITORY": "acme/shop",
            "GITHUB_RUN_ID": "7001",
            "GITHUB_RUN_ATTEMPT": "2",
            "GITHUB_REF": "refs/heads/main",
            "GITHUB_REF_NAME": "main",
            "GITHUB_HEAD_REF": "",
            "GITHUB_SHA": SHA,
            "GITHUB_JOB": "tests",
        },
        {
            "provider": "github-actions",
            "branch": "main",
            "commit": SHA,
            "build_url": "https://github.com/acme/shop/actions/runs/7001",
            "job": "tests",
            "pull_request": None,
            "build_id": "7001-2",
        },
        id="github-push",
    ),
    pytest.param(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_REPOSITORY": "acme/shop",
            "GITHUB_RUN_ID": "7002",
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_REF": "refs/pull/42/merge",
            "GITHUB_REF_NAME": "42/merge",
            "GITHUB_HEAD_REF": "feature/login",
            "GITHUB_SHA": SHA,
            "GITHUB_JOB": "tests",
        },
        {
            "provider": "github-actions",
            "branch": "feature/login",
            "commit": SHA,
            "build_url": "https://github.com/acme/shop/actions/runs/7002",
            "job": "tests",
            "pull_request": "42",
            "build_id": "7002-1",
        },
        id="github-pull-request",
    ),
    pytest.param(
        {
            "GITLAB_CI": "true",
            "CI_COMMIT_REF_NAME": "feature/cart",
            "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature/cart",
            "CI_COMMIT_SHA": SHA,
            "CI_PIPELINE_URL": "https://gitlab.com/acme/shop/-/pipelines/99",
            "CI_JOB_NAME": "pytest 1/2",
            "CI_MERGE_REQUEST_IID": "12",
            "CI_PIPELINE_ID": "99",
        },
        {
            "provider": "gitlab-ci",
            "branch": "feature/cart",
            "commit": SHA,
            "build_url": "https://gitlab.com/acme/shop/-/pipelines/99",
            "job": "pytest 1/2",
            "pull_request": "12",
            "build_id": "99",
        },
        id="gitlab-merge-request",
    ),
    pytest.param(
        {
            "JENKINS_URL": "https://jenkins.example.test/",
            "GIT_BRANCH": "origin/main",
            "GIT_COMMIT": SHA,
            "BUILD_URL": "https://jenkins.example.test/job/shop/42/",
            "JOB_NAME": "shop",
            "BUILD_TAG": "jenkins-shop-42",
        },
        {
            "provider": "jenkins",
            "branch": "main",
            "commit": SHA,
            "build_url": "https://jenkins.example.test/job/shop/42/",
            "job": "shop",
            "pull_request": None,
            "build_id": "jenkins-shop-42",
        },
        id="jenkins",
    ),
    pytest.param(
        {
            "JENKINS_URL": "https://jenkins.example.test/",
            "BRANCH_NAME": "PR-17",
            "CHANGE_BRANCH": "feature/search",
            "CHANGE_ID": "17",
            "GIT_COMMIT": SHA,
            "BUILD_URL": "https://jenkins.example.test/job/shop/job/PR-17/3/",
            "JOB_NAME": "shop/PR-17",
            "BUILD_TAG": "jenkins-shop-PR-17-3",
        },
        {
            "provider": "jenkins",
            "branch": "feature/search",
            "commit": SHA,
            "build_url": "https://jenkins.example.test/job/shop/job/PR-17/3/",
            "job": "shop/PR-17",
            "pull_request": "17",
            "build_id": "jenkins-shop-PR-17-3",
        },
        id="jenkins-multibranch-pr",
    ),
    pytest.param(
        {
            "CIRCLECI": "true",
            "CIRCLE_BRANCH": "feature/pay",
            "CIRCLE_SHA1": SHA,
            "CIRCLE_BUILD_URL": "https://circleci.com/gh/acme/shop/321",
            "CIRCLE_JOB": "test",
            "CIRCLE_PULL_REQUEST": "https://github.com/acme/shop/pull/8",
            "CIRCLE_WORKFLOW_ID": "6e3a1f0c-workflow",
            "CIRCLE_BUILD_NUM": "321",
        },
        {
            "provider": "circleci",
            "branch": "feature/pay",
            "commit": SHA,
            "build_url": "https://circleci.com/gh/acme/shop/321",
            "job": "test",
            "pull_request": "8",
            "build_id": "6e3a1f0c-workflow",
        },
        id="circleci",
    ),
    pytest.param(
        {
            "BUILDKITE": "true",
            "BUILDKITE_BRANCH": "main",
            "BUILDKITE_COMMIT": SHA,
            "BUILDKITE_BUILD_URL": "https://buildkite.com/acme/shop/builds/55",
            "BUILDKITE_LABEL": ":pytest: tests",
            "BUILDKITE_JOB_ID": "0190-job",
            "BUILDKITE_PULL_REQUEST": "false",
            "BUILDKITE_BUILD_ID": "0190-build",
        },
        {
            "provider": "buildkite",
            "branch": "main",
            "commit": SHA,
            "build_url": "https://buildkite.com/acme/shop/builds/55",
            "job": ":pytest: tests",
            "pull_request": None,
            "build_id": "0190-build",
        },
        id="buildkite",
    ),
    pytest.param(
        {
            "TF_BUILD": "True",
            "SYSTEM_COLLECTIONURI": "https://dev.azure.com/acme/",
            "SYSTEM_TEAMPROJECT": "shop",
            "BUILD_BUILDID": "77",
            "BUILD_SOURCEBRANCH": "refs/pull/5/merge",
            "SYSTEM_PULLREQUEST_SOURCEBRANCH": "refs/heads/feature/api",
            "SYSTEM_PULLREQUEST_PULLREQUESTID": "5",
            "BUILD_SOURCEVERSION": SHA,
            "SYSTEM_JOBDISPLAYNAME": "Run tests",
        },
        {
            "provider": "azure-pipelines",
            "branch": "feature/api",
            "commit": SHA,
            "build_url": "https://dev.azure.com/acme/shop/_build/results?buildId=77",
            "job": "Run tests",
            "pull_request": "5",
            "build_id": "77",
        },
        id="azure-pull-request",
    ),
    pytest.param(
        {
            "BITBUCKET_BUILD_NUMBER": "314",
            "BITBUCKET_BRANCH": "feature/mail",
            "BITBUCKET_COMMIT": SHA,
            "BITBUCKET_GIT_HTTP_ORIGIN": "http://bitbucket.org/acme/shop",
            "BITBUCKET_STEP_UUID": "{step-uuid}",
            "BITBUCKET_PR_ID": "3",
            "BITBUCKET_PIPELINE_UUID": "{pipeline-uuid}",
        },
        {
            "provider": "bitbucket-pipelines",
            "branch": "feature/mail",
            "commit": SHA,
            "build_url": "http://bitbucket.org/acme/shop/addon/pipelines/home#!/results/314",
            "job": "{step-uuid}",
            "pull_request": "3",
            "build_id": "{pipeline-uuid}",
        },
        id="bitbucket",
    ),
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop CI and TestoQA variables of the outer environment."""
    for variable, _ in PROVIDERS:
        monkeypatch.delenv(variable, raising=False)
    for option in OPTIONS:
        monkeypatch.delenv(option.env, raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)


def git(directory: Path, *args: str) -> str:
    completed = subprocess.run(
        [
            "git",
            "-c",
            "user.name=TestoQA tests",
            "-c",
            "user.email=tests@example.test",
            "-c",
            "commit.gpgsign=false",
            *args,
        ],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT,
        check=True,
    )
    return completed.stdout.strip()


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A git repository on branch 'trunk' with one commit."""
    directory = tmp_path / "repository"
    directory.mkdir()
    git(directory, "init", "--quiet")
    git(directory, "symbolic-ref", "HEAD", "refs/heads/trunk")
    (directory / "README").write_text("hello\n")
    git(directory, "add", "README")
    git(directory, "commit", "--quiet", "-m", "Add a readme")
    return directory


# --- providers -----------------------------------------------------------------


@pytest.mark.parametrize(("env", "expected"), PROVIDER_CASES)
def test_provider_detected(
    env: dict[str, str], expected: dict[str, str | None], tmp_path: Path
) -> None:
    info = ci.detect(env, tmp_path)

    for name, value in expected.items():
        assert getattr(info, name) == value, name


def test_every_provider_covered() -> None:
    covered = {case.values[1]["provider"] for case in PROVIDER_CASES}  # type: ignore[index]

    assert len(covered) == len(PROVIDERS)


def test_provider_wins_over_git(repository: Path) -> None:
    env = {"BUILDKITE": "true", "BUILDKITE_BRANCH": "release", "BUILDKITE_COMMIT": SHA}

    info = ci.detect(env, repository)

    assert info.provider == "buildkite"
    assert info.branch == "release"
    assert info.commit == SHA


def test_payload_drops_empty_fields() -> None:
    info = ci.CiInfo(provider="jenkins", branch="main", build_id="jenkins-shop-1")

    assert info.payload() == {"provider": "jenkins", "branch": "main"}


# --- git fallback ------------------------------------------------------------------


def test_git_fallback(repository: Path) -> None:
    info = ci.detect({}, repository)

    assert info.commit == git(repository, "rev-parse", "HEAD")
    assert info.branch == "trunk"
    assert info.provider is None
    assert info.build_id is None


def test_git_fallback_from_subdirectory(repository: Path) -> None:
    subdirectory = repository / "tests" / "unit"
    subdirectory.mkdir(parents=True)

    info = ci.detect({}, subdirectory)

    assert info.commit == git(repository, "rev-parse", "HEAD")
    assert info.branch == "trunk"


def test_git_detached_head(repository: Path) -> None:
    commit = git(repository, "rev-parse", "HEAD")
    git(repository, "checkout", "--quiet", "--detach", commit)

    info = ci.detect({}, repository)

    assert info.commit == commit
    assert info.branch is None


def test_no_repository(tmp_path: Path) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()

    assert ci.detect({}, outside) == ci.CiInfo()


def test_no_git_binary(repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    assert ci.detect({}, repository) == ci.CiInfo()


# --- joined sessions -------------------------------------------------------------------


def run_shards(pytester: pytest.Pytester, env: dict[str, str]) -> list[int]:
    """Run test_shard_a.py and test_shard_b.py as two concurrent pytest sessions."""
    pytester.makepyfile(
        test_shard_a="def test_a1():\n    pass\n\ndef test_a2():\n    pass\n",
        test_shard_b="def test_b1():\n    assert 1 == 2\n",
    )
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    environment = {**os.environ, **env}
    processes = [
        subprocess.Popen(
            [*PYTEST, "--testoqa-project", "PLUG", path],
            cwd=pytester.path,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for path in ("test_shard_a.py", "test_shard_b.py")
    ]
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=INNER_TIMEOUT))
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    return codes


def test_run_key_joins_sessions(pytester: pytest.Pytester, live_server: LiveServer) -> None:
    env = {**live_server.env(), "TESTOQA_RUN_KEY": "nightly-314"}

    codes = run_shards(pytester, env)

    assert codes == [0, 1]
    run = live_server.only_run()
    assert run["sessions"] == 2
    assert run["sessions_finished"] == 2
    assert run["run_key"] == "nightly-314"
    assert run["status"] == "finished"
    assert run["totals"]["passed"] == 2
    assert run["totals"]["failed"] == 1
    assert run["exit_status"] == 1


def test_ci_build_joins_sessions(pytester: pytest.Pytester, live_server: LiveServer) -> None:
    """Without a run key, two jobs of one CI build join by the build id, with its metadata."""
    env = {
        **live_server.env(),
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/shop",
        "GITHUB_RUN_ID": "9001",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_REF_NAME": "main",
        "GITHUB_SHA": SHA,
        "GITHUB_JOB": "tests",
    }

    run_shards(pytester, env)

    run = live_server.only_run()
    assert run["sessions"] == 2
    assert run["run_key"] == "9001-1"
    assert run["ci"]["provider"] == "github-actions"
    assert run["ci"]["branch"] == "main"
    assert run["ci"]["commit"] == SHA
    assert run["ci"]["build_url"] == "https://github.com/acme/shop/actions/runs/9001"
    assert run["ci"]["job"] == "tests"
