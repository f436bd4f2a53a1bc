"""The exception hierarchy: the same classes as the command line's exit codes."""
from __future__ import annotations


class Error(Exception):
    """Every error LabelDB raises. `code` is the class: 1 not found, 2 bad input, 3 store error."""
    code = 0


class NotFound(Error):
    """A requested sample, label set, version or projector does not exist, or the clearance hides it."""
    code = 1


class BadInput(Error):
    """Bad arguments or data, or a misused store or transaction; nothing was written."""
    code = 2


class Refused(BadInput):
    """The clearance sees too little for the operation, or a privilege is missing."""


class StoreError(Error):
    """Damaged bytes, LMDB or the file system."""
    code = 3


def from_code(code: int, message: str, refused: bool = False) -> Error:
    """The exception for a C API return code."""
    if code == 1:
        return NotFound(message)
    if code == 2:
        return Refused(message) if refused else BadInput(message)
    return StoreError(message)
