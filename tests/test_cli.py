"""The command line as a user meets it: help, version, progress in a log, messages in its own terms."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pyarrow as pa
import pytest

import sousa_builder as sousa_builder_package
from sousa_builder.cli import main
from sousa_builder.errors import EXIT_INTERNAL, SourceNotFoundError
from sousa_builder.prepare import prepare

SAMPLE_SPLIT_ROWS_TEXT = "24 rows (train 12, validation 6, test 6)"


def sousa_builder(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`sousa-builder ARGS` in a fresh interpreter, its output captured (not a terminal, as in CI)."""
    command = [sys.executable, "-m", "sousa_builder", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=120)


def exits(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `sousa-builder ARGS` here, for what argparse does and exits on (help, version, usage errors):
    the exit code, stdout and stderr."""
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err


def test_prepare_progress_in_a_log(sample_dir: Path, tmp_path: Path) -> None:
    """Without a terminal: no progress bars redrawn into the log, one line per split and a summary per config."""
    run = sousa_builder("prepare", str(sample_dir), "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert "\r" not in run.stderr and "%|" not in run.stderr
    lines = run.stderr.splitlines()
    for config in ("audio", "midi_only", "labels_only"):
        for split, rows in (("train", 12), ("validation", 6), ("test", 6)):
            assert any(line.startswith(f"Preparing {config}/{split}: {rows} rows in 1 shard(s), ") for line in lines)
        assert any(line.startswith(f"prepared {config}: {SAMPLE_SPLIT_ROWS_TEXT} in 3 shards, ") for line in lines)
    assert "config       split" in run.stdout  # the table of what was written, on stdout


def test_version() -> None:
    run = sousa_builder("--version")  # as installed: the console script's module
    assert run.returncode == 0
    assert run.stdout.strip() == f"sousa-builder {sousa_builder_package.__version__}"
    assert sousa_builder_package.__version__ == version("sousa-builder")  # the package's and the installed one's


def test_top_level_help_shows_an_example_of_each_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = exits(capsys, "--help")
    assert code == 0
    examples = out.split("examples", 1)[1]
    for command in ("sample", "prepare", "validate", "publish"):
        assert f"\n  sousa-builder {command} " in examples, command
    assert "--version" in out


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("sample", ["--seed SEED", "(default 0)", "(1-6, default 3)", "(1-5, default 2)", "(default 12: every split"]),
        ("prepare", ["--num-proc N", "(default 1)", "--max-shard-size SIZE", "examples:"]),
        ("validate", ["--sample K", "(default: all)", "(default: a random one", "examples:"]),
        ("publish", ["--max-shard-size SIZE", "--yes", "examples"]),
    ],
)
def test_command_help_documents_options_and_defaults(
    command: str, shown: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = exits(capsys, command, "--help")
    assert code == 0
    text = " ".join(out.split())  # argparse wraps lines where it likes
    for part in shown:
        assert part in text, part


def test_max_shard_size_help_says_how_splits_are_cut(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(exits(capsys, "prepare", "--help")[1].split())
    assert "500MB, 2GB or a number of bytes (default 500MB)" in text
    assert "shards of equal row counts" in text and "Arrow data (the labels plus the media bytes)" in text
    assert "row groups of 100 rows for audio and midi_only and 1000 for labels_only" in text


def test_missing_source_named_in_the_cli_terms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"No SOUSA dataset at {tmp_path / 'nowhere'} (from the DATA_DIR argument): no such directory" in err
    assert "data_dir=" not in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    assert main(["prepare", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 1
    assert "(from the DATA_DIR argument): expected labels/samples.parquet there" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_source_named_in_python_terms(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceNotFoundError, match=r"from the data_dir argument\): expected labels/samples.parquet"):
        prepare(tmp_path / "empty", tmp_path / "out")


def test_validate_says_which_kind_of_folder_it_was_given(prepared_dir: Path, sample_dir: Path) -> None:
    run = sousa_builder("validate", str(prepared_dir))
    assert run.returncode == 2
    assert (
        f"looks like a prepared folder (a README.md and config shards, no labels/samples.parquet): use "
        f"--prepared {prepared_dir}" in run.stderr
    )
    run = sousa_builder("validate", "--prepared", str(sample_dir))
    assert run.returncode == 2
    assert (
        f"--prepared {sample_dir} looks like a SOUSA source directory (it holds labels/samples.parquet): "
        f"check it without --prepared (sousa-builder validate {sample_dir})" in run.stderr
    )


# --- issue 21: what the command line imports, says and returns ------------------------------------------------

HEAVY = ("datasets", "pyarrow", "pandas", "huggingface_hub", "fsspec")


def imported_by(*args: str) -> list[str]:
    """The heavy modules a fresh interpreter has imported after `sousa-builder ARGS` exits through argparse."""
    script = (
        "import sys\nfrom sousa_builder.cli import main\n"
        f"try:\n    main({list(args)!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return eval(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["prepare", "--help"], ["publish", "--help"], ["prepare", "x", "--sorce", "y"], []],
    ids=["help", "version", "prepare-help", "publish-help", "typo", "no-command"],
)
def test_help_version_and_usage_errors_import_nothing_heavy(args: list[str]) -> None:
    assert imported_by(*args) == []


@pytest.mark.parametrize(
    ("args", "unknown"),
    [
        (["prepare", "DATA", "--out", "OUT", "--sorce", "x"], "--sorce x"),
        (["validate", "--sorce", "x"], "--sorce"),
        (["validate", "DATA", "--num-pro", "2"], "--num-pro"),  # an abbreviation: never silently --num-proc
        (["validate", "--prep", "OUT"], "--prep"),
        (["prepare", "DATA", "--ou", "OUT"], "--ou"),
        (["sample", "OUT", "--profile", "12"], "--profile"),
        (["publish", "user/sousa", "--prepared", "OUT", "--dry", "PLAN"], "--dry"),
    ],
)
def test_a_typo_shows_the_subcommands_usage(
    args: list[str], unknown: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "DATA").mkdir()
    code, _, err = exits(capsys, *[str(tmp_path / a) if a in ("DATA", "OUT", "PLAN") else a for a in args])
    assert code == 2 and [p.name for p in tmp_path.iterdir()] == ["DATA"]  # nothing ran
    assert err.startswith(f"usage: sousa-builder {args[0]} "), err
    assert err.splitlines()[-1].startswith(f"sousa-builder {args[0]}: error: ") and unknown in err.splitlines()[-1]


def test_no_abbreviation_of_a_top_level_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = exits(capsys, "--vers")
    assert code == 2 and not out and err.startswith("usage: sousa-builder ")


def test_debug_after_the_subcommand(tmp_path: Path, sample_dir: Path) -> None:
    command = [sys.executable, "-m", "sousa_builder", "validate", "--debug", str(sample_dir), "--json", str(tmp_path)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Traceback (most recent call last)" in run.stderr and "ReportPathError" in run.stderr


@pytest.mark.parametrize(
    "error",
    [json.JSONDecodeError("Expecting value", "{", 1), pa.ArrowInvalid("Parquet magic bytes not found"), KeyError("x")],
    ids=["json", "pyarrow", "key"],
)
def test_an_unexpected_exception_is_an_internal_error_not_bad_input(
    error: Exception, sample_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ValueError of pyarrow's or of JSON's is a bug of ours: said to be one, with its own exit code."""

    def broken(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr("sousa_builder.validate.validate_source", broken)
    assert main(["validate", str(sample_dir)]) == EXIT_INTERNAL == 70
    err = capsys.readouterr().err
    assert err.startswith(f"sousa-builder validate: error: internal error: {type(error).__name__}: ")
    assert "--debug" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_missing_folder_exits_1_in_every_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nowhere = str(tmp_path / "nowhere")
    for args in (
        ["prepare", nowhere, "--out", str(tmp_path / "out")],
        ["validate", nowhere],
        ["validate", "--prepared", nowhere],
        ["publish", "alice/sousa", "--data-dir", nowhere, "--dry-run", str(tmp_path / "plan")],
    ):
        assert main(args) == 1, args
        err = capsys.readouterr().err
        assert nowhere in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "plan").exists()


@pytest.mark.parametrize("where", ["nowhere/report.json", "."])
def test_a_json_report_that_cannot_be_written_is_refused_before_the_checks(
    sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Found out after every check ran, the report would be lost with the work."""
    import sousa_builder.validate

    def checks_ran(*args: object, **kwargs: object) -> None:
        raise AssertionError("the checks ran")

    monkeypatch.setattr(sousa_builder.validate, "validate_source", checks_ran)
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(sample_dir), "--json", where]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"sousa-builder validate: error: --json {where}: ") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []


INTERRUPT_AT_IMPORT = """
import os, signal, sys
class SignalOnImport:
    def find_spec(self, name, path=None, target=None):
        if name == "datasets":
            os.kill(os.getpid(), signal.{signal})
        return None
sys.meta_path.insert(0, SignalOnImport())
from sousa_builder.cli import main
sys.exit(main({args!r}))
"""


@pytest.mark.parametrize(("signum", "code"), [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_a_signal_while_datasets_imports_is_one_line(sample_dir: Path, tmp_path: Path, signum: str, code: int) -> None:
    """The first second of a run is spent importing datasets: a signal then is handled like any other."""
    out = tmp_path / "out"
    script = INTERRUPT_AT_IMPORT.format(signal=signum, args=["prepare", str(sample_dir), "--out", str(out)])
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == code, run.stderr
    assert run.stderr.strip() == f"sousa-builder prepare: interrupted: {out} is unchanged"
    assert not out.exists()


CTRL_C_AT_CLI_IMPORT = """
import os, runpy, signal, sys
class SignalOnImport:
    def find_spec(self, name, path=None, target=None):
        if name == "sousa_builder.cli":
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, SignalOnImport())
sys.argv = ["x", "--help"]
runpy.run_module({module!r}, run_name="__main__")
"""


@pytest.mark.parametrize(
    ("module", "line"),
    [("sousa_builder", "sousa-builder: interrupted"), ("sousa_builder.publish", "sousa-builder publish: interrupted")],
)
def test_ctrl_c_while_the_command_line_imports_is_one_line(module: str, line: str) -> None:
    """`python -m sousa_builder` imports the command line before its handlers are in place: Ctrl-C then is one
    line and 130 too, not Python's KeyboardInterrupt traceback."""
    script = CTRL_C_AT_CLI_IMPORT.format(module=module)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stderr, run.stdout) == (130, line + "\n", "")


def test_engines_and_file_names_the_cli_knows_are_the_packages() -> None:
    from sousa_builder.cli.prepare import ENGINES
    from sousa_builder.cli.sample import DEFAULT_PROFILES
    from sousa_builder.cli.validate import SAMPLES_FILE
    from sousa_builder.prepare import ENGINES as PREPARE_ENGINES
    from sousa_builder.sample import DEFAULT_PROFILES as SAMPLE_PROFILES
    from sousa_builder.source import LABEL_FILES

    assert ENGINES == PREPARE_ENGINES and LABEL_FILES["samples"] == SAMPLES_FILE
    assert DEFAULT_PROFILES == SAMPLE_PROFILES


def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    out = exits(capsys, "--help")[1]
    for line in ("  1    refused or failed", "  2    usage error", "  70   internal error", "  129  hung up"):
        assert line in out, line
