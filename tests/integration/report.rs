//! The report page in a real browser: a real backup and drill of a database with hostile names (and a target
//! that fails), read back from the emulator's catalog, rendered by `jobs::report`, and opened in headless
//! Chromium (Debian's package, installed by `infra/ensure-deps.sh --test`) at a narrow and a wide window. The
//! page must log nothing to the console, must not be wider than the window (wide tables scroll inside their
//! own box), and must show the hostile names as text. A screenshot is left in `target/report-screenshot.png`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use backstop::adapters::dynamodb::DynamoCatalog;
use backstop::app;
use backstop::domain::{BackupStatus, TargetOutcome};
use backstop::jobs::monitor::MonitorRequest;
use backstop::jobs::report;
use backstop::metrics::NoMetrics;
use backstop_tests::aws::AwsFixture;
use backstop_tests::pg::{PgCluster, BACKSTOP_PASSWORD};

use crate::common::*;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Appended to a copy of the page (the page itself has no script): the document's title becomes the verdict.
const LAYOUT_PROBE: &str = "<script>(function(){var d=document.documentElement;\
    document.title='LAYOUT '+(d.scrollWidth<=d.clientWidth?'OK':'WIDE '+d.scrollWidth+' > '+d.clientWidth);})();</script>";

/// Chromium's verdict on `page` at `width`: the title the probe set, and what it logged to the console.
fn open_in_chromium(page: &Path, width: u32, screenshot: Option<&Path>) -> (String, Vec<String>) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: `infra/ensure-deps.sh --test` installs Debian's chromium (the README's test command runs it)"
    );
    let profile = tempfile::tempdir().unwrap();
    let mut command = Command::new(CHROMIUM);
    command
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .args(["--enable-logging=stderr", "--v=0", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={width},1400"));
    match screenshot {
        Some(path) => command.arg(format!("--screenshot={}", path.display())),
        None => command.arg("--dump-dom"),
    };
    let out = command.arg(format!("file://{}", page.display())).output().expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    let dom = String::from_utf8_lossy(&out.stdout);
    let title = dom.split("<title>").nth(1).and_then(|t| t.split("</title>").next()).unwrap_or_default().to_string();
    let console =
        String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.contains(":CONSOLE")).map(str::to_string).collect();
    (title, console)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_of_real_backups_and_drills_opens_in_a_browser_clean_and_within_the_window() {
    let cluster = PgCluster::start();
    cluster.seed_hostile("shop");
    cluster.psql(
        "shop",
        "CREATE TABLE public.\"<script>alert(1)</script>\" (id int PRIMARY KEY, \"<b>note\" text); \
         INSERT INTO public.\"<script>alert(1)</script>\" VALUES (1, '</td></tr></table>'), (2, '&amp;');",
    );
    let aws = AwsFixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let shop = cluster.target("shop", "shop", BACKSTOP_PASSWORD, dir.path());
    let gone = cluster.target("gone", "no_such_database", BACKSTOP_PASSWORD, dir.path());
    let config = aws.config(vec![shop, gone]);
    let backup = job(&aws, config.clone());
    let run = backup.run(&request("shop", None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "{}", run.targets[0].message);
    let failed = backup.run(&request("gone", None)).await.unwrap();
    assert_eq!(failed.targets[0].outcome, TargetOutcome::Failed);
    let drilled = drill(&aws, &config, "shop").await;
    assert_eq!(drilled.outcome, Some(BackupStatus::Verified), "{drilled:?}");

    // What `backstop report` does: the monitor's health without alerting, the catalog, the page.
    let config = Arc::new(config);
    let health = app::monitor_job(config.clone(), &aws.clients, Arc::new(NoMetrics))
        .run(&MonitorRequest { target: None, alert: false })
        .await
        .unwrap();
    let catalog = DynamoCatalog::new(aws.clients.dynamodb.clone(), aws.table.clone());
    let data = report::gather(&config, &catalog, health, None, chrono::Utc::now()).await.unwrap();
    let page = report::html::render(&data);
    assert!(!page.contains("<script") && !page.contains("<b>note"), "hostile names are escaped");
    assert!(page.contains("table public.&lt;script&gt;alert(1)&lt;/script&gt;"), "and shown as text");
    assert!(
        page.contains("<span class=\"badge OK\">OK</span>")
            && page.contains("<span class=\"badge CRITICAL\">CRITICAL</span>")
    );

    // The same page with the probe, narrow and wide.
    let probed = dir.path().join("report.html");
    std::fs::write(&probed, format!("{page}{LAYOUT_PROBE}")).unwrap();
    for width in [800, 1280] {
        let (title, console) = open_in_chromium(&probed, width, None);
        assert_eq!(title, "LAYOUT OK", "at {width} px the page is wider than the window");
        assert!(console.is_empty(), "the page logged to the console at {width} px: {console:?}");
    }
    let plain = dir.path().join("plain.html");
    std::fs::write(&plain, &page).unwrap();
    let screenshot = backstop_tests::repo_root().join("target/report-screenshot.png");
    let (_, console) = open_in_chromium(&plain, 1280, Some(&screenshot));
    assert!(console.is_empty(), "{console:?}");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000, "a screenshot with something in it");
}
