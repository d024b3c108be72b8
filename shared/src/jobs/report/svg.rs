//! Time-series charts as inline SVG: no script, no font, no external file, so the page opens offline and
//! survives being mailed. One chart is a few lines over time, an optional budget line, and marks where runs
//! failed; every mark carries a `<title>` (the browser's tooltip) with its time and value.

use chrono::{DateTime, Utc};

use super::html::escape;
use crate::domain::text::human_bytes;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 40.0;

/// How a chart's values read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Bytes,
    Seconds,
}

impl Scale {
    pub fn format(self, value: f64) -> String {
        match self {
            Scale::Bytes => human_bytes(value.max(0.0) as u64),
            Scale::Seconds => seconds_text(value),
        }
    }
}

/// A duration as people read it: `42 s`, `3.5 min`, `2.1 h`, `3.2 d`.
pub fn seconds_text(seconds: f64) -> String {
    match seconds {
        s if s < 10.0 => format!("{s:.1} s"),
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.1} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3600.0),
        s => format!("{:.1} d", s / 86_400.0),
    }
}

/// One line: its legend, its colour (a CSS class of the page), its points in time order.
pub struct Series {
    pub label: String,
    pub class: &'static str,
    pub points: Vec<(DateTime<Utc>, f64)>,
}

pub struct Chart {
    pub title: String,
    pub scale: Scale,
    pub series: Vec<Series>,
    /// A horizontal line (a budget) and its legend.
    pub budget: Option<(String, f64)>,
    /// When runs failed, each with what to say about it.
    pub failures: Vec<(DateTime<Utc>, String)>,
}

impl Chart {
    /// The chart as an `<svg>` element (or a sentence when there is nothing to draw).
    pub fn render(&self) -> String {
        let times =
            self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).chain(self.failures.iter().map(|f| f.0));
        let (Some(first), Some(last)) = (times.clone().min(), times.max()) else {
            return format!("<p class=\"empty\">{}: nothing recorded yet.</p>", escape(&self.title));
        };
        let top_value = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain(self.budget.iter().map(|b| b.1))
            .fold(0.0_f64, f64::max);
        let top_value = if top_value > 0.0 { top_value * 1.1 } else { 1.0 };
        let span = (last - first).num_seconds().max(1) as f64;
        let x = |t: DateTime<Utc>| LEFT + (t - first).num_seconds() as f64 / span * (WIDTH - LEFT - RIGHT);
        let y = |v: f64| TOP + (1.0 - v / top_value) * (HEIGHT - TOP - BOTTOM);
        let bottom = HEIGHT - BOTTOM;

        let mut out = format!(
            "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">",
            escape(&self.title),
            escape(&self.title)
        );
        // Axes, three value ticks, the first and last date.
        out.push_str(&format!(
            "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{bottom}\"/>\
             <line class=\"axis\" x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{}\" y2=\"{bottom}\"/>",
            WIDTH - RIGHT
        ));
        for fraction in [0.0, 0.5, 1.0] {
            let value = top_value / 1.1 * fraction;
            let at = y(value);
            out.push_str(&format!(
                "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{at:.1}\" x2=\"{}\" y2=\"{at:.1}\"/>\
                 <text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                WIDTH - RIGHT,
                LEFT - 6.0,
                at + 4.0,
                escape(&self.scale.format(value))
            ));
        }
        // Dates, with the time when the chart spans less than two days.
        let stamp = if span < 172_800.0 { "%Y-%m-%d %H:%M" } else { "%Y-%m-%d" };
        out.push_str(&format!(
            "<text class=\"tick\" x=\"{LEFT}\" y=\"{}\">{}</text><text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            bottom + 16.0,
            first.format(stamp),
            WIDTH - RIGHT,
            bottom + 16.0,
            last.format(stamp)
        ));
        if let Some((label, value)) = &self.budget {
            let at = y(*value);
            out.push_str(&format!(
                "<line class=\"budget\" x1=\"{LEFT}\" y1=\"{at:.1}\" x2=\"{}\" y2=\"{at:.1}\"><title>{}: {}</title></line>",
                WIDTH - RIGHT,
                escape(label),
                escape(&self.scale.format(*value))
            ));
        }
        for series in &self.series {
            let points: Vec<String> = series.points.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect();
            if points.len() > 1 {
                out.push_str(&format!("<polyline class=\"{}\" points=\"{}\"/>", series.class, points.join(" ")));
            }
            // Dots with tooltips: every point while there are few, the newest one otherwise (10,000 dots help nobody).
            let dotted =
                if series.points.len() <= 120 { &series.points[..] } else { &series.points[series.points.len() - 1..] };
            for (t, v) in dotted {
                out.push_str(&format!(
                    "<circle class=\"{}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\"><title>{} {}: {}</title></circle>",
                    series.class,
                    x(*t),
                    y(*v),
                    t.format("%Y-%m-%d %H:%M"),
                    escape(&series.label),
                    escape(&self.scale.format(*v))
                ));
            }
        }
        for (t, what) in &self.failures {
            let (cx, cy) = (x(*t), bottom - 5.0);
            out.push_str(&format!(
                "<path class=\"failure\" d=\"M{:.1} {:.1}l8 8m0 -8l-8 8\"><title>{} {}</title></path>",
                cx - 4.0,
                cy - 4.0,
                t.format("%Y-%m-%d %H:%M"),
                escape(what)
            ));
        }
        out.push_str("</svg><p class=\"legend\">");
        for series in &self.series {
            out.push_str(&format!("<span class=\"key {}\">{}</span> ", series.class, escape(&series.label)));
        }
        if let Some((label, _)) = &self.budget {
            out.push_str(&format!("<span class=\"key budget\">{}</span> ", escape(label)));
        }
        if !self.failures.is_empty() {
            out.push_str(&format!("<span class=\"key failure\">failed ({})</span>", self.failures.len()));
        }
        out.push_str("</p></figure>");
        out
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, 4, 15, 0).unwrap()
    }

    #[test]
    fn a_chart_draws_its_lines_budget_and_failures_and_escapes_its_words() {
        let chart = Chart {
            title: "<dump> size".into(),
            scale: Scale::Bytes,
            series: vec![Series {
                label: "SQL & more".into(),
                class: "raw",
                points: vec![(at(1), 1e9), (at(2), 1.2e9)],
            }],
            budget: Some(("budget".into(), 2e9)),
            failures: vec![(at(3), "backup <failed>".into())],
        };
        let svg = chart.render();
        assert!(svg.contains("<polyline class=\"raw\""), "{svg}");
        assert!(svg.contains("class=\"budget\"") && svg.contains("class=\"failure\""), "{svg}");
        assert!(
            svg.contains("&lt;dump&gt; size")
                && svg.contains("SQL &amp; more")
                && svg.contains("backup &lt;failed&gt;")
        );
        assert!(!svg.contains("<dump>") && !svg.contains("<failed>"));
    }

    #[test]
    fn nothing_to_draw_is_said_in_words() {
        let chart =
            Chart { title: "RTO".into(), scale: Scale::Seconds, series: vec![], budget: None, failures: vec![] };
        assert!(chart.render().contains("nothing recorded yet"));
    }

    #[test]
    fn durations_read_in_the_unit_that_fits() {
        assert_eq!(seconds_text(0.86), "0.9 s");
        assert_eq!(seconds_text(42.0), "42 s");
        assert_eq!(seconds_text(210.0), "3.5 min");
        assert_eq!(seconds_text(7560.0), "2.1 h");
        assert_eq!(seconds_text(3.0 * 86_400.0), "3.0 d");
    }
}
