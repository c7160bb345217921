"""The JSONL files a recipe trains on: every line checked before launch, and the tokenised cache keyed on them.

Axolotl tokenises the datasets once and keeps the result under ``dataset_prepared_path``, in a
subfolder named by an md5 of the recipe keys that shape the tokens (``sequence_len``, packing,
the chat template, each dataset's path, type and fields) and of the tokenizer's *name*: not of
the rows. So after ``mathpal prepare-data`` writes new rows to the same path, or ``mathpal
tiny-model`` a new tokenizer into the same folder, the next run "loads the prepared dataset
from disk" and trains on the old tokens, while its record names the new data.

``prepared_path`` adds the content to the key: ``<dataset_prepared_path>/data-<sha256 of the
JSONL files and the tokenizer files>``, under which Axolotl keeps its own md5 subfolder. A run
never reads tokens made from other files than the ones it hashed; unchanged data still
reuses its cache. ``RunStatePlugin`` applies it inside the job (so a run launched by hand
is keyed too), and ``mathpal train`` records the same key.

``read_data_file`` is the check before launch: every line parses as a JSON object with a
``messages`` list of ``{role, content}`` objects, each problem named by file and 1-based
line, which Axolotl, which reads the files as one Arrow table, cannot do.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mathpal_common.atomic_files import file_sha256

# Where Axolotl keeps the tokenised data when a recipe names no dataset_prepared_path.
AXOLOTL_DEFAULT_PREPARED = "last_run_prepared"
PREPARED_PREFIX = "data-"
KEYED_FOLDER = re.compile(r"^data-[0-9a-f]{16}$")
# Dataset formats read from local files (Axolotl's ds_type), and the suffixes that imply JSON.
LOCAL_TYPES = {"json", "csv", "parquet", "text"}
JSON_SUFFIXES = (".jsonl", ".json")
# The files of a tokenizer folder that decide how text becomes tokens.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)
FIX = "re-export it with `mathpal prepare-data`"


class DataChanged(RuntimeError):
    """The data or tokenizer changed between ``mathpal train``'s check and the job's read of them."""


class DataError(ValueError):
    """A data file that training would fail on (or silently learn nothing from); one line naming file and line."""


@dataclass(frozen=True)
class DataFile:
    """One local dataset file of a recipe, read whole: where the recipe names it, its rows and sha256."""

    group: str  # "datasets" or "test_datasets"
    index: int
    path: Path
    rows: int
    sha256: str
    contents: tuple[tuple[str, ...], ...]  # each row's message contents, in order

    @property
    def texts(self) -> list[str]:
        """Each row's message contents joined: what ``sequence_len`` must hold."""
        return ["\n".join(row) for row in self.contents]


def local_datasets(cfg: dict[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """``(group, index, entry)`` of every dataset entry read from a local file (not a hub dataset)."""
    for group in ("datasets", "test_datasets"):
        for index, entry in enumerate(cfg.get(group) or []):
            if not isinstance(entry, dict):
                continue
            path = str(entry.get("path", ""))
            if entry.get("ds_type") in LOCAL_TYPES or path.endswith(JSON_SUFFIXES):
                yield group, index, entry


def read_data_file(group: str, index: int, entry: dict[str, Any]) -> DataFile:
    """Read one JSONL dataset file whole, refusing in one line what Axolotl would fail on after start-up.

    A chat_template dataset needs, on every line, a JSON object whose ``field_messages``
    (default ``messages``) is a non-empty list of ``{role, content}`` objects. Blank lines are
    skipped, as Axolotl's JSON reader skips them. Other formats are only checked for JSON.
    """
    path = Path(str(entry.get("path", "")))
    where = f"{group}[{index}].path {path}"
    if not path.exists():
        raise DataError(f"{where} does not exist: run `mathpal prepare-data` (or fix the path)")
    if not path.is_file():
        raise DataError(f"{where} is a folder: name the JSONL file itself, e.g. data/train.jsonl")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path} cannot be read: {err.strerror or err}") from None
    field = str(entry.get("field_messages") or "messages")
    chat = entry.get("type") in (None, "chat_template") and str(path).endswith(JSON_SUFFIXES)
    contents: list[tuple[str, ...]] = []
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        contents.append(_row_contents(path, number, line, field, chat, last=number == len(lines)))
    if not contents:
        raise DataError(f"{path} has no rows (the file is empty): {FIX}, or point {group}[{index}] at another file")
    return DataFile(group, index, path, len(contents), hashlib.sha256(raw).hexdigest(), tuple(contents))


def _row_contents(path: Path, number: int, line: bytes, field: str, chat: bool, last: bool) -> tuple[str, ...]:
    """The message contents of one line; a ``DataError`` naming ``path:number`` when it is unusable.

    An empty ``messages`` list passes: the row trains nothing and Axolotl drops it.
    """
    where = f"{path}:{number}"
    try:
        text = line.decode("utf-8")
        row = json.loads(text)
    except UnicodeDecodeError as err:
        raise DataError(f"{where} is not UTF-8 text (byte {err.start}): {FIX}") from None
    except json.JSONDecodeError as err:
        # A row cut short fails where the text runs out, or inside a string that runs to the end.
        ends = err.pos >= len(text.rstrip()) or err.msg.startswith("Unterminated string")
        cut = " (the file ends inside it: cut off mid-line)" if last and ends else ""
        raise DataError(f"{where} is not valid JSON{cut}: {FIX}") from None
    if not isinstance(row, dict):
        raise DataError(f"{where} is a JSON {type(row).__name__}, not an object: write one object a line")
    if not chat:
        return ()
    messages = row.get(field)
    if not isinstance(messages, list):
        got = "missing" if messages is None else f"{type(messages).__name__} {messages!r}"[:60]
        raise DataError(f"{where} has no '{field}' list of messages ({got}): {FIX}")
    parts = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or "content" not in message:
            raise DataError(f"{where}: {field}[{i}] is not a {{role, content}} object: {FIX}")
        content = message["content"]
        parts.append(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False))
    return tuple(parts)


