//! `lapse config check FILE`: every problem of a settings file in one run, each with where it
//! came from — the file and line (from the TOML parser's spans), or the environment variable
//! that set the value.
//!
//! The `config` crate stops at the first value it cannot read, so each setting of the file and
//! of the environment is first read on its own over the defaults; the whole is then loaded and
//! every rule it breaks reported.

use std::collections::HashMap;
use std::path::Path;

use crate::{DEFAULTS, Settings, SettingsError, environment, finish};

/// Every problem of `file` with the environment over it; empty when the daemon would start.
pub fn check_file(file: &Path) -> Vec<SettingsError> {
    let shown = file.display().to_string();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            return vec![SettingsError::At {
                at: shown,
                error: Box::new(SettingsError::Syntax {
                    cause: format!("cannot be read: {e}"),
                }),
            }];
        }
    };
    let lines = match Lines::parse(&text) {
        Ok(lines) => lines,
        Err((line, cause)) => {
            return vec![SettingsError::At {
                at: format!("{shown}:{line}"),
                error: Box::new(SettingsError::Syntax { cause }),
            }];
        }
    };
    let vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("LAPSE__"))
        .collect();
    let var_of = |key: &str| -> Option<String> {
        let name = format!("LAPSE__{}", key.replace('.', "__").to_ascii_uppercase());
        vars.iter().any(|(k, _)| *k == name).then_some(name)
    };
    let at_file = |key: Option<&str>| match key.and_then(|k| lines.line_of(k)) {
        Some(line) => format!("{shown}:{line}"),
        None => shown.clone(),
    };
    let mut problems = Vec::new();

    // Each setting of the file alone over the defaults: what cannot be read at all.
    for (unit, snippet) in lines.units(&text) {
        let b = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(config::File::from_str(&snippet, config::FileFormat::Toml));
        if let Err(e) = finish(b) {
            let key = e.key().map(str::to_owned).unwrap_or(unit);
            problems.push(SettingsError::At {
                at: at_file(Some(&key)),
                error: Box::new(e),
            });
        }
    }
    // Each environment variable alone over the defaults.
    for (name, value) in &vars {
        let one: HashMap<String, String> = [(name.clone(), value.clone())].into_iter().collect();
        let b = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(environment().source(Some(one)));
        if let Err(e) = finish(b) {
            problems.push(SettingsError::At {
                at: format!("environment variable {name}"),
                error: Box::new(e),
            });
        }
    }
    if !problems.is_empty() {
        return problems;
    }
    // The whole, and every rule it breaks.
    match Settings::load(Some(file)) {
        Err(e) => vec![SettingsError::At {
            at: at_file(e.key()),
            error: Box::new(e),
        }],
        Ok(settings) => settings
            .problems()
            .into_iter()
            .map(|e| {
                let at = match e.key().and_then(var_of) {
                    Some(var) => format!("environment variable {var}"),
                    None => at_file(e.key()),
                };
                SettingsError::At {
                    at,
                    error: Box::new(e),
                }
            })
            .collect(),
    }
}

/// Where each setting of a file is written: `section.key` (or a top-level `key`) to its line.
struct Lines {
    keys: Vec<(String, usize)>,
}

impl Lines {
    fn parse(text: &str) -> Result<Lines, (usize, String)> {
        let line_at = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let table = toml::de::DeTable::parse(text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_at(s.start));
            (line, e.to_string().trim().to_owned())
        })?;
        let mut keys = Vec::new();
        for (k, v) in table.get_ref() {
            let name = k.get_ref().to_string();
            keys.push((name.clone(), line_at(k.span().start)));
            if let toml::de::DeValue::Table(inner) = v.get_ref() {
                for (ik, _) in inner {
                    keys.push((format!("{name}.{}", ik.get_ref()), line_at(ik.span().start)));
                }
            }
        }
        Ok(Lines { keys })
    }

    /// The line of `key`, else of its section.
    fn line_of(&self, key: &str) -> Option<usize> {
        let found = |k: &str| self.keys.iter().find(|(n, _)| n == k).map(|(_, l)| *l);
        found(key).or_else(|| key.split_once('.').and_then(|(section, _)| found(section)))
    }

    /// Each setting of the file as a TOML document of its own, with its name.
    fn units(&self, text: &str) -> Vec<(String, String)> {
        let Ok(table) = text.parse::<toml::Table>() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (section, value) in &table {
            match value {
                toml::Value::Table(inner) => {
                    for (key, v) in inner {
                        let mut one = toml::Table::new();
                        let mut sub = toml::Table::new();
                        sub.insert(key.clone(), v.clone());
                        one.insert(section.clone(), toml::Value::Table(sub));
                        if let Ok(doc) = toml::to_string(&one) {
                            out.push((format!("{section}.{key}"), doc));
                        }
                    }
                }
                other => {
                    let mut one = toml::Table::new();
                    one.insert(section.clone(), other.clone());
                    if let Ok(doc) = toml::to_string(&one) {
                        out.push((section.clone(), doc));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_on_their_lines() {
        let text =
            "# comment\n[engine]\ntick = \"5s\"\n\nconcurrency = 0\n[log]\nformat = \"xml\"\n";
        let lines = Lines::parse(text).expect("parses");
        assert_eq!(lines.line_of("engine.tick"), Some(3));
        assert_eq!(lines.line_of("engine.concurrency"), Some(5));
        assert_eq!(lines.line_of("log.format"), Some(7));
        assert_eq!(lines.line_of("log.filter"), Some(6), "else its section");
        assert_eq!(lines.line_of("server.listen"), None);
        let (line, _) = Lines::parse("[a]\nx = 1\ny = \n").err().expect("an error");
        assert_eq!(line, 3);
    }

    #[test]
    fn three_problems_are_reported_in_one_run_with_their_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("lapse.toml");
        std::fs::write(
            &file,
            "[twingate]\nbase_url = \"https://acme.twingate.com\"\npage_size = 500\n\
             [engine]\ntick = \"soon\"\nconcurrency = 0\n[log]\nformat = \"xml\"\n",
        )
        .expect("write");
        let problems: Vec<String> = check_file(&file).iter().map(|p| p.to_string()).collect();
        let f = file.display().to_string();
        // `tick = "soon"` cannot be read at all: it is reported alone, before the rules.
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].starts_with(&format!("{f}:5: engine.tick")),
            "{problems:#?}"
        );
        std::fs::write(
            &file,
            "[twingate]\nbase_url = \"https://acme.twingate.com\"\npage_size = 500\n\
             [engine]\ntick = \"5s\"\nconcurrency = 0\n[log]\nformat = \"xml\"\n",
        )
        .expect("write");
        let problems: Vec<String> = check_file(&file).iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        for (line, key) in [
            (3, "twingate.page_size"),
            (5, "engine.tick"),
            (6, "engine.concurrency"),
            (8, "log.format"),
        ] {
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(&format!("{f}:{line}: {key}"))),
                "{key} at line {line}: {problems:#?}"
            );
        }
    }
}
