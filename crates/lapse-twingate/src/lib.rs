//! lapse-twingate
