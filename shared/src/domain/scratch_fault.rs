//! Failures that are the drill's own, not the backup's: while a drill restored or checked the copy, the scratch
//! server crashed, was shut down or restarted, ran out of disk, memory or connection slots, its storage failed,
//! or the connection to it was lost; or the restore outlasted the Lambda invocation running it. A drill stopped
//! by one cannot say anything of the backup, so it is
//! *inconclusive*: the backup keeps the status it had (`VerificationReport::scratch_fault` decides, the verify
//! job acts on it), where calling it `verify_failed` would take a good backup out of the restore points and,
//! after the investigation window, out of retention.
//!
//! Recognised from what the drill's clients report: the server's SQLSTATE where one is given (the drill's own
//! connections write `(SQLSTATE xxxxx)`, see `adapters::pg_wire::describe`), and libpq's, tokio-postgres's and
//! the server's own sentences for the rest (psql prints no SQLSTATE; a lost connection has none). A sign is
//! only ever a reason to withhold a verdict, never to give `verified`: a failure mistaken for one still fails
//! to verify, alerts, and leaves the verification getting older until the monitor says so.

/// Part of the drill's own message when the restore was still running as the invocation's time ran out.
pub const OUTLASTED_THE_INVOCATION: &str = "cannot be drilled within one Lambda invocation";

/// What each sign means, checked in this order.
const SIGNS: &[(&str, &str)] = &[
    (OUTLASTED_THE_INVOCATION, "the restore outlasted the Lambda invocation running it"),
    ("(SQLSTATE 53100)", "the scratch server ran out of disk"),
    ("No space left on device", "the scratch server ran out of disk"),
    ("storage-full", "the scratch server ran out of disk"),
    ("(SQLSTATE 53200)", "the scratch server ran out of memory"),
    ("(SQLSTATE 53300)", "the scratch server had no connection slot left"),
    ("sorry, too many clients already", "the scratch server had no connection slot left"),
    ("(SQLSTATE 58030)", "the scratch server's storage failed"),
    ("(SQLSTATE 57P02)", "the scratch server crashed and restarted"),
    ("terminating connection because of crash of another server process", "the scratch server crashed and restarted"),
    ("the database system is in recovery mode", "the scratch server crashed and restarted"),
    ("(SQLSTATE 57P01)", "the scratch server was shut down"),
    ("terminating connection due to administrator command", "the scratch server was shut down"),
    ("the database system is shutting down", "the scratch server was shut down"),
    ("(SQLSTATE 57P03)", "the scratch server was not accepting connections"),
    ("the database system is starting up", "the scratch server was not accepting connections"),
    ("server closed the connection unexpectedly", "the connection to the scratch server was lost"),
    ("connection closed", "the connection to the scratch server was lost"),
    ("error communicating with the server", "the connection to the scratch server was lost"),
    ("Connection refused", "the scratch server could not be reached"),
    ("error connecting to server", "the scratch server could not be reached"),
];

/// Why `message` (a failed check's) is the drill's own failure rather than the backup's, if it is.
pub fn scratch_fault(message: &str) -> Option<&'static str> {
    SIGNS.iter().find(|(sign, _)| message.contains(sign)).map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_failures_are_recognised_by_sqlstate_and_by_sentence() {
        for (message, why) in [
            (
                "restore failed (error): connection closed (loading \"public\".\"t\")",
                "the connection to the scratch server was lost",
            ),
            (
                "ERROR: could not extend file \"base/16384/16385\": wrote only 4096 of 8192 bytes (SQLSTATE 53100); hint: Check free disk space.",
                "the scratch server ran out of disk",
            ),
            (
                "psql failed (exit status: 2): psql:<stdin>:40: ERROR:  could not extend file \"base/1/2\": No space left on device",
                "the scratch server ran out of disk",
            ),
            (
                "FATAL: terminating connection due to administrator command (SQLSTATE 57P01)",
                "the scratch server was shut down",
            ),
            (
                "psql: error: connection to server at \"127.0.0.1\", port 5 failed: Connection refused",
                "the scratch server could not be reached",
            ),
            (
                "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally",
                "the connection to the scratch server was lost",
            ),
            ("the scratch server is storage-full again in the middle of the drill", "the scratch server ran out of disk"),
            (
                "the restore was still running when this invocation's time ran out (after 850 s): a backup this large \
                 cannot be drilled within one Lambda invocation; run `backstop verify --target t` from the CLI",
                "the restore outlasted the Lambda invocation running it",
            ),
        ] {
            assert_eq!(scratch_fault(message), Some(why), "{message}");
        }
    }

    #[test]
    fn the_backups_own_failures_are_not_the_servers() {
        for message in [
            "psql failed (exit status: 3): ERROR:  relation \"public.t\" does not exist",
            "ERROR: out of memory (SQLSTATE 54000); Cannot enlarge string buffer containing 1073741822 bytes by 1 more bytes.",
            "ERROR: duplicate key value violates unique constraint \"t_pkey\" (SQLSTATE 23505)",
            "the client programs are version 14, older than the backup's server",
            "the drill was abandoned in phase restoring: the state machine's time bound was reached",
            "the scratch server is unreachable: the scratch cluster does not exist (swept or never made)",
        ] {
            assert_eq!(scratch_fault(message), None, "{message}");
        }
    }
}
