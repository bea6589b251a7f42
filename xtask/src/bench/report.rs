//! Turning samples into medians and ratios, and writing them as markdown, JSON and an SVG chart.

use super::systems::System;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub median: f64,
    pub p90: f64,
    pub samples: Vec<f64>,
}

impl Summary {
    pub fn of(mut samples: Vec<f64>) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let raw = samples.clone();
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let median = if n % 2 == 1 {
            samples[n / 2]
        } else {
            (samples[n / 2 - 1] + samples[n / 2]) / 2.0
        };
        // Nearest rank.
        let p90 = samples[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1];
        Some(Summary {
            median,
            p90,
            samples: raw,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    pub key: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub systems: BTreeMap<&'static str, Summary>,
}

/// A target: tether's median over a reference system's, compared with a bound.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The system the ratio is of (tether, or tether's containerd shim).
    pub ours: &'static str,
    pub metric: &'static str,
    pub against: &'static str,
    /// "<=" or ">=".
    pub relation: &'static str,
    pub bound: f64,
    pub ratio: Option<f64>,
    pub met: Option<bool>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub quick: bool,
    pub machine: String,
    pub metrics: Vec<Metric>,
    pub targets: Vec<Target>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn add(
        &mut self,
        key: &'static str,
        title: &'static str,
        unit: &'static str,
        samples: Vec<(System, Vec<f64>)>,
    ) {
        let systems = samples
            .into_iter()
            .filter_map(|(system, s)| Some((system.name(), Summary::of(s)?)))
            .collect();
        self.metrics.push(Metric {
            key,
            title,
            unit,
            systems,
        });
    }

    pub fn median(&self, key: &str, system: System) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.key == key)?
            .systems
            .get(system.name())
            .map(|s| s.median)
    }

    pub fn target(
        &mut self,
        metric: &'static str,
        against: System,
        relation: &'static str,
        bound: f64,
    ) {
        self.target_of(System::Tether, metric, against, relation, bound);
    }

    /// A target on the ratio of `ours` over `against`.
    pub fn target_of(
        &mut self,
        ours: System,
        metric: &'static str,
        against: System,
        relation: &'static str,
        bound: f64,
    ) {
        let ratio = match (self.median(metric, ours), self.median(metric, against)) {
            (Some(ours), Some(theirs)) if theirs > 0.0 => Some(ours / theirs),
            _ => None,
        };
        let met = ratio.map(|r| {
            if relation == "<=" {
                r <= bound
            } else {
                r >= bound
            }
        });
        self.targets.push(Target {
            ours: ours.name(),
            metric,
            against: against.name(),
            relation,
            bound,
            ratio,
            met,
        });
    }

    /// A target on tether's own median (not a ratio), e.g. memory growth over a soak.
    pub fn absolute_target(&mut self, metric: &'static str, relation: &'static str, bound: f64) {
        self.absolute_target_of(System::Tether, metric, relation, bound);
    }

    /// A target on `ours`'s own median (not a ratio).
    pub fn absolute_target_of(
        &mut self,
        ours: System,
        metric: &'static str,
        relation: &'static str,
        bound: f64,
    ) {
        let value = self.median(metric, ours);
        let met = value.map(|v| {
            if relation == "<=" {
                v <= bound
            } else {
                v >= bound
            }
        });
        self.targets.push(Target {
            ours: ours.name(),
            metric,
            against: "absolute",
            relation,
            bound,
            ratio: value,
            met,
        });
    }

    pub fn markdown(&self, systems: &[System]) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# tether benchmark results\n");
        let _ = writeln!(
            out,
            "Machine: {}. Mode: {}. Each cell: median (p90) over the samples; raw samples in results.json.\n",
            self.machine,
            if self.quick { "quick" } else { "full" }
        );
        let _ = write!(out, "| metric |");
        for system in systems {
            let _ = write!(out, " {} |", system.name());
        }
        let _ = write!(out, "\n| --- |");
        for _ in systems {
            let _ = write!(out, " --- |");
        }
        out.push('\n');
        for metric in &self.metrics {
            let _ = write!(out, "| {} ({}) |", metric.title, metric.unit);
            for system in systems {
                match metric.systems.get(system.name()) {
                    Some(s) => {
                        let _ = write!(out, " {} ({}) |", fmt(s.median), fmt(s.p90));
                    }
                    None => out.push_str(" – |"),
                }
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "\n## Targets (our median over the other's, same run; or tether's own value)\n"
        );
        let _ = writeln!(
            out,
            "| ours | metric | against | target | ratio or value | met |\n| --- | --- | --- | --- | --- | --- |"
        );
        for t in &self.targets {
            let shown = match (t.ratio, t.against) {
                (Some(v), "absolute") => fmt(v),
                (Some(r), _) => format!("{r:.2}×"),
                (None, _) => "–".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} {} | {} | {} |",
                t.ours,
                t.metric,
                t.against,
                t.relation,
                t.bound,
                shown,
                match t.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "not measured",
                }
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\n## Notes\n");
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }

    /// A bar per target: tether's ratio, with the target marked.
    pub fn svg(&self) -> String {
        let targets: Vec<&Target> = self
            .targets
            .iter()
            .filter(|t| t.ratio.is_some() && t.against != "absolute")
            .collect();
        let row = 34;
        let left = 330;
        let width = 760;
        let scale = |r: f64| (r.min(2.5) / 2.5 * (width - left - 40) as f64) as i32;
        let height = 60 + row * targets.len() as i32;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"13\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"10\" y=\"22\" font-size=\"15\">tether / other system, medians of one run (bar: ratio; line: target)</text>\n"
        );
        for (i, t) in targets.iter().enumerate() {
            let y = 40 + row * i as i32;
            let ratio = t.ratio.unwrap_or_default();
            let colour = if t.met == Some(true) {
                "#2e7d32"
            } else {
                "#c62828"
            };
            let _ = write!(
                svg,
                "<text x=\"10\" y=\"{ty}\">{ours}{metric} vs {against}</text>\n\
                 <rect x=\"{left}\" y=\"{y}\" width=\"{w}\" height=\"20\" fill=\"{colour}\"/>\n\
                 <line x1=\"{tx}\" x2=\"{tx}\" y1=\"{y0}\" y2=\"{y1}\" stroke=\"black\" stroke-width=\"2\"/>\n\
                 <text x=\"{lx}\" y=\"{ty}\">{ratio:.2}× ({rel} {bound})</text>\n",
                ty = y + 15,
                ours = if t.ours == System::Tether.name() {
                    String::new()
                } else {
                    format!("{}: ", t.ours)
                },
                metric = t.metric,
                against = t.against,
                w = scale(ratio).max(1),
                tx = left + scale(t.bound),
                y0 = y - 3,
                y1 = y + 23,
                lx = left + scale(ratio).max(1) + 6,
                rel = if t.relation == "<=" { "≤" } else { "≥" },
                bound = t.bound,
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

fn fmt(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90() {
        let s = Summary::of(vec![5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0]).unwrap();
        assert_eq!(s.median, 5.5);
        assert_eq!(s.p90, 9.0);
        assert_eq!(Summary::of(vec![2.0]).unwrap().p90, 2.0);
        assert!(Summary::of(vec![]).is_none());
    }
}
