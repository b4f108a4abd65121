"""Rendering an executed notebook as an HTML page for people."""

from __future__ import annotations

import os
from pathlib import Path

from tradinglib.exceptions import InputError


def render_html(notebook_path: str | os.PathLike[str], html_path: str | os.PathLike[str]
                ) -> Path:
    """Render an executed notebook as a self-contained HTML page for people: outputs only
    (no code, no prompts), images embedded. Returns ``html_path``.

    Raises:
        InputError: the notebook is missing or not a valid notebook file.
    """
    import nbformat
    from nbconvert import HTMLExporter

    source = Path(notebook_path)
    if not source.is_file():
        raise InputError(f"{source}: notebook not found")
    try:
        nb = nbformat.read(source, as_version=4)  # type: ignore[no-untyped-call]
    except Exception as exc:  # nbformat raises several unrelated types
        raise InputError(f"{source}: not a valid notebook: {exc}") from None
    exporter = HTMLExporter(  # type: ignore[no-untyped-call]
        exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, embed_images=True)
    title = nb.metadata.get("title") or source.stem
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    target = Path(html_path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, target)
    return target
