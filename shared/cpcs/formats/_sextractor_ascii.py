"""Reader for whitespace-separated text catalogues, chiefly SExtractor ``CATALOG_TYPE ASCII_HEAD``.

Header conventions understood, in order:

1. SExtractor's numbered header, one ``#   N NAME  description  [unit]`` line per parameter. A vector
   parameter occupies the columns up to the next declared number (``#   5 MAG_APER`` followed by
   ``#   8 MAGERR_APER`` means MAG_APER fills columns 5-7); the last parameter takes whatever the rows
   hold beyond its number.
2. A single line of column names, commented (``# RA DEC MAG_AUTO ...``) or not, as written by awk,
   TOPCAT's ascii output and similar tools.

Aperture columns written one line per element (``MAG_APER``, ``MAG_APER_2``, ``MAG_APER_3``; also
``MAG_APER_1``...; ``(2)`` and ``[2]`` suffixes) are grouped back into a vector. Values are separated by
any run of spaces and tabs; ``#`` starts a comment anywhere. Rows whose number of values differs from
the usual count are skipped and reported to the caller, who decides whether there are too many.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

from cpcs.errors import InputError
from cpcs.formats._column_names import VECTOR_NAMES, canonical_name, is_known_name
from cpcs.formats._raw_table import (
    BoolArray,
    FloatArray,
    Loader,
    RawColumn,
    RawTable,
    ValueKind,
    parse_tokens,
)

_NUMBERED_HEADER = re.compile(r"#\s*(\d+)\s+([A-Za-z_]\S*)")
_NAME_TOKEN = re.compile(r"[A-Za-z_][\w.\-()\[\]]*")
_VECTOR_ELEMENT = re.compile(
    r"(?P<base>" + "|".join(VECTOR_NAMES) + r")(?:_(?P<a>\d+)|\((?P<b>\d+)\)|\[(?P<c>\d+)\])?", re.IGNORECASE
)
_QUOTE_LIMIT = 60
#: Most header lines read before the data: SExtractor writes one per column.
MAX_HEADER_LINES = 10_000
#: Most values a row may hold (SExtractor with every aperture of several vectors writes a few hundred).
MAX_COLUMNS = 2_000


@dataclass
class _Spec:
    """A header entry: ``name`` covers the 0-based value positions ``positions`` of each row."""

    name: str
    positions: list[int]
    line: int
    element_names: tuple[str, ...] = ()


def quote_line(line: str) -> str:
    """Quote a line for an error message, shortened if long."""
    text = line.strip()
    if len(text) > _QUOTE_LIMIT:
        text = text[: _QUOTE_LIMIT - 3] + "..."
    return repr(text)


def _is_name(token: str) -> bool:
    if not _NAME_TOKEN.fullmatch(token):
        return False
    try:
        float(token)  # "nan", "inf" look like names but are values
    except ValueError:
        return True
    return False


def _names_line(tokens: list[str], n_values: int) -> bool:
    """Whether a line's tokens look like a row of column names for rows of ``n_values`` values."""
    if len(tokens) < 2 or not all(_is_name(t) for t in tokens):
        return False
    return len(tokens) == n_values or any(is_known_name(t) for t in tokens)


