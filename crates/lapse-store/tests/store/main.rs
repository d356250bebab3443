//! lapse-store against real SQLite files in temporary directories and real PostgreSQL
//! databases created for each test.

mod commit;
mod fixture;
mod grants;
mod group;
mod history;
mod load;
mod open;
mod requests;
mod shared;
mod tokens;
