"""The incident history on Kafka: a faust global table, seen as the mapping the diagnoser reads and writes.

Diagnose is partitioned by incident id but looks history up by root-cause
signature, which any incident on any partition may share; so every worker
holds the whole history (a global table over a one-partition changelog) and
reads what other workers write as it comes.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from types import SimpleNamespace

import faust

from agents.app import on_partition_of


class _OnPartition:
    """Stands for an event on one partition: faust files a table write under the current event's partition."""

    def __init__(self, partition: int):
        self.message = SimpleNamespace(partition=partition)


_CHANGELOG_PARTITION = _OnPartition(0)  # the one partition of the history changelog


class HistoryTable(MutableMapping):
    """History keys to JSON text over a global table of bytes; writes land on the changelog's one partition."""

    def __init__(self, table: faust.GlobalTable):
        self.table = table

    def __getitem__(self, key: str) -> str:
        raw = self.table.get(key)
        if raw is None:
            raise KeyError(key)
        return raw.decode() if isinstance(raw, bytes) else raw

    def __contains__(self, key: object) -> bool:
        return key in self.table

    def __setitem__(self, key: str, value: str) -> None:
        with on_partition_of(_CHANGELOG_PARTITION):
            self.table[key] = value.encode()

    def __delitem__(self, key: str) -> None:
        with on_partition_of(_CHANGELOG_PARTITION):
            del self.table[key]

    def __iter__(self) -> Iterator[str]:
        return (k.decode() if isinstance(k, bytes) else k for k in self.table.keys())

    def __len__(self) -> int:
        return len(self.table)
