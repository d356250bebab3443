//! lapse-store
