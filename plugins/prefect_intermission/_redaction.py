"""Secrets masked out of a command line or a storage URL before it is shown in logs, artifacts or messages."""

from __future__ import annotations

import re

from sqlalchemy.engine import make_url

_SECRET_FLAG = re.compile(r"^--?[\w.-]*(token|secret|passw(or)?d|api[-_]?key|credential)[\w.-]*$", re.I)


def redact_arguments(argv: list[str]) -> list[str]:
    """Command-line arguments with secrets replaced by `***`: URL passwords, `password=`
    query values, and the values of flags named like a token, secret, password or key."""
    redacted = []
    for position, argument in enumerate(argv):
        flag, equals, _ = argument.partition("=")
        if position > 0 and _SECRET_FLAG.match(argv[position - 1]) and not argument.startswith("-"):
            argument = "***"
        elif equals and _SECRET_FLAG.match(flag):
            argument = f"{flag}=***"
        argument = re.sub(r"(://[^/:@\s]*:)[^@/\s]+@", r"\1***@", argument)
        argument = re.sub(r"((?:ssl)?password=)[^&\s]+", r"\1***", argument, flags=re.I)
        redacted.append(argument)
    return redacted


def hide_password(url: str) -> str:
    """A storage URL safe to print: any password is replaced by `***`."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable storage URL>"
