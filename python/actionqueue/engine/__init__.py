"""The scheduling engine: derivation, promotion, selection, leases and concurrency keys.

Decisions are made here in Python; the state they read and write lives in the Rust
projection behind the mutation authority.
"""

from __future__ import annotations
