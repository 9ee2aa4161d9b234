"""One base for every error sevnet reports to a user (bad input, a bad file, a failed check).

``sevnet`` catches ``SevnetError`` once, in ``cli.main``, prints ``sevnet VERB: error: <message>``
and exits 2 (``sevnet --debug VERB``: its traceback first); anything else is a bug, or a failure
that is nobody's input (out of memory, a crashed library), and keeps its traceback. Each subclass
also derives from the built-in exception it replaced (ValueError, FileNotFoundError, RuntimeError),
so existing ``except`` clauses still hold.

Subclasses that belong to one part of sevnet live there (``CheckpointError``, ``AnnotationError``,
``DecodeError``, ``ModelFileError``, ...); the general ones are here.
"""

from __future__ import annotations


class SevnetError(Exception):
    """An error whose message is meant for the user: it names the file, line, key or argument."""


class ConfigError(SevnetError, ValueError):
    """An invalid experiment config: unknown key, wrong type, invalid value (the message names the key)."""


class InputError(SevnetError, ValueError):
    """An invalid argument or option (the message names it and says what is accepted)."""


class NotFoundError(SevnetError, FileNotFoundError):
    """A file or folder the user named is not there (the message names it and where it was looked for)."""


class NotAFolderError(SevnetError, NotADirectoryError):
    """A path the user named must be a folder and is not."""