def read_sextractor_ascii(text: str, *, max_rows: int) -> RawTable:
    """Parse a text catalogue into a :class:`RawTable`.

    Parameters
    ----------
    text : str
        The decoded file.
    max_rows : int
        Refuse files with more data rows than this.

    Returns
    -------
    RawTable
        With ``format="sextractor_ascii"``.

    Raises
    ------
    InputError
        ``empty_catalogue``, ``too_many_rows``, ``too_many_columns``, ``missing_columns`` (no header),
        ``malformed_header``
        (also for more than ``MAX_HEADER_LINES`` header lines),
        ``malformed_rows`` (header and rows disagree), ``duplicate_columns``, ``unreadable_catalogue``
        (comma-separated values).
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")

    # Header: the comment and blank lines before the first data line.
    numbered: list[tuple[int, str, int]] = []  # (column number, name, line number)
    comments: list[tuple[int, str]] = []
    start = len(lines)
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped[0] != "#":
            start = index
            break
        if len(numbered) + len(comments) >= MAX_HEADER_LINES:
            raise InputError(
                f"The catalogue starts with more than {MAX_HEADER_LINES} comment lines before its data; "
                "SExtractor writes one header line per column. Remove the extra '#' lines and upload again.",
                code="malformed_header",
            )
        match = _NUMBERED_HEADER.match(stripped)
        if match:
            numbered.append((int(match.group(1)), match.group(2), index + 1))
        else:
            comments.append((index + 1, stripped[1:]))

    # Body: each row is kept as its text before any "#" (blank lines and whole-line comments
    # drop out); values are split out of it again only for the columns loaded, which keeps the
    # memory of a catalogue close to its text's instead of one string object per value.
    rows: list[str] = []
    body_lines: list[int] = []
    for number, line in enumerate(lines[start:], start + 1):
        if "#" in line:
            line = line.split("#", 1)[0]
        if line and not line.isspace():
            rows.append(line)
            body_lines.append(number)

    # A leading line of names without "#" is a header, not a row.
    names_row: tuple[int, list[str]] | None = None
    first_tokens = rows[0].split() if rows else []
    if len(first_tokens) >= 2 and all(_is_name(t) for t in first_tokens):
        names_row = (body_lines[0], first_tokens)
        rows, body_lines = rows[1:], body_lines[1:]

    if not rows:
        has_header = bool(numbered) or names_row is not None
        raise InputError(
            "The catalogue has "
            + ("a header but no data rows" if has_header else "no data rows, only comments")
            + ". Upload the full SExtractor output: one line per detected star below the '#' header.",
            code="empty_catalogue",
        )
    if len(rows) > max_rows:
        raise InputError(
            f"The catalogue has {len(rows)} data rows; at most {max_rows} are accepted. Keep only the "
            "useful stars (e.g. raise SExtractor's DETECT_THRESH or cut faint sources) and upload again.",
            code="too_many_rows",
        )

    counts = np.fromiter((len(row.split()) for row in rows), dtype=np.int64, count=len(rows))
    n_values = int(np.bincount(counts).argmax())
    if n_values > MAX_COLUMNS:
        raise InputError(
            f"The catalogue's rows hold {n_values} values each; at most {MAX_COLUMNS} columns are accepted. "
            "Write only the parameters needed (position, magnitude and its error) to the SExtractor "
            ".param file.",
            code="too_many_columns",
        )
    first = rows[0].split()
    if any(
        (n_values == 1 and sep in first[0]) or (len(first) > 1 and all(t.endswith(sep) for t in first[:-1]))
        for sep in ",;|"
    ):
        raise InputError(
            "The columns appear to be separated by commas, semicolons or '|' "
            f"(line {body_lines[0]}: {quote_line(lines[body_lines[0] - 1])}). Separate values with spaces "
            "or tabs, as SExtractor's ASCII_HEAD output does, or upload a FITS table.",
            code="unreadable_catalogue",
        )
    if numbered:
        specs = _numbered_specs(numbered, n_values, body_lines[int(np.argmax(counts == n_values))])
    else:
        specs = _named_specs(comments, names_row, n_values)
    specs = _group_vector_elements(specs)

    good = counts == n_values
    if good.all():
        kept_rows, kept_lines = rows, body_lines
        first_skipped: tuple[int, str] | None = None
    else:
        kept_rows = [r for r, ok in zip(rows, good.tolist(), strict=True) if ok]
        kept_lines = [n for n, ok in zip(body_lines, good.tolist(), strict=True) if ok]
        bad_index = int(np.argmin(good))
        first_skipped = (
            body_lines[bad_index],
            f"line {body_lines[bad_index]} has {counts[bad_index]} values instead of {n_values}: "
            f"{quote_line(lines[body_lines[bad_index] - 1])}",
        )

    def describe_row(index: int) -> tuple[int, str]:
        line_number = kept_lines[index]
        return line_number, f"line {line_number}: {quote_line(lines[line_number - 1])}"

    columns = [
        RawColumn(
            name=spec.name,
            width=len(spec.positions),
            load=_loader(kept_rows, spec.positions),
            element_names=spec.element_names,
        )
        for spec in specs
    ]
    return RawTable(
        format="sextractor_ascii",
        columns=columns,
        n_rows=len(rows),
        n_loaded=len(kept_rows),
        n_skipped=len(rows) - len(kept_rows),
        first_skipped=first_skipped,
        describe_row=describe_row,
    )


def _loader(rows: list[str], positions: list[int]) -> Loader:
    def load(element: int, kind: ValueKind) -> tuple[FloatArray, BoolArray]:
        position = positions[element]
        return parse_tokens([row.split()[position] for row in rows], kind)

    return load


def _numbered_specs(numbered: list[tuple[int, str, int]], n_values: int, example_line: int) -> list[_Spec]:
    """Column layout from SExtractor's ``#   N NAME`` lines, vector widths from the numbering gaps."""
    for (prev_number, prev_name, prev_line), (number, name, line) in itertools.pairwise(numbered):
        if number <= prev_number:
            raise InputError(
                f"The header numbers its columns out of order: line {line} declares column {number} "
                f"({name}) after line {prev_line} declared column {prev_number} ({prev_name}). Each "
                "'#   N NAME' header line must give a larger column number than the one before; "
                "re-export the catalogue from SExtractor or fix the numbering.",
                code="malformed_header",
            )
    if numbered[0][0] < 1:
        raise InputError(
            f"The header declares column {numbered[0][0]} at line {numbered[0][2]}; SExtractor numbers "
            "columns from 1. Fix the numbering of the '#   N NAME' lines.",
            code="malformed_header",
        )
    last_number, last_name, last_line = numbered[-1]
    if n_values < last_number:
        raise InputError(
            f"The header declares at least {last_number} columns (line {last_line}: column {last_number} "
            f"is {last_name}) but the data rows hold {n_values} values (e.g. line {example_line}). The "
            "header must describe the rows below it: re-export header and data together from SExtractor.",
            code="malformed_rows",
        )
    ends = [number for number, _, _ in numbered[1:]] + [n_values + 1]
    return [
        _Spec(name=name, positions=list(range(number - 1, end - 1)), line=line)
        for (number, name, line), end in zip(numbered, ends, strict=True)
    ]


