"""The pages generated while ``mkdocs build`` runs (the mkdocs-gen-files plugin), so nothing is typed twice: the
home page from README.md, the configuration reference from schemas/config.schema.yaml and the ``python -m pfs``
reference from the CLI's parser (pfs.workflow.docs renders both)."""

from pathlib import Path

import mkdocs_gen_files

from pfs.cli import build_parser
from pfs.workflow import docs

ROOT = Path(__file__).resolve().parent.parent  # the checkout: docs/ is beside README.md and schemas/

with mkdocs_gen_files.open("configuration.md", "w") as page:
    page.write(docs.schema_markdown(docs.load_schema(ROOT / "schemas" / "config.schema.yaml")))
with mkdocs_gen_files.open("cli.md", "w") as page:
    page.write(docs.cli_markdown(build_parser()))
with mkdocs_gen_files.open("index.md", "w") as page:  # README.md's links into docs/ are relative to the checkout
    page.write((ROOT / "README.md").read_text().replace("](docs/", "]("))
