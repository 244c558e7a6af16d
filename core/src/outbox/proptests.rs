//! Property tests of the outbox invariants (filled in below).
