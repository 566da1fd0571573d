//! `configure`: docker and containers tools set up to use this helper (being written).
