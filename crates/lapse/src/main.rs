//! lapse
fn main() {}
