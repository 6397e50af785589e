"""The op table: one declaration per op, and its checks match its request type."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from vaultd.ipc import protocol, views
from vaultd.ipc.protocol import OP_TABLE, OPS, Request, op


def test_every_declared_op_is_parsed_from_its_own_table_entry() -> None:
    assert set(OP_TABLE) == OPS
    for name, spec in OP_TABLE.items():
        assert spec.request.op == name
        if not any(rule.required for rule in spec.fields.values()):
            assert type(protocol.parse_request({"v": 1, "op": name})) is spec.request


def test_an_op_declared_twice_is_refused() -> None:
    with pytest.raises(RuntimeError, match="declared twice"):

        @op("status", views.StatusReply)
        @dataclass(frozen=True, slots=True)
        class Again(Request):
            """A second ``status``."""


def test_checks_that_do_not_match_the_fields_are_refused() -> None:
    with pytest.raises(RuntimeError, match="do not match"):

        @op("not_an_op", views.EmptyReply)
        @dataclass(frozen=True, slots=True)
        class Unchecked(Request):
            """A field without a check."""

            name: str

    assert "not_an_op" not in OP_TABLE
