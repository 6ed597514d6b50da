"""mkdocs hook (mkdocs.yml ``hooks:``): links from a page to a file of the repository
outside docs/ (``../examples/job_control.py``) have no page on the site. Each such link
must name a file or folder that exists (else the build fails, as ``--strict`` does for a
broken link between pages); it becomes a link to the file in the repository when
``repo_url`` is set in mkdocs.yml, else the repository path as code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>[^)\s]+)\)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    docs_dir = Path(config["docs_dir"]).resolve()
    repo = docs_dir.parent
    page_dir = (docs_dir / page.file.src_path).parent
    repo_url = (config.get("repo_url") or "").rstrip("/")

    def rewrite(match: re.Match[str]) -> str:
        target = match["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
            return match[0]
        path_part = target.split("#", 1)[0]
        resolved = (page_dir / path_part).resolve()
        if resolved.is_relative_to(docs_dir):
            return match[0]  # a page or an asset of the site: mkdocs checks it
        if not resolved.is_relative_to(repo) or not resolved.exists():
            raise PluginError(f"{page.file.src_path}: link to a missing file: {target}")
        rel = resolved.relative_to(repo).as_posix()
        if repo_url:
            kind = "tree" if resolved.is_dir() else "blob"
            return f"[{match['text']}]({repo_url}/{kind}/main/{rel})"
        text = match["text"]
        if rel.rstrip("/").split("/")[-1] not in text:
            return f"{text} (`{rel}`)"
        return text if "`" in text else f"`{text}`"

    return LINK.sub(rewrite, markdown)
