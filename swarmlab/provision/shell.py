"""Shell command lines with every value quoted, the way pyinfra's own operations build them.

Commands are `StringCommand`s whose literal bits are constant shell text and whose values are
wrapped in `QuoteString` (shlex-quoted: a value of safe characters is left as it is, anything
else is single-quoted). The builders here return the command line as text, so callers keep
yielding and comparing plain strings.
"""

from __future__ import annotations

from pyinfra.api import QuoteString, StringCommand


def q(value: object) -> QuoteString:
    """A value for a command line (quoted when it holds anything but safe characters)."""
    return QuoteString(str(value))


def line(*bits: str | QuoteString | StringCommand, sep: str = " ") -> str:
    """Constant shell text (`str` bits) and quoted values (`q(...)` bits), joined by `sep`."""
    return StringCommand(*bits, _separator=sep).get_raw_value()


def argv(*words: object) -> str:
    """A simple command whose every word is quoted: `argv("docker", "node", "rm", node_id)`."""
    return line(*(q(w) for w in words))
