//! Failures that are the drill's own, not the backup's: the scratch server could not be provisioned, or, while a
//! drill restored or checked the copy, it failed or went away, crashed, was shut down or restarted, ran out of
//! disk, memory or connection slots, its storage failed, or the connection to it was lost; the restore outlasted
//! the Lambda invocation running it; or S3 did not answer the drill's reads of the backup
//! (`adapters::s3_resume`, `jobs::verify`). A drill stopped
//! by one cannot say anything of the backup, so it is *inconclusive*: the backup keeps the status it had
//! (`VerificationReport::scratch_fault` decides, the verify job acts on it), where calling it `verify_failed`
//! would take a good backup out of the restore points and, after the investigation window, out of retention.
//!
//! Such a failure is recognised where the error is made, from what cannot come from the backup's data: the
//! server's SQLSTATE and the client library's own error kind (`adapters::pg_wire::describe`), and the client
//! programs' own lines in their stderr, matched from the start of the line (`client_fault`), never inside a
//! DETAIL, CONTEXT or statement that may quote rows. The error's text then carries a mark,
//! ` [server fault: why]`, which is what the drill's verdict reads (`marked_fault`). A message that quotes an
//! earlier one only as background (the parallel restore's error beside psql's) drops its marks (`unmarked`).
//! A mark only ever withholds a verdict, never gives `verified`: an inconclusive drill still alerts, and the
//! verification keeps getting older until the monitor says so.

const MARK_OPEN: &str = " [server fault: ";

pub const DISK: &str = "the server ran out of disk";
pub const MEMORY: &str = "the server ran out of memory";
pub const CONNECTION_SLOTS: &str = "the server had no connection slot left";
pub const STORAGE: &str = "the server's storage failed";
pub const CRASHED: &str = "the server crashed and restarted";
pub const SHUT_DOWN: &str = "the server was shut down";
pub const NOT_ACCEPTING: &str = "the server was not accepting connections";
pub const CONNECTION_LOST: &str = "the connection to the server was lost";
pub const UNREACHABLE: &str = "the server could not be connected to";
/// The scratch server was never ready: its creation was refused or failed (an RDS quota, capacity in the zone, a
/// subnet or parameter group, a permission; locally, the server binaries or the disk). Nothing was restored yet.
pub const NOT_PROVISIONED: &str = "the scratch server could not be provisioned";
/// The scratch server failed, restarted or went away under the drill (RDS reports it failed or rebooting, or it
/// was deleted); a full disk is [`DISK`].
pub const SCRATCH_FAILED: &str = "the scratch server failed or went away";
/// The drill's caller gave up on it (the verify state machine's time bound, or an error that stopped its loop).
pub const ABANDONED: &str = "the drill was given up before it ended";
pub const OUTLASTED_THE_INVOCATION: &str = "the restore outlasted the Lambda invocation running it";
/// Not the scratch server's but as much the drill's own: S3 did not answer the drill's reads of the backup, or
/// throttled them, after every retry. (Refused, missing or changed objects are the backup's.)
pub const STORE_UNAVAILABLE: &str = "the object store (S3) did not answer or throttled the drill's reads";

/// `text` with the mark that says it is the server's failure for `why`.
pub fn mark(text: &str, why: &str) -> String {
    format!("{text}{MARK_OPEN}{why}]")
}

/// `text`, marked when `why` names the server's failure, as it is otherwise.
pub fn mark_if(text: String, why: Option<&str>) -> String {
    match why {
        Some(why) => mark(&text, why),
        None => text,
    }
}

/// The failure a mark in `message` names, if any (the first).
pub fn marked_fault(message: &str) -> Option<&str> {
    let start = message.find(MARK_OPEN)? + MARK_OPEN.len();
    let len = message[start..].find(']')?;
    Some(&message[start..start + len])
}

/// `message` without its marks: for an error quoted only as the background of another.
pub fn unmarked(message: &str) -> String {
    let mut out = message.to_string();
    while let Some(start) = out.find(MARK_OPEN) {
        match out[start..].find(']') {
            Some(len) => out.replace_range(start..start + len + 1, ""),
            None => break,
        }
    }
    out
}

