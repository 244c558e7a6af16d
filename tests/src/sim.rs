//! Deterministic multi-device simulation (see its module docs).
