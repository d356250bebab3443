//! Figures, their targets, the printed table and the JSON file each scenario writes.

use std::path::Path;

use anyhow::Context;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use serde_json::Value;

/// One measured figure, with its target when the issue sets one.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub value: Option<f64>,
    pub unit: String,
    pub target: Option<String>,
    pub met: Option<bool>,
}

/// A scenario's result: its parameters, figures and notes.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub wall_seconds: f64,
    pub machine: Value,
    pub params: Value,
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(scenario: &str, params: Value) -> Self {
        Self {
            scenario: scenario.to_owned(),
            started_at: chrono::Utc::now(),
            wall_seconds: 0.0,
            machine: machine(),
            params,
            figures: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A figure without a target.
    pub fn fig(&mut self, name: impl Into<String>, value: Option<f64>, unit: &str) {
        self.figures.push(Figure {
            name: name.into(),
            value,
            unit: unit.to_owned(),
            target: None,
            met: None,
        });
    }

    /// A figure that must be at most `max`.
    pub fn at_most(&mut self, name: impl Into<String>, value: Option<f64>, unit: &str, max: f64) {
        let met = Some(value.is_some_and(|v| v <= max));
        self.figures.push(Figure {
            name: name.into(),
            value,
            unit: unit.to_owned(),
            target: Some(format!("≤ {}", num(max))),
            met,
        });
    }

    /// A figure that must be at least `min`.
    pub fn at_least(&mut self, name: impl Into<String>, value: Option<f64>, unit: &str, min: f64) {
        let met = Some(value.is_some_and(|v| v >= min));
        self.figures.push(Figure {
            name: name.into(),
            value,
            unit: unit.to_owned(),
            target: Some(format!("≥ {}", num(min))),
            met,
        });
    }

    pub fn note(&mut self, s: impl Into<String>) {
        let s = s.into();
        eprintln!("note: {s}");
        self.notes.push(s);
    }

    pub fn print(&self) {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(vec!["figure", "value", "unit", "target", "met"]);
        for f in &self.figures {
            t.add_row(vec![
                f.name.clone(),
                f.value.map(num).unwrap_or_else(|| "–".into()),
                f.unit.clone(),
                f.target.clone().unwrap_or_default(),
                match f.met {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => String::new(),
                },
            ]);
        }
        println!(
            "\n== {} ({:.0} s) ==\n{t}",
            self.scenario, self.wall_seconds
        );
        for n in &self.notes {
            println!("  - {n}");
        }
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{}.json", self.scenario));
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
        Ok(())
    }
}

/// Numbers as a reader wants them: integers plainly, others to three significant places.
pub fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Nearest-rank percentile of unsorted samples; `None` when there are none.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    Some(s[rank.clamp(1, s.len()) - 1])
}

pub fn max(samples: &[f64]) -> Option<f64> {
    samples.iter().copied().max_by(f64::total_cmp)
}

/// Cores, memory and the commit, for the record.
fn machine() -> Value {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_kb = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    });
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    serde_json::json!({ "cores": cores, "mem_total_kb": mem_kb, "commit": commit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&s, 50.0), Some(50.0));
        assert_eq!(percentile(&s, 99.0), Some(99.0));
        assert_eq!(percentile(&s, 100.0), Some(100.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
