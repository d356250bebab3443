//! Creating the database file and its directories private to lapse's user, whatever the umask.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::StoreError;

/// Directories lapse creates: only its user may list or enter them.
const DIR_MODE: u32 = 0o700;
/// The database file: only lapse's user may read or write it. SQLite gives the WAL and
/// shared-memory files the database file's mode.
const FILE_MODE: u32 = 0o600;

/// Creates the missing directories above `db` (0700) and the file itself (0600), leaving
/// whatever already exists as it is.
///
/// The modes are set explicitly after creation, because the mode passed at creation is
/// narrowed by the umask (a umask of 0277 would leave a file lapse cannot write) and a
/// permissive umask is no concern of ours either way.
pub(crate) fn create_private(db: &Path) -> Result<(), StoreError> {
    let io = |step| move |source| StoreError::Io { step, source };
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Top-down, so that each directory is made by us with our mode, or was there before.
        let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
        for d in missing.into_iter().rev() {
            match DirBuilder::new().mode(DIR_MODE).create(d) {
                Ok(()) => std::fs::set_permissions(d, Permissions::from_mode(DIR_MODE))
                    .map_err(io("setting the database directory's mode"))?,
                // Made by someone else meanwhile: theirs, not ours to change.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io("creating the database directory")(e)),
            }
        }
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(db)
    {
        Ok(file) => file
            .set_permissions(Permissions::from_mode(FILE_MODE))
            .map_err(io("setting the database file's mode")),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io("creating the database file")(e)),
    }
}
