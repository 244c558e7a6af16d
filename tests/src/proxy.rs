//! Fault-injection TCP proxy (see its module docs).
