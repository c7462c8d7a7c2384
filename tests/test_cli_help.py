"""A new user reads ``spikebench COMMAND --help``: every argument says what it is and what it
defaults to; a mistake is one ``spikebench: error:`` line; a missing folder is called missing;
the shipped specs are the package's; the listings stay aligned whatever the names' length."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from spikebench import cli
from spikebench.studies import shipped_specs


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every sub-command's parser, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _parsers(sub)


def _arguments() -> list[tuple[str, argparse.Action, str]]:
    """(command, argument, the help text as ``--help`` prints it) of every argument."""
    out = []
    for parser in _parsers(cli._parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            out.append((parser.prog, action, formatter._get_help_string(action)))
    return out


def test_every_argument_has_help_and_every_value_flag_shows_its_default():
    arguments = _arguments()
    assert len(arguments) > 50
    undocumented = [(prog, a.dest) for prog, a, text in arguments if not text.strip()]
    assert not undocumented, undocumented
    # a flag that takes a value says its default (switches are off unless given; required
    # flags have none)
    silent = [(prog, a.option_strings) for prog, a, text in arguments
              if a.option_strings and a.nargs != 0 and not a.required and "default" not in text]
    assert not silent, silent


def test_a_default_is_shown_as_the_help_prints_it(capsys):
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["phantom", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "training volumes (default: 12)" in out
    assert "(default: 0)" in out  # --seed: a default of 0 is a default too
    assert "(default: 96 96)" in out


@pytest.mark.parametrize("argv", [
    ["study", "run", "x", "--out", "y", "--workers", "0"],
    ["study", "run"],
    ["phantom"],
    ["nosuch-command"],
    ["report", "x", "--bootstrap", "many"],
])
def test_a_usage_error_carries_one_prefix(capsys, argv):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spikebench: error: ") and "\n" not in err, err
    assert err.count("spikebench:") == 1 and err.count("error:") == 1, err
    assert err.endswith("--help)"), err


def test_study_status_of_a_missing_folder_says_it_does_not_exist(tmp_path, capsys):
    assert cli.main(["study", "status", str(tmp_path / "nonexistent")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "nonexistent" in err
    assert "spec not found" not in err
    assert cli.main(["study", "status", str(tmp_path / "nonexistent.toml")]) == 2
    assert "study spec not found" in capsys.readouterr().err


def test_study_run_help_lists_the_shipped_specs(capsys):
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["study", "run", "--help"])
    out = "".join(capsys.readouterr().out.split())  # argparse wraps at hyphens
    names = list(shipped_specs())
    assert len(names) >= 5
    for name in names:
        assert name in out, name


def _aligned(text: str) -> None:
    """Every continuation line starts where the text after the name starts."""
    lines = [line for line in text.splitlines() if line.strip()]
    heads = [line for line in lines if not line.startswith(" ")]
    assert heads
    column = {len(line) - len(line.lstrip(" ")) for line in lines if line.startswith(" ")}
    starts = set()
    for line in heads:
        name, rest = line.split(" ", 1)
        starts.add(len(name) + 1 + len(rest) - len(rest.lstrip(" ")))
    assert len(column) == 1 and column == starts, text


@pytest.mark.parametrize("command", ["rules", "backends", "datasets"])
def test_listings_stay_aligned_with_long_names(capsys, monkeypatch, command):
    import spikebench.datasets.sources as sources

    real = sources.available_sources
    monkeypatch.setattr(sources, "available_sources",
                        lambda: [*real(), "a_data_source_with_a_long_name"])
    assert cli.main([command]) == 0
    _aligned(capsys.readouterr().out)
