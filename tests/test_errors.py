"""The one place an exception becomes a line: uvtag.errors.first_line and describe."""

from __future__ import annotations

import errno

from uvtag.errors import describe, first_line


class ThirdParty(Exception):
    __module__ = "av.error"


def test_first_line():
    assert first_line(OSError(errno.ENOSPC, "No space left on device", "/x")) == "No space left on device"
    assert first_line(ValueError("\n  bad   value \nTraceback: more")) == "bad value"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(RuntimeError("x" * 500), limit=10) == "x" * 10


def test_describe_names_the_type_and_its_package():
    assert describe(IndexError("list index out of range")) == "IndexError: list index out of range"
    assert describe(ThirdParty("Invalid data\nfound")) == "av.ThirdParty: Invalid data found"
    assert describe(MemoryError()) == "MemoryError"
