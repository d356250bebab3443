//! lapse-engine
