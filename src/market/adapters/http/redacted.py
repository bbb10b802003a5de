"""Request and response bodies that carry a secret: their `repr()` shows `'***'` in its place.

msgspec has no per-field `repr=False`; a traceback, a debugger or an error reporter printing a body must still
never print a password, a card token, a bearer token or a webhook secret.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

HIDDEN = "'***'"


class RedactedStruct(msgspec.Struct):
    """Base of bodies with secret fields, named in `secret_fields`."""

    secret_fields: ClassVar[frozenset[str]] = frozenset()

    def __repr__(self) -> str:
        shown = (
            f"{name}={HIDDEN if name in self.secret_fields else repr(getattr(self, name))}"
            for name in self.__struct_fields__
        )
        return f"{type(self).__name__}({', '.join(shown)})"
