"""One base for every error sevnet reports to a user (bad input, a bad file, a failed check).

``sevnet`` catches ``SevnetError`` once, in ``cli.main``, prints ``sevnet VERB: error: <message>``
and exits 2; anything else is a bug and keeps its traceback. Each subclass also derives from the
built-in exception it replaced (ValueError, RuntimeError), so existing ``except`` clauses still hold.
"""

from __future__ import annotations


class SevnetError(Exception):
    """An error whose message is meant for the user: it names the file, line, key or argument."""


class ConfigError(SevnetError, ValueError):
    """An invalid experiment config: unknown key, wrong type, invalid value (the message names the key)."""