/// The server's failure a SQLSTATE names: out of disk, memory or connection slots (class 53), an I/O error
/// (58030), a shutdown, crash or start (57P01–57P03).
pub fn of_sqlstate(code: &str) -> Option<&'static str> {
    match code {
        "53100" => Some(DISK),
        "53200" => Some(MEMORY),
        "53300" => Some(CONNECTION_SLOTS),
        "58030" => Some(STORAGE),
        "57P01" => Some(SHUT_DOWN),
        "57P02" => Some(CRASHED),
        "57P03" => Some(NOT_ACCEPTING),
        _ => None,
    }
}

/// libpq's and the server's own lines, as psql and pg_dump print them (after their `psql:<file>:<line>: `,
/// `psql: error: ` or `pg_dump: error: ` prefixes), that say the server failed: each is the start of a line.
const CLIENT_LINES: &[(&str, &str)] = &[
    ("server closed the connection unexpectedly", CONNECTION_LOST),
    ("connection to server was lost", CONNECTION_LOST),
    ("no connection to the server", CONNECTION_LOST),
    ("could not connect to server", UNREACHABLE),
    ("FATAL:  terminating connection due to administrator command", SHUT_DOWN),
    ("FATAL:  terminating connection because of crash of another server process", CRASHED),
    ("WARNING:  terminating connection because of crash of another server process", CRASHED),
    ("FATAL:  the database system is in recovery mode", CRASHED),
    ("FATAL:  the database system is shutting down", SHUT_DOWN),
    ("FATAL:  the database system is starting up", NOT_ACCEPTING),
    ("FATAL:  the database system is not yet accepting connections", NOT_ACCEPTING),
    ("FATAL:  sorry, too many clients already", CONNECTION_SLOTS),
    ("FATAL:  remaining connection slots are reserved", CONNECTION_SLOTS),
];

/// The server's failure a client program's stderr reports, if a line of it does.
pub fn client_fault(stderr: &str) -> Option<&'static str> {
    stderr.lines().find_map(|line| {
        let line = without_program_prefix(line.trim_start());
        if let Some(rest) = line.strip_prefix("connection to server ") {
            // `connection to server at "host", port N failed: …` / `… on socket "…" failed: …`: the server said
            // why (a FATAL line above), else it could not be reached.
            return Some(rest.split_once(" failed: ").and_then(|(_, why)| line_fault(why)).unwrap_or(UNREACHABLE));
        }
        line_fault(line)
    })
}

fn line_fault(line: &str) -> Option<&'static str> {
    if let Some(found) = CLIENT_LINES.iter().find(|(start, _)| line.starts_with(start)) {
        return Some(found.1);
    }
    // A write the disk refused, with the file's path between: `ERROR:  could not extend file "…": No space …`.
    let write = ["ERROR:  could not extend file ", "ERROR:  could not write", "PANIC:  could not write"];
    if write.iter().any(|w| line.starts_with(w)) && line.ends_with("No space left on device") {
        return Some(DISK);
    }
    // Or took part of it (a file system that fills mid-block, as a tmpfs at its size does), which the server
    // reports as a full disk too: `ERROR:  could not extend file "…": wrote only 4096 of 8192 bytes at block 7`,
    // `ERROR:  could not write block 7 in file "…": wrote only 4096 of 8192 bytes`.
    let digits = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    let rest = match line.strip_prefix("ERROR:  could not write block ") {
        Some(block) => {
            let (number, file) = block.split_once(" in file \"")?;
            digits(number).then_some(file)?
        }
        None => line.strip_prefix("ERROR:  could not extend file \"")?,
    };
    let (_, said) = rest.rsplit_once("\": wrote only ")?;
    let counts = match said.split_once(" at block ") {
        Some((counts, block)) => digits(block).then_some(counts)?,
        None => said,
    };
    let (written, asked) = counts.strip_suffix(" bytes")?.split_once(" of ")?;
    (digits(written) && digits(asked)).then_some(DISK)
}

/// `line` after the prefix psql or pg_dump puts before a message: `psql:<file>:<line>: `, `psql: error: `,
/// `pg_dump: error: ` (and `query failed: `).
fn without_program_prefix(line: &str) -> &str {
    let mut line = line;
    for program in ["psql", "pg_dump", "createdb"] {
        if let Some(rest) = line.strip_prefix(program).and_then(|r| r.strip_prefix(':')) {
            line = rest;
            // `psql:<stdin>:12: ERROR: …`: a file and a line number, then the message.
            if let Some((place, rest)) = line.split_once(": ") {
                if place.rsplit(':').next().is_some_and(|n| n.chars().all(|c| c.is_ascii_digit())) {
                    line = rest;
                }
            }
            break;
        }
    }
    let line = line.trim_start();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    line.strip_prefix("query failed: ").unwrap_or(line)
}