def read_data_files(cfg: dict[str, Any]) -> list[DataFile]:
    """Every local dataset file of the recipe, read and checked (``DataError`` at the first bad line)."""
    return [read_data_file(group, index, entry) for group, index, entry in local_datasets(cfg)]


# --------------------------------------------------------------------------- the tokenised cache


def tokenizer_source(cfg: dict[str, Any]) -> str:
    """Where Axolotl loads the tokenizer from: ``tokenizer_config``, else the base model."""
    return str(cfg.get("tokenizer_config") or cfg.get("base_model") or "")


def tokenizer_fingerprint(cfg: dict[str, Any]) -> dict[str, str]:
    """What decides the tokens besides the recipe keys: each tokenizer file's sha256 for a local
    folder (a rebuilt tiny model keeps its name), else the hub id and revision."""
    source = tokenizer_source(cfg)
    folder = Path(source)
    if folder.is_dir():
        return {name: file_sha256(folder / name) for name in TOKENIZER_FILES if (folder / name).is_file()}
    return {"hub": source, "revision": str(cfg.get("revision_of_model") or "")}


def data_key(cfg: dict[str, Any], files: list[DataFile] | None = None) -> str:
    """The content part of the cache key: sha256 over every local data file and the tokenizer files."""
    if files is None:
        files = [
            (group, index, file_sha256(Path(str(entry.get("path")))))
            for group, index, entry in local_datasets(cfg)
            if Path(str(entry.get("path"))).is_file()
        ]
    else:
        files = [(f.group, f.index, f.sha256) for f in files]
    payload = {"data": [list(f) for f in files], "tokenizer": tokenizer_fingerprint(cfg)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def prepared_path(cfg: dict[str, Any], files: list[DataFile] | None = None) -> Path:
    """``<dataset_prepared_path>/data-<key>``: where this run's tokenised data lives (Axolotl adds its md5).

    Idempotent: a path that already ends in a ``data-<key>`` folder (a run's resolved config
    read again) has that last part replaced, never nested.
    """
    base = Path(str(cfg.get("dataset_prepared_path") or AXOLOTL_DEFAULT_PREPARED))
    if KEYED_FOLDER.match(base.name):
        base = base.parent
    return base / f"{PREPARED_PREFIX}{data_key(cfg, files)[:16]}"


def key_prepared_data(cfg) -> Path:
    """Point ``cfg.dataset_prepared_path`` at the tokenised cache of exactly these data files and this
    tokenizer (``prepared_path``), and return it: ``RunStatePlugin`` calls it in the job, before Axolotl
    loads the datasets.

    A launch by ``mathpal train`` recorded the key it computed; a different one here means a file
    changed in between (a re-export during start-up): refused, since the record would name other data.
    """
    from mathpal_train.run_folder import read_pending

    keyed = prepared_path(cfg)
    recorded = ((read_pending(Path(cfg.output_dir)) or {}).get("dataset") or {}).get("prepared_path")
    if recorded and recorded != os.path.abspath(keyed):
        raise DataChanged(
            f"the training data or tokenizer changed after `mathpal train` checked them (tokenised data "
            f"{keyed.name}, recorded {Path(recorded).name}): rerun `mathpal train`"
        )
    cfg.dataset_prepared_path = str(keyed)
    return keyed
