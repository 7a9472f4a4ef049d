"""The docs site's generated pages (pfs.workflow.docs): the configuration reference covers every key of
schemas/config.schema.yaml with its type, limits, default and description; the CLI reference every subcommand's
--help."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from pfs_testkit import REPO

from pfs.cli import build_parser
from pfs.workflow import docs

SCHEMA = docs.load_schema(REPO / "schemas" / "config.schema.yaml")


def _all_keys(schema: dict, prefix: str = "") -> set[str]:
    """Every dotted key under ``properties``, walked independently of docs.keys."""
    found = set()
    for name, sub in schema.get("properties", {}).items():
        found |= {prefix + name} | _all_keys(sub, f"{prefix}{name}.")
    return found


def test_the_configuration_reference_has_a_heading_for_every_key_of_the_schema():
    page = docs.schema_markdown(SCHEMA)
    headings = set(re.findall(r"^#{2,6} `([^`]+)`$", page, flags=re.M))
    assert headings == _all_keys(SCHEMA)
    assert {"dataset.name", "prune.tolerance", "resources.mem_mb", "device"} <= headings


def test_every_key_with_a_description_has_it_on_the_page():
    page = docs.schema_markdown(SCHEMA)
    for path, schema, _ in docs.keys(SCHEMA):
        if "description" in schema:
            assert docs._text(schema["description"]) in page, path


def test_nested_sections_go_one_heading_level_deeper():
    page = docs.schema_markdown(SCHEMA)
    assert "\n## `train`\n" in page and "\n### `train.epochs`\n" in page and "\n## `device`\n" in page


@pytest.mark.parametrize(("key", "words"), [
    ("prune.tolerance", "**number in (0, 1)**; default `0.001`"),
    ("dataset.image_size", "**integer ≥ 8**; default `64`"),
    ("dataset.val_fraction", "**number in [0, 1)**; default `0`"),
    ("train.scheduler", "**string, one of `multistep`, `cosine`**; default `multistep`"),
    ("grid.seeds", "**list (at least 1) of integer ≥ 0**; default `[0]`"),
    ("grid.expansions", "**map of name -> list (at least 1) of integer ≥ 1**; required"),
    ("dataset.mean", "**list (exactly 3) of number in [0, 1] or null**; default `null`"),
    ("resources.mem_mb", "**integer ≥ 100 or string, `auto`**; default `auto`"),
    ("references", "**string**; default `''`"),
    ("device", "**string, matching `^(auto|cpu|cuda(:[0-9]+)?)$`**; default `auto`"),
])
def test_a_key_gives_its_type_limits_and_default(key, words):
    entries = {path: docs.key_markdown(path, schema, required) for path, schema, required in docs.keys(SCHEMA)}
    assert words in entries[key]


def test_descriptions_escape_html_like_text_outside_code_spans():
    assert docs._text("root/train/<class>   and\n `--root <root>`") == "root/train/&lt;class> and `--root <root>`"


def test_the_cli_reference_has_every_subcommand_with_its_help():
    parser = build_parser()
    page = docs.cli_markdown(parser)
    names = list(docs.subcommands(parser))
    assert names == re.findall(r"^## (\S+)$", page, flags=re.M)
    assert {"summary", "list-models", "digits-folder", "train", "verify-images", "readme", "export"} <= set(names)
    for name in names:
        assert f"usage: python -m pfs {name} [-h]" in page
    assert "--results RESULTS" in page and "--job JOB" in page
    assert max(len(line) for line in page.split("```text")[1].split("```")[0].splitlines()) <= docs.HELP_WIDTH


def test_the_site_builds_in_strict_mode_with_no_warning(tmp_path):
    """mkdocs build --strict (as .ci/run runs it): no broken link or anchor, every generated page written."""
    pytest.importorskip("mkdocs_gen_files")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING" not in proc.stderr
    for page in ("configuration", "cli", "getting-started", "troubleshooting"):
        assert (tmp_path / "site" / page / "index.html").is_file()
    assert "Results of the default experiment" in (tmp_path / "site" / "index.html").read_text()
