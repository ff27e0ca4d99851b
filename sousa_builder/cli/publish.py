"""`sousa-builder publish REPO_ID` (also `python -m sousa_builder.publish`): push to a Hub dataset repo."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ..errors import PublishNotConfirmedError
from ..layout import CONFIGS
from .parser import positive, size
from .prepare import MAX_SHARD_SIZE_HELP, format_summary

if TYPE_CHECKING:
    from ..publish import PublishPlan

EXAMPLES = """examples (the token comes from $HF_TOKEN or `hf auth login`, never from the command line):
  python -m sousa_builder.publish user/sousa --data-dir output/dataset
  python -m sousa_builder.publish user/sousa --prepared build/sousa --yes
  python -m sousa_builder.publish user/sousa --data-dir output/dataset --dry-run build/plan
  python -m sousa_builder.publish user/sousa --prepared build/sousa --configs labels_only --create-pr

Before any prepare, copy or upload, the Hub is asked whether the token may write to REPO_ID (or create it in its
namespace) and whether --revision exists; a refusal is one line, in seconds, and nothing is written.
"""


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the `publish` subcommand to `commands` (the top-level parser's subparsers).

    Args:
        commands (`argparse._SubParsersAction`):
            Where the subcommand goes.
        common (`argparse.ArgumentParser`):
            The options every subcommand takes (`--debug`).
    """
    pub = commands.add_parser(
        "publish", parents=[common], help="push prepared shards and the card to a Hub dataset repo, in one commit",
        description="Push a prepared folder (or prepare DATA_DIR first) to a Hub dataset repo in one commit:\n"
        "validated first, resumable, and nothing sent when the repo already holds these files.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    pub.add_argument("repo_id", metavar="REPO_ID", help="the dataset repo, e.g. user/sousa")
    what = pub.add_mutually_exclusive_group(required=True)
    what.add_argument("--data-dir", metavar="DATA_DIR", help="a SOUSA output directory: prepare it, then publish")
    what.add_argument("--prepared", metavar="OUT", help="a folder (or URL) made by `sousa-builder prepare`")
    pub.add_argument("--dry-run", metavar="DIR", help="send nothing: write the tree that would be pushed to DIR")
    pub.add_argument("--configs", nargs="+", choices=CONFIGS, help="configs to push (default: all)")
    pub.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its own)")
    pub.add_argument("--revision", metavar="BRANCH", help="branch to commit to (must exist; default main)")
    pub.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing to the branch")
    pub.add_argument("--commit-message", metavar="TEXT", help="default: says which configs and how many rows")
    pub.add_argument(
        "--num-proc", type=positive, default=None, metavar="N", help="with --data-dir: processes writing shards "
        "(default 1)"
    )  # fmt: skip
    pub.add_argument(
        "--max-shard-size", type=size, default=None, metavar="SIZE", help=f"with --data-dir: {MAX_SHARD_SIZE_HELP}"
    )
    pub.add_argument("--yes", action="store_true", help="do not ask before publishing (needed without a terminal)")
    pub.set_defaults(run=run, usage_error=pub.error)


def run(args: argparse.Namespace) -> None:
    """Publish what `args` name, and say what was done.

    The plan (what is added, replaced and deleted) is printed before anything is uploaded, with `--yes` too.

    Args:
        args (`argparse.Namespace`):
            The parsed command line.

    Raises:
        `SystemExit`: a usage error (a URL given to `--data-dir`, options of `--data-dir` with `--prepared`).
        [`~errors.SousaError`]:
            Whatever `publish` refuses (the Hub's answers, a failed validation, no confirmation).
    """
    from ..storage import is_url

    if args.data_dir is not None and is_url(args.data_dir):
        args.usage_error(
            f"--data-dir {args.data_dir}: must be a local folder; prepare the URL first "
            "(sousa-builder prepare URL --out OUT), then publish --prepared OUT"
        )
    from ..publish import publish
    from ..publish.workflow import publish_data_dir

    options = {
        "revision": args.revision, "private": args.private, "create_pr": args.create_pr,
        "commit_message": args.commit_message, "dry_run_dir": args.dry_run, "configs": args.configs,
        "confirm": None if args.dry_run else (_shown if args.yes else _ask),
    }  # fmt: skip
    if args.prepared:
        result = publish(args.repo_id, args.prepared, **options)
    else:
        result = publish_data_dir(
            args.repo_id, args.data_dir, num_proc=args.num_proc, max_shard_size=args.max_shard_size,
            on_prepared=lambda prepared: print(format_summary(prepared)), **options,
        )  # fmt: skip
    if args.dry_run:
        print(result.plan.summary())
        print(f"dry run: wrote the tree that would be pushed to {args.dry_run}; nothing was sent")
    elif result.plan.is_empty:
        print(f"nothing to publish: {args.repo_id} already holds exactly these files")
    elif result.cancelled:
        print("not published")
    else:
        print(f"published: {result.pull_request_url or result.commit_url}")


def _shown(plan: PublishPlan) -> bool:
    """`--yes`: the plan is printed before the upload starts, and not asked about."""
    print(plan.summary(), flush=True)
    return True


def _ask(plan: PublishPlan) -> bool:
    print(plan.summary(), flush=True)
    if not sys.stdin.isatty():
        raise PublishNotConfirmedError("publishing needs a yes: pass --yes when there is no terminal to ask")
    return input(f"publish to {plan.repo_id}@{plan.revision}? [y/N] ").strip().lower() in ("y", "yes")
