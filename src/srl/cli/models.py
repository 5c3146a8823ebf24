"""`srl models`: the known models, whether they are installed and cached, and `--prepare NAME` to convert one."""

from __future__ import annotations

from srl.errors import InputError


def models_command(argv) -> int:
    """`srl models [--prepare NAME]`: the known models and their state; --prepare converts one now."""
    from rich.table import Table

    from srl.cli.utils import OneLineParser

    from srl.console import console
    from srl.models import (KNOWN_MODELS, install_hint, known_name, list_models, model_cache_root,
                            resolve_model)

    parser = OneLineParser(prog="srl models", description="Known small models (use the name as "
                                     "--model) and where they are. The cache folder is $SRL_MODEL_CACHE, "
                                     "else ~/.cache/srl/models.")
    parser.add_argument("--prepare", metavar="NAME", help="Convert a known model to the cache now.")
    args = parser.parse_args(list(argv))
    if args.prepare:
        name = known_name(args.prepare)
        if name is None:
            raise InputError(f"unknown model '{args.prepare}' (expected one of {', '.join(KNOWN_MODELS)})",
                             field="prepare")
        console().print(f"{name}: ready at {resolve_model(name)}")
    table = Table(title=f"known models (cache: {model_cache_root()})", title_justify="left")
    for column in ("name", "licence", "installed", "cached", "size"):
        table.add_column(column, no_wrap=True)
    notes = []
    for row in list_models():
        if row["cached"]:
            size, note = f"{row['size'] / 1e6:,.0f} MB", row["cache_path"]
        elif row["installed"]:
            size, note = f"{row['gguf_size'] / 1e6:,.0f} MB GGUF", f"{row['gguf_path']} (converted on first use)"
        else:
            size, note = "-", f"not installed: {install_hint(row['name'])}"
        table.add_row(row["name"], row["license"], "yes" if row["installed"] else "[red]no[/]",
                      "yes" if row["cached"] else "no", size)
        notes.append(f"  {row['name']}: {note}")
    out = console()
    out.print(table)
    out.print("\n".join(notes), soft_wrap=True, markup=False)
    out.print("Use a name as --model. A model not yet cached is converted on first use (~30 s), or now with "
              "`srl models --prepare NAME`.", markup=False)
    return 0