def _named_specs(
    comments: list[tuple[int, str]], names_row: tuple[int, list[str]] | None, n_values: int
) -> list[_Spec]:
    """Column layout from a single line of names (the last plausible one before the data)."""
    candidate: tuple[int, list[str]] | None = names_row
    if candidate is None:
        for line, comment in reversed(comments):
            tokens = comment.split()
            if _names_line(tokens, n_values):
                candidate = (line, tokens)
                break
    if candidate is None:
        raise InputError(
            "The catalogue has no header naming its columns. Write it with SExtractor's "
            "CATALOG_TYPE ASCII_HEAD (header lines such as '#   1 MAG_AUTO', '#   2 MAGERR_AUTO', "
            "'#   3 ALPHA_J2000', '#   4 DELTA_J2000'), or add one line of column names above the data.",
            code="missing_columns",
        )
    line, names = candidate
    if len(names) != n_values:
        raise InputError(
            f"The header at line {line} names {len(names)} columns but the data rows hold {n_values} "
            "values. Give exactly one name per column (separated by spaces or tabs). If coordinates are "
            "sexagesimal, write them with colons (12:34:56.7 +12:34:56), not spaces.",
            code="malformed_rows",
        )
    return [_Spec(name=name, positions=[i], line=line) for i, name in enumerate(names)]


def _group_vector_elements(specs: list[_Spec]) -> list[_Spec]:
    """Merge ``MAG_APER``/``MAG_APER_2``/... header entries into one vector column."""
    groups: dict[str, list[tuple[int, _Spec]]] = {}
    explicit: set[str] = set()
    for spec in specs:
        match = _VECTOR_ELEMENT.fullmatch(canonical_name(spec.name))
        if not match:
            continue
        base = match.group("base").upper()
        digits = match.group("a") or match.group("b") or match.group("c")
        if digits is not None:
            explicit.add(base)
        groups.setdefault(base, []).append((-1 if digits is None else int(digits), spec))
    groups = {base: members for base, members in groups.items() if base in explicit}
    if not groups:
        return specs

    merged: list[_Spec] = []
    placed: set[str] = set()
    member_ids = {id(spec): base for base, members in groups.items() for _, spec in members}
    for spec in specs:
        base = member_ids.get(id(spec))
        if base is None:
            merged.append(spec)
            continue
        if base in placed:
            continue
        placed.add(base)
        members = sorted(groups[base], key=lambda item: item[0])
        seen: dict[int, _Spec] = {}
        for key, member in members:
            if key in seen:
                raise InputError(
                    f"The header declares the same aperture twice: {seen[key].name} (line "
                    f"{seen[key].line}) and {member.name} (line {member.line}). Give each column a "
                    "distinct name.",
                    code="duplicate_columns",
                )
            seen[key] = member
        positions = [p for _, member in members for p in member.positions]
        names = tuple(
            member.name if len(member.positions) == 1 else f"{member.name}[{i}]"
            for _, member in members
            for i in range(len(member.positions))
        )
        merged.append(_Spec(name=base, positions=positions, line=members[0][1].line, element_names=names))
    return merged
