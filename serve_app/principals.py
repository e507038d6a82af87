"""Who is calling: the principal a bearer token stands for, and what it may see (pure, shared by API and jobs)."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PRINCIPAL = "default"
ADMIN_FLAG = "admin"
_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


@dataclass(frozen=True)
class Principal:
    name: str
    admin: bool = False

    def may_see(self, owner: str) -> bool:
        return self.admin or owner == self.name


# With auth off there is one principal, and it sees every job (also those owned under an earlier auth setting).
ANONYMOUS = Principal(DEFAULT_PRINCIPAL, admin=True)


def parse_token_entry(entry: str, separator: str | None) -> tuple[str, Principal]:
    """`<token> [<principal> [admin]]` (fields split by `separator`, None: whitespace) -> (token, principal)."""
    fields = [field.strip() for field in entry.split(separator)]
    token, name, flags = fields[0], (fields[1:2] or [DEFAULT_PRINCIPAL])[0], fields[2:]
    if not token or not _NAME.fullmatch(name) or flags not in ([], [ADMIN_FLAG]):
        # The token itself stays out of the message: it ends up in the deploy log.
        raise ValueError(
            f"a token entry has the form <token> [<principal> [{ADMIN_FLAG}]], where a principal is 1-64 letters, "
            f"digits or ._@-; got one with {len(fields)} field(s) naming {name[:64]!r}"
        )
    return token, Principal(name, admin=bool(flags))


def parse_tokens(texts: list[tuple[str, str | None]]) -> dict[str, Principal]:
    """Token -> principal from (text, field separator) pairs: a file's lines (whitespace) or an env var's
    comma-separated entries (`:`); blank entries and `#` comments are skipped."""
    tokens: dict[str, Principal] = {}
    for text, separator in texts:
        entries = text.split(",") if separator == ":" else text.splitlines()
        for entry in entries:
            if not entry.strip() or entry.lstrip().startswith("#"):
                continue
            token, principal = parse_token_entry(entry.strip(), separator)
            if tokens.get(token, principal) != principal:
                raise ValueError(f"one token is given to two principals ({tokens[token].name}, {principal.name})")
            tokens[token] = principal
    return tokens
