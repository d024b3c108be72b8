//! Figures as people read them in alerts, reports and the CLI: sizes, percentages, and lists cut short.

/// `1536` → `1.5 KiB`; bytes below 1 KiB as they are (`512 B`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `0.5` → `50%`.
pub fn percent_text(fraction: f64) -> String {
    format!("{:.0}%", fraction * 100.0)
}

/// The first `max` items, then how many more: `a, b, c and 3 more`.
pub fn list_text(items: &[String], max: usize) -> String {
    let shown = items.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > max {
        format!("{shown} and {} more", items.len() - max)
    } else {
        shown
    }
}
