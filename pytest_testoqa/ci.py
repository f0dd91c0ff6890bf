"""CI metadata from the environment of common CI services, with a git fallback."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT = 2.0


@dataclass(frozen=True)
class CiInfo:
    """Build metadata from a CI service; build_id is the default run key."""

    provider: str | None = None
    branch: str | None = None
    commit: str | None = None
    build_url: str | None = None
    job: str | None = None
    pull_request: str | None = None
    build_id: str | None = None

    def payload(self) -> dict[str, str]:
        limits = {
            "provider": 50,
            "branch": 250,
            "commit": 64,
            "build_url": 2000,
            "job": 200,
            "pull_request": 100,
        }
        values = {
            name: getattr(self, name)[:limit]
            for name, limit in limits.items()
            if getattr(self, name)
        }
        return values


def _strip_ref(ref: str | None) -> str | None:
    if not ref:
        return None
    for prefix in ("refs/heads/", "refs/tags/", "origin/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


def _github(env: Mapping[str, str]) -> CiInfo:
    server = env.get("GITHUB_SERVER_URL", "")
    repo = env.get("GITHUB_REPOSITORY", "")
    run_id = env.get("GITHUB_RUN_ID")
    ref = env.get("GITHUB_REF", "")
    pull = ref.split("/")[2] if ref.startswith("refs/pull/") else None
    return CiInfo(
        provider="github-actions",
        branch=env.get("GITHUB_HEAD_REF") or _strip_ref(env.get("GITHUB_REF_NAME") or ref),
        commit=env.get("GITHUB_SHA"),
        build_url=f"{server}/{repo}/actions/runs/{run_id}" if server and repo and run_id else None,
        job=env.get("GITHUB_JOB"),
        pull_request=pull,
        build_id=f"{run_id}-{env.get('GITHUB_RUN_ATTEMPT', '1')}" if run_id else None,
    )


def _gitlab(env: Mapping[str, str]) -> CiInfo:
    return CiInfo(
        provider="gitlab-ci",
        branch=env.get("CI_COMMIT_BRANCH")
        or env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME")
        or env.get("CI_COMMIT_REF_NAME"),
        commit=env.get("CI_COMMIT_SHA"),
        build_url=env.get("CI_PIPELINE_URL"),
        job=env.get("CI_JOB_NAME"),
        pull_request=env.get("CI_MERGE_REQUEST_IID"),
        build_id=env.get("CI_PIPELINE_ID"),
    )


def _jenkins(env: Mapping[str, str]) -> CiInfo:
    return CiInfo(
        provider="jenkins",
        branch=_strip_ref(
            env.get("CHANGE_BRANCH") or env.get("BRANCH_NAME") or env.get("GIT_BRANCH")
        ),
        commit=env.get("GIT_COMMIT"),
        build_url=env.get("BUILD_URL"),
        job=env.get("JOB_NAME"),
        pull_request=env.get("CHANGE_ID"),
        build_id=env.get("BUILD_TAG") or env.get("BUILD_URL"),
    )


def _circleci(env: Mapping[str, str]) -> CiInfo:
    pull_url = env.get("CIRCLE_PULL_REQUEST", "")
    return CiInfo(
        provider="circleci",
        branch=env.get("CIRCLE_BRANCH"),
        commit=env.get("CIRCLE_SHA1"),
        build_url=env.get("CIRCLE_BUILD_URL"),
        job=env.get("CIRCLE_JOB"),
        pull_request=pull_url.rstrip("/").rsplit("/", 1)[-1] if pull_url else None,
        build_id=env.get("CIRCLE_WORKFLOW_ID") or env.get("CIRCLE_BUILD_NUM"),
    )


def _buildkite(env: Mapping[str, str]) -> CiInfo:
    pull = env.get("BUILDKITE_PULL_REQUEST")
    return CiInfo(
        provider="buildkite",
        branch=env.get("BUILDKITE_BRANCH"),
        commit=env.get("BUILDKITE_COMMIT"),
        build_url=env.get("BUILDKITE_BUILD_URL"),
        job=env.get("BUILDKITE_LABEL") or env.get("BUILDKITE_JOB_ID"),
        pull_request=pull if pull and pull != "false" else None,
        build_id=env.get("BUILDKITE_BUILD_ID"),
    )


def _azure(env: Mapping[str, str]) -> CiInfo:
    collection = env.get("SYSTEM_COLLECTIONURI", "")
    project = env.get("SYSTEM_TEAMPROJECT", "")
    build = env.get("BUILD_BUILDID")
    url = f"{collection}{project}/_build/results?buildId={build}" if collection and build else None
    return CiInfo(
        provider="azure-pipelines",
        branch=_strip_ref(
            env.get("SYSTEM_PULLREQUEST_SOURCEBRANCH") or env.get("BUILD_SOURCEBRANCH")
        ),
        commit=env.get("BUILD_SOURCEVERSION"),
        build_url=url,
        job=env.get("SYSTEM_JOBDISPLAYNAME") or env.get("AGENT_JOBNAME"),
        pull_request=env.get("SYSTEM_PULLREQUEST_PULLREQUESTID")
        or env.get("SYSTEM_PULLREQUEST_PULLREQUESTNUMBER"),
        build_id=build,
    )


def _bitbucket(env: Mapping[str, str]) -> CiInfo:
    origin = env.get("BITBUCKET_GIT_HTTP_ORIGIN", "")
    number = env.get("BITBUCKET_BUILD_NUMBER")
    return CiInfo(
        provider="bitbucket-pipelines",
        branch=env.get("BITBUCKET_BRANCH"),
        commit=env.get("BITBUCKET_COMMIT"),
        build_url=f"{origin}/addon/pipelines/home#!/results/{number}"
        if origin and number
        else None,
        job=env.get("BITBUCKET_STEP_UUID"),
        pull_request=env.get("BITBUCKET_PR_ID"),
        build_id=env.get("BITBUCKET_PIPELINE_UUID") or number,
    )


# Checked in order; the variable names are the ones each service documents
# as always set inside its builds.
PROVIDERS = (
    ("GITHUB_ACTIONS", _github),
    ("GITLAB_CI", _gitlab),
    ("JENKINS_URL", _jenkins),
    ("CIRCLECI", _circleci),
    ("BUILDKITE", _buildkite),
    ("TF_BUILD", _azure),
    ("BITBUCKET_BUILD_NUMBER", _bitbucket),
)


def _git(rootdir: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(  # noqa: S603 - fixed git arguments, no user input
            ["git", *args],  # noqa: S607 - git is looked up on PATH on purpose
            cwd=rootdir,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    output = result.stdout.strip()
    return output if result.returncode == 0 and output else None


def from_git(rootdir: Path) -> CiInfo:
    """Return the commit and branch of the repository holding rootdir, when there is one."""
    commit = _git(rootdir, "rev-parse", "HEAD")
    if commit is None:
        return CiInfo()
    branch = _git(rootdir, "rev-parse", "--abbrev-ref", "HEAD")
    return CiInfo(commit=commit, branch=branch if branch != "HEAD" else None)


def detect(env: Mapping[str, str], rootdir: Path) -> CiInfo:
    """Return CI metadata of the first CI service in env, else commit and branch from git."""
    for variable, reader in PROVIDERS:
        if env.get(variable):
            return reader(env)
    return from_git(rootdir)


def is_ci(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return any(env.get(variable) for variable, _ in PROVIDERS) or env.get("CI") == "true"
