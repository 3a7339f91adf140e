"""mkdocs hooks (mkdocs.yml `hooks:`): the pages the site adds to docs/ when it is built, so none is kept twice.

- the README is the home page (`index.md`), its `docs/NAME.md` links pointed at the pages beside it, and the
  pages' `../README.md` links at it;
- the tutorials' notebooks (`tutorials/*.ipynb`) become pages, shown as saved (mkdocs-jupyter, not executed);
- the benchmarks' figures (`benchmarks/results/*.png`) are copied in, and the pages' `../benchmarks/results/`
  links pointed at them;
- one API page per public package (`API_PACKAGES`), written from the docstrings by mkdocstrings: a package
  with `__all__` shows each of those names where it is defined (the names load lazily, PEP 562, which static
  analysis cannot follow), one without shows its submodules.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TUTORIALS = ROOT / "tutorials"
RESULTS = "benchmarks/results/"
API_DIR = "api"

# Every public package, in the order of the API section.
API_PACKAGES: tuple[str, ...] = (
    "vaelab",
    "vaelab.config",
    "vaelab.data",
    "vaelab.models",
    "vaelab.distributions",
    "vaelab.nets",
    "vaelab.objectives",
    "vaelab.train",
    "vaelab.evaluate",
    "vaelab.inference",
    "vaelab.baselines",
    "vaelab.viz",
    "vaelab.serve",
)


def _defined_in(package: str, name: str) -> str:
    """The dotted path where `package.name` is defined: a class's or function's own module, else the module
    under `package` that assigns it at top level (a table such as MODELS)."""
    obj = getattr(importlib.import_module(package), name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return f"{obj.__module__}.{obj.__qualname__}"
    assigns = re.compile(rf"(?m)^{re.escape(name)}\s*[:=]")
    for mod_name, mod in sorted(sys.modules.items()):
        if (mod_name == package or mod_name.startswith(package + ".")) and vars(mod).get(name) is obj:
            try:
                if assigns.search(inspect.getsource(mod)):
                    return f"{mod_name}.{name}"
            except (OSError, TypeError):
                continue
    return f"{package}.{name}"


def _public(package: str) -> dict[str, str]:
    """A package's `__all__` (dunders left out): name -> the dotted path where it is defined."""
    module = importlib.import_module(package)
    return {n: _defined_in(package, n) for n in getattr(module, "__all__", ()) if not n.startswith("__")}


@functools.cache
def _home(target: str) -> str | None:
    """The API page that documents `target`: the deepest package above it that shows it (in its `__all__`, or
    a module or package without `__all__`, which shows everything), so each object has one page."""
    homes = [
        p
        for p in API_PACKAGES
        if target.startswith(p + ".")
        and (not hasattr(importlib.import_module(p), "__all__") or target in _public(p).values())
    ]
    return max(homes, key=len, default=None)


def api_page(package: str) -> str:
    """The markdown of one package's API page: its docstring, then its public names or its submodules.

    A name documented on a deeper package's page (`vaelab.Config` on `vaelab.config`'s) is a link to it."""
    module = importlib.import_module(package)
    lines = [f"# `{package}`", "", f"::: {package}", "    options:", "      show_root_heading: false"]
    public = _public(package)
    if public:
        lines += ["      members: false", ""]
        elsewhere = []
        for name, target in public.items():
            home = _home(target)
            if home in (None, package):
                lines += [f"::: {target}", "    options:", "      heading_level: 2", ""]
            else:
                elsewhere.append(f"- [`{name}`][{target}] (in [`{home}`]({home}.md))")
        if elsewhere:
            lines += [
                "## Also here",
                "",
                "Defined in the packages below and documented there:",
                "",
                *elsewhere,
            ]
    elif hasattr(module, "__path__"):  # a package without __all__: its submodules, one section each
        lines += ["      show_submodules: true", ""]
    return "\n".join(lines) + "\n"


class DocstringBrackets(logging.Filter):
    """Docstrings are plain text: `density[i, j]` or `[N, D]` in one reads to Markdown as a reference link.
    Such a miss from a docstring (autorefs names its FILE.py:LINE) is logged as INFO rather than failing the
    strict build; a broken link in README.md, docs/ or a notebook still fails it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Demote an unresolved cross-reference that comes from a docstring; pass everything else."""
        message = record.getMessage()
        if "Could not find cross-reference target" in message and re.search(r"from \S+\.py:\d+:", message):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def site_nav(docs_dir: Path) -> list[dict[str, Any]]:
    """The navigation: home, the pages of docs/ (a folder of pages is a section), the tutorials, the API.
    Made from the files, so a new page or notebook is listed without editing mkdocs.yml."""
    guides: list[Any] = [p.relative_to(docs_dir).as_posix() for p in sorted(docs_dir.glob("*.md"))]
    for folder in sorted(p for p in docs_dir.iterdir() if p.is_dir() and any(p.rglob("*.md"))):
        pages = [p.relative_to(docs_dir).as_posix() for p in sorted(folder.rglob("*.md"))]
        guides.append({folder.name: pages})
    nav: list[dict[str, Any]] = [{"Home": "index.md"}, {"Guides": guides}]
    notebooks = [f"tutorials/{p.name}" for p in sorted(TUTORIALS.glob("*.ipynb"))]
    if notebooks:
        nav.append({"Tutorials": notebooks})
    nav.append({"API reference": [f"{API_DIR}/{p}.md" for p in API_PACKAGES]})
    return nav


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """The navigation (`site_nav`) unless mkdocs.yml gives one; `DocstringBrackets` on mkdocs-autorefs' loggers
    (they exist once the plugins are loaded)."""
    if config.nav is None:
        config.nav = site_nav(Path(config.docs_dir))
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("mkdocs.plugins.mkdocs_autorefs"):
            logging.getLogger(name).addFilter(DocstringBrackets())
    return config


@event_priority(100)  # before mkdocs-jupyter looks for notebooks among the files
def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the README as index.md, the tutorials' notebooks, the benchmarks' figures and the API pages."""
    files.append(File.generated(config, "index.md", abs_src_path=str(README)))
    # files read from the repository's root (mkdocs-jupyter finds a generated file's path None)
    for path in [*sorted(TUTORIALS.glob("*.ipynb")), *sorted((ROOT / RESULTS).glob("*.png"))]:
        uri = path.relative_to(ROOT).as_posix()
        files.append(File(uri, str(ROOT), config.site_dir, config.use_directory_urls))
    for package in API_PACKAGES:
        files.append(File.generated(config, f"{API_DIR}/{package}.md", content=api_page(package)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files, **kwargs: Any) -> str:
    """Point the README's links at the site's pages: `docs/X` beside it, `../README.md` at the home page, and
    `../benchmarks/results/` at the copied figures."""
    if page.file.src_uri == "index.md":
        return re.sub(r"\]\(docs/", "](", markdown)
    depth = page.file.src_uri.count("/")  # docs/ is one folder below the README; the site's root is docs/
    up, here = "](" + "../" * (depth + 1), "](" + "../" * depth
    return markdown.replace(up + "README.md", here + "index.md").replace(up + RESULTS, here + RESULTS)