/// `why` said of the drill's scratch server: `the server …` becomes `the scratch server …`.
pub fn of_the_scratch_server(why: &str) -> String {
    why.replacen("the server", "the scratch server", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_read_back_and_can_be_taken_off() {
        let marked = mark("restore failed (error): connection closed (loading \"public\".\"t\")", CONNECTION_LOST);
        assert_eq!(marked_fault(&marked), Some(CONNECTION_LOST));
        assert_eq!(unmarked(&marked), "restore failed (error): connection closed (loading \"public\".\"t\")");
        let both = format!("psql failed: ERROR:  syntax error (and before it, the parallel restore: {marked})");
        assert_eq!(marked_fault(&unmarked(&both)), None, "the background's mark is not the message's");
        assert_eq!(marked_fault("no mark here [server fault: unterminated"), None);
    }

    #[test]
    fn the_client_programs_own_lines_name_the_servers_failure() {
        for (stderr, why) in [
            ("psql: error: connection to server at \"127.0.0.1\", port 5 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?", UNREACHABLE),
            ("psql:<stdin>:40: ERROR:  could not extend file \"base/16384/16385\": No space left on device\nHINT:  Check free disk space.", DISK),
            ("psql:<stdin>:40: ERROR:  could not extend file \"base/16395/16396\": wrote only 4096 of 8192 bytes at block 3284\nHINT:  Check free disk space.\nCONTEXT:  COPY items, line 395000", DISK),
            ("pg_dump: error: query failed: ERROR:  could not write block 12 in file \"base/5/6\": wrote only 0 of 8192 bytes\nHINT:  Check free disk space.", DISK),
            ("WARNING:  terminating connection because of crash of another server process\nDETAIL:  The postmaster has commanded …\nserver closed the connection unexpectedly\n\tThis probably means the server terminated abnormally", CRASHED),
            ("pg_dump: error: query failed: server closed the connection unexpectedly", CONNECTION_LOST),
            ("psql: error: connection to server at \"h\", port 5 failed: FATAL:  sorry, too many clients already", CONNECTION_SLOTS),
            ("psql:<stdin>:7: FATAL:  terminating connection due to administrator command", SHUT_DOWN),
        ] {
            assert_eq!(client_fault(stderr), Some(why), "{stderr}");
        }
    }

    #[test]
    fn what_the_data_says_is_not_the_servers_failure() {
        for stderr in [
            // A duplicate key whose value reads like a failure: the backup's own problem.
            "psql:<stdin>:90: ERROR:  duplicate key value violates unique constraint \"log_pkey\"\nDETAIL:  Key (message)=(server closed the connection unexpectedly) already exists.",
            "psql:<stdin>:12: ERROR:  invalid input syntax for type integer: \"No space left on device\"\nCONTEXT:  COPY log, line 3, column n: \"Connection refused\"",
            "psql:<stdin>:5: ERROR:  relation \"public.t\" does not exist",
            "psql:<stdin>:9: ERROR:  could not extend file \"base/1/2\": wrote only some of it",
            "psql:<stdin>:9: ERROR:  could not extend file \"base/1/2\": wrote only 4096 of 8192 bytes at block x",
            "psql:<stdin>:9: ERROR:  could not write block all in file \"base/1/2\": wrote only 0 of 8192 bytes",
            "psql:<stdin>:9: ERROR:  could not write block 3 in file \"base/1/2\": wrote only 0 of many bytes",
            "ERROR:  out of memory\nDETAIL:  Cannot enlarge string buffer containing 1073741822 bytes by 1 more bytes.",
        ] {
            assert_eq!(client_fault(stderr), None, "{stderr}");
        }
        assert_eq!(of_sqlstate("23505"), None);
        assert_eq!(of_sqlstate("54000"), None, "a program limit is the dump's, not the server's");
        assert_eq!(of_sqlstate("53100"), Some(DISK));
    }

    #[test]
    fn said_of_the_scratch_server() {
        assert_eq!(of_the_scratch_server(CONNECTION_LOST), "the connection to the scratch server was lost");
        assert_eq!(of_the_scratch_server(DISK), "the scratch server ran out of disk");
        assert_eq!(of_the_scratch_server(OUTLASTED_THE_INVOCATION), OUTLASTED_THE_INVOCATION);
    }
}
