"""The documentation site's generated pages: the configuration reference rendered from schemas/config.schema.yaml and
the ``python -m pfs`` reference rendered from the CLI's argparse parser, so neither is typed twice.

docs/gen_pages.py calls these while ``mkdocs build`` runs (the mkdocs-gen-files plugin); tests check that every key of
the schema and every subcommand appears.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

HELP_WIDTH = 100  # columns of the --help text on the CLI page: the same page on every terminal
_CODE = re.compile(r"(`[^`]*`)")  # code spans, left as they are by _text


def load_schema(path: str | Path) -> dict:
    """The config schema as a dict (schemas/config.schema.yaml)."""
    return yaml.safe_load(Path(path).read_text())


def _text(description: str) -> str:
    """A schema description as Markdown: outside code spans, '<' is escaped (``root/train/<class>`` is not an HTML
    tag) and the folded YAML text stays one paragraph."""
    parts = _CODE.split(" ".join(description.split()))
    return "".join(part if part.startswith("`") else part.replace("<", "&lt;") for part in parts)


def _value(value) -> str:
    """A default or enum value as YAML writes it in config.yaml: digits, [0.5, 0.75], {}, null, true, ''."""
    if isinstance(value, str):
        return value if value else "''"
    return json.dumps(value)


def _bounds(schema: dict) -> str:
    """'≥ 1', '> 0', '≤ 1', 'in (0, 1)', 'in [0, 1)' from minimum/maximum and their exclusive forms."""
    low = ("(", schema["exclusiveMinimum"]) if "exclusiveMinimum" in schema else ("[", schema.get("minimum"))
    high = (")", schema["exclusiveMaximum"]) if "exclusiveMaximum" in schema else ("]", schema.get("maximum"))
    if low[1] is not None and high[1] is not None:
        return f"in {low[0]}{_value(low[1])}, {_value(high[1])}{high[0]}"
    if low[1] is not None:
        return f"{'>' if low[0] == '(' else '≥'} {_value(low[1])}"
    if high[1] is not None:
        return f"{'<' if high[0] == ')' else '≤'} {_value(high[1])}"
    return ""


def _items(schema: dict) -> str:
    """'list of ...', with its length and uniqueness."""
    sizes = []
    if "minItems" in schema and schema.get("minItems") == schema.get("maxItems"):
        sizes.append(f"exactly {schema['minItems']}")
    else:
        sizes += [f"at least {schema['minItems']}"] if schema.get("minItems") else []
        sizes += [f"at most {schema['maxItems']}"] if "maxItems" in schema else []
    sizes += ["no repeats"] if schema.get("uniqueItems") else []
    return "list" + (f" ({', '.join(sizes)})" if sizes else "") + f" of {kind(schema.get('items', {}))}"


def kind(schema: dict) -> str:
    """What a value of ``schema`` may be, in words: 'integer ≥ 1', 'string, one of `a`, `b`', 'list (at least 1)
    of number in (0, 1)', 'map of name -> list of integer ≥ 1', 'integer ≥ 100 or string `auto`'."""
    if "anyOf" in schema:
        rest = {key: value for key, value in schema.items() if key != "anyOf"}
        return " or ".join(kind({**rest, **alternative}) for alternative in schema["anyOf"])
    what = schema.get("type", "value")
    if what == "array":
        return _items(schema)
    if what == "object":
        extra = schema.get("additionalProperties")
        if "properties" in schema:
            return "section"
        return f"map of name -> {kind(extra)}" if isinstance(extra, dict) and extra else "mapping"
    bounds, facts = _bounds(schema), []
    if "enum" in schema:
        values = [f"`{_value(v)}`" for v in schema["enum"]]
        facts.append(f"one of {', '.join(values)}" if len(values) > 1 else values[0])
    if "pattern" in schema:
        facts.append(f"matching `{schema['pattern']}`")
    return " ".join(filter(None, [what, bounds])) + "".join(f", {fact}" for fact in facts)


def keys(schema: dict, prefix: str = "") -> Iterator[tuple[str, dict, bool]]:
    """(dotted key, its schema, required) of every key of the schema's sections, depth first in file order."""
    required = set(schema.get("required", []))
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        yield path, sub, name in required
        yield from keys(sub, f"{path}.")


def key_markdown(path: str, schema: dict, required: bool) -> str:
    """One key's entry: a heading with its dotted name, its type and limits, its default (or 'required') and its
    description."""
    level = min(2 + path.count("."), 6)
    facts = [f"**{kind(schema)}**"]
    if "default" in schema:
        facts.append(f"default `{_value(schema['default'])}`")
    elif required:
        facts.append("required")
    lines = [f"{'#' * level} `{path}`", "", "; ".join(facts)]
    if schema.get("description"):
        lines += ["", _text(schema["description"])]
    return "\n".join(lines) + "\n"


def schema_markdown(schema: dict, source: str = "schemas/config.schema.yaml") -> str:
    """The configuration reference page: every key of ``schema``, sections as headings, each key with its type,
    allowed values, default and description."""
    intro = [
        "# Configuration reference", "",
        f"Generated from `{source}` when the site is built: every key `config.yaml` and the files under `configs/` "
        "may set, with its type, allowed values, default and description. An unknown key or a value outside these "
        "limits stops Snakemake before any job runs, with one line naming the key.", "",
    ]
    if schema.get("description"):
        intro += [_text(schema["description"]), ""]
    return "\n".join(intro) + "\n" + "\n".join(key_markdown(*entry) for entry in keys(schema))


def subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """Subcommand name -> (its parser, its one-line help), in the order the parser defines them."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
    return {name: (sub, helps.get(name, "")) for name, sub in action.choices.items()}


def cli_markdown(parser: argparse.ArgumentParser) -> str:
    """The CLI reference page: for every subcommand its one-line help and its full ``--help`` text (at HELP_WIDTH
    columns, whatever the terminal)."""
    lines = ["# Command line: `python -m pfs`", "",
             "Generated from the CLI's own parser (`pfs.cli.build_parser`) when the site is built: each subcommand's "
             "`--help`. Every command prints one JSON object on stdout; errors are one line on stderr, exit 2.", ""]
    for name, (sub, summary) in subcommands(parser).items():
        sub.formatter_class = functools.partial(argparse.HelpFormatter, width=HELP_WIDTH)
        lines += [f"## {name}", "", _text(summary), "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(lines)
