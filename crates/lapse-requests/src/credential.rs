//! Secrets read from credential files: a path in the settings, or a systemd credential name
//! (`LoadCredential=`, read from `$CREDENTIALS_DIRECTORY/<name>`). Never from the TOML itself.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

/// Where a secret comes from: exactly one of a file or a systemd credential.
pub fn secret_path(
    file: Option<&Path>,
    credential: Option<&str>,
    file_key: &str,
    credential_key: &str,
) -> Result<PathBuf, String> {
    match (file, credential) {
        (Some(p), None) => Ok(p.to_owned()),
        (None, Some(c)) => match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) => Ok(PathBuf::from(dir).join(c)),
            None => Err(format!(
                "{credential_key} is set but $CREDENTIALS_DIRECTORY is not; give {file_key} or run under systemd with LoadCredential="
            )),
        },
        (Some(_), Some(_)) => Err(format!("give only one of {file_key} or {credential_key}")),
        (None, None) => Err(format!("give one of {file_key} or {credential_key}")),
    }
}

/// The secret in `path`, surrounding whitespace trimmed; an empty file is refused. Errors name
/// the file, never the contents.
pub fn read_secret(path: &Path) -> Result<SecretString, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let s = text.trim();
    if s.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(SecretString::from(s.to_owned()))
}

/// [`secret_path`] then [`read_secret`].
pub fn load(
    file: Option<&Path>,
    credential: Option<&str>,
    file_key: &str,
    credential_key: &str,
) -> Result<SecretString, String> {
    read_secret(&secret_path(file, credential, file_key, credential_key)?)
}
