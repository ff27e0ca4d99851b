"""Before any work, ask the Hub whether a publish can succeed: token, write access, repo id, revision.

`check_hub` runs before a prepare, a copy from object storage or an upload, so that a missing token or a
namespace the token cannot write is a one-line error in seconds, not after an hour of preparing. Every
request has a bound (`HUB_TIMEOUT`), and `hub_errors` turns the Hub's failures into the package's own errors,
each naming what failed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from huggingface_hub import HfApi
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import get_session, validate_repo_id

from ..errors import (
    HubAccessError,
    HubConnectionError,
    HubRequestError,
    HubRevisionError,
    SousaError,
    is_connection_error,
)

logger = logging.getLogger(__name__)

# Seconds any one Hub request may wait (to connect, or between bytes), so that no wait is unbounded.
HUB_TIMEOUT = 60.0
DEFAULT_REVISION = "main"


@dataclass
class HubTarget:
    """What the checks found: the repo, whether it exists yet, and the branch to commit to."""

    repo_id: str
    exists: bool
    revision: str


def check_repo_id(repo_id: str) -> None:
    """Refuse a repo id that the Hub would refuse, before any request.

    Args:
        repo_id (`str`):
            The dataset repo, `NAMESPACE/NAME` (a dataset is always in a namespace).

    Raises:
        [`~errors.HubAccessError`]:
            The id is not `NAMESPACE/NAME`, or breaks the Hub's naming rules (`validate_repo_id`).
    """
    parts = repo_id.split("/")
    problem = None
    if len(parts) != 2 or not all(parts):
        problem = "expected NAMESPACE/NAME, e.g. user/sousa"
    else:
        try:
            validate_repo_id(repo_id)
        except HFValidationError as err:
            problem = str(err).rstrip(".")
    if problem is not None:
        raise HubAccessError(f"repo id {repo_id!r} is malformed: {problem}")


def bound_hub_requests(timeout: float = HUB_TIMEOUT) -> None:
    """Give huggingface_hub's shared HTTP client a timeout (it has none by default).

    Args:
        timeout (`float`, *optional*):
            Seconds a request may wait to connect, or between two reads or writes.
    """
    get_session().timeout = timeout


@contextlib.contextmanager
def hub_errors(repo_id: str, endpoint: str | None = None) -> Iterator[None]:
    """Turn the Hub's failures inside the block into the package's errors, each naming what failed.

    Args:
        repo_id (`str`):
            The repo being published, named in the messages.
        endpoint (`str`, *optional*):
            The Hub's URL (default: `HF_ENDPOINT`'s).

    Raises:
        [`~errors.HubAccessError`]:
            401 (the token was refused) or 403 (it cannot write to `repo_id`).
        [`~errors.HubRequestError`]:
            Any other error status (429, 5xx, ...).
        [`~errors.HubConnectionError`]:
            The Hub could not be reached.
    """
    where = endpoint or hf_constants.ENDPOINT
    try:
        yield
    except SousaError:
        raise
    except HfHubHTTPError as err:
        raise _http_error(err, repo_id) from err
    except Exception as err:
        if not is_connection_error(err):
            raise
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise HubConnectionError(
            f"cannot reach the Hub at {where} ({first}); nothing was committed", endpoint=where
        ) from err


def _http_error(error: HfHubHTTPError, repo_id: str) -> SousaError:
    status = error.response.status_code if error.response is not None else None
    if status == 401:
        return HubAccessError("the Hub refused the token (invalid, expired or revoked): set HF_TOKEN to a valid one")
    if status == 403:
        return HubAccessError(f"this token cannot write to {repo_id}: use a token with write access to it")
    if status == 429:
        return HubRequestError(
            "the Hub is limiting the rate of requests (429): wait, then run again (nothing is sent twice)", status
        )
    if status is not None and status >= 500:
        return HubRequestError(
            f"the Hub answered {status} (a server error): run again later (nothing is sent twice)", status
        )
    first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return HubRequestError(f"the Hub answered {status} for {repo_id}: {first}", status)


def check_hub(api: HfApi, repo_id: str, revision: str | None) -> HubTarget:
    """Check, before any work, that `api`'s token may publish to `repo_id` at `revision`.

    An existing repo is asked directly (`HfApi.auth_check(write=True)`). A repo that does not exist yet (or that
    the token cannot see) will be created: the token must then belong to the namespace's user, or to a member of
    its organisation, and not be read-only. An existing repo must have `revision`; a new one has only `main`.

    Args:
        api (`HfApi`):
            The client, with its token and endpoint.
        repo_id (`str`):
            The dataset repo, `NAMESPACE/NAME`.
        revision (`str`, *optional*):
            The branch to commit to (default `main`).

    Returns:
        [`HubTarget`]: whether the repo exists, and the branch.

    Raises:
        [`~errors.HubAccessError`]:
            A malformed repo id, no token, a refused token, or no write access to the repo or its namespace.
        [`~errors.HubRevisionError`]:
            `revision` does not exist in the repo (or the repo does not exist yet and `revision` is not `main`).
        [`~errors.HubConnectionError`], [`~errors.HubRequestError`]:
            The Hub could not be reached, or answered with another error.
    """
    check_repo_id(repo_id)
    if not api.token:
        raise HubAccessError("no Hub token: set HF_TOKEN or log in with `hf auth login`")
    branch = revision or DEFAULT_REVISION
    with hub_errors(repo_id, api.endpoint):
        try:
            api.auth_check(repo_id, repo_type="dataset", write=True)
            exists = True
        except GatedRepoError:
            raise HubAccessError(f"this token cannot write to {repo_id} (a gated repo it has no access to)") from None
        except RepositoryNotFoundError:
            exists = False  # or private and not visible to this token: its namespace decides
        if not exists:
            _check_namespace(api, repo_id)
            if branch != DEFAULT_REVISION:
                raise HubRevisionError(
                    f"revision {branch!r} does not exist: dataset {repo_id} does not exist yet, and a new repo has "
                    "only main; omit --revision"
                )
        elif revision is not None:
            try:
                api.repo_info(repo_id, repo_type="dataset", revision=revision)
            except RevisionNotFoundError:
                raise HubRevisionError(
                    f"revision {revision!r} does not exist in dataset {repo_id}; create the branch first or omit "
                    "--revision"
                ) from None
    logger.info("the token may write to %s (%s)", repo_id, "an existing repo" if exists else "to be created")
    return HubTarget(repo_id, exists, branch)


def _check_namespace(api: HfApi, repo_id: str) -> None:
    """Refuse a token that cannot create a repo in `repo_id`'s namespace (its user's, or one of its orgs)."""
    whoami = api.whoami()
    namespace = repo_id.split("/")[0]
    orgs = {org.get("name") for org in whoami.get("orgs", [])}
    if namespace != whoami.get("name") and namespace not in orgs:
        raise HubAccessError(
            f"user {whoami.get('name')!r} cannot write to namespace {namespace!r} (not theirs, nor an org of theirs)"
        )
    token = (whoami.get("auth") or {}).get("accessToken") or {}
    if token.get("role") == "read":
        raise HubAccessError(f"this token is read-only: it cannot create {repo_id}; use a token with write access")
    fine = token.get("fineGrained") or {}
    if token.get("role") == "fineGrained" and isinstance(fine.get("scoped"), list):  # else: cannot tell, creating will
        granted = any(
            (scope.get("entity") or {}).get("name") == namespace and "repo.write" in (scope.get("permissions") or [])
            for scope in fine["scoped"]
            if isinstance(scope, dict)
        )
        if not granted:
            raise HubAccessError(f"this fine-grained token has no repo.write permission on namespace {namespace!r}")
