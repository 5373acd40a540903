"""Ctrl-C deep in an exception chain is an interruption, never a volume failure."""

from __future__ import annotations

import pytest

from drrgen.build.tasks import caused_by_interrupt


def _chain(depth: int, link: str) -> BaseException:
    err: BaseException = KeyboardInterrupt()
    for _ in range(depth):
        new = SystemError("error return without exception set")
        setattr(new, link, err)
        err = new
    return err


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
@pytest.mark.parametrize("link", ["__context__", "__cause__"])
def test_interrupt_found_at_any_depth(depth, link):
    assert caused_by_interrupt(_chain(depth, link))


def test_mixed_cause_and_context():
    inner = RuntimeError("inner")
    inner.__context__ = KeyboardInterrupt()
    middle = ValueError("middle")
    middle.__cause__ = inner
    outer = SystemError("outer")
    outer.__context__ = middle
    assert caused_by_interrupt(outer)


def test_plain_failure_is_not_an_interrupt():
    err = SystemError("outer")
    err.__context__ = ValueError("inner")
    assert not caused_by_interrupt(err)


def test_cycle_terminates():
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a
    assert not caused_by_interrupt(a)
