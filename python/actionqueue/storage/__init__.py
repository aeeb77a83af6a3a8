"""Durable storage: the write-ahead log (:mod:`actionqueue.storage.wal`) and, on top of it,
snapshots, recovery and the mutation authority."""

from __future__ import annotations
