"""Split a query on top-level ``;`` to decide whether it is a script.

Only quotes and comments are understood (enough that a ``;`` inside a string
or a fakebq directive does not split); a query with two or more statements
becomes a script parent with one child job per statement.
"""

from __future__ import annotations


def split_statements(sql: str) -> list[str]:
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"', "`"):
            end = _end_of_quoted(sql, i)
            current.append(sql[i:end])
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
            current.append(sql[i:end])
            i = end
        elif sql.startswith("--", i) or ch == "#":
            end = sql.find("\n", i)
            end = n if end < 0 else end
            current.append(sql[i:end])
            i = end
        elif ch == ";":
            statements.append("".join(current))
            current = []
            i += 1
        else:
            current.append(ch)
            i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if _has_code(s)]


def _end_of_quoted(sql: str, start: int) -> int:
    quote = sql[start]
    i = start + 1
    while i < len(sql):
        if sql[i] == "\\":
            i += 2
            continue
        if sql[i] == quote:
            return i + 1
        i += 1
    return len(sql)


def _has_code(statement: str) -> bool:
    """True unless the piece is only whitespace and comments."""
    stripped = statement.strip()
    while stripped:
        if stripped.startswith("/*"):
            end = stripped.find("*/")
            stripped = "" if end < 0 else stripped[end + 2:].strip()
        elif stripped.startswith("--") or stripped.startswith("#"):
            end = stripped.find("\n")
            stripped = "" if end < 0 else stripped[end + 1:].strip()
        else:
            return True
    return False
