//! lapse-store against real SQLite files in temporary directories.

mod commit;
mod fixture;
mod grants;
mod group;
mod history;
mod load;
mod open;
mod requests;
mod tokens;
