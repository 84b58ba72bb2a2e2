//! Repository statistics.
