//! `--into postgresql://USER@HOST[:PORT][/DATABASE][?sslmode=MODE]`: where `backstop restore` writes. The
//! password is refused here: a command line is visible to every user of the machine (`ps`), so it comes from
//! `--password-env`, `--password-file` or `--password-secret`, as a target's does.

/// The destination as the operator wrote it, without a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub database: Option<String>,
    pub sslmode: String,
}

const SSL_MODES: [&str; 6] = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];

pub fn parse(text: &str) -> Result<Connection, String> {
    let usage = "write it as postgresql://USER@HOST[:PORT][/DATABASE][?sslmode=MODE]";
    let rest = text
        .strip_prefix("postgresql://")
        .or_else(|| text.strip_prefix("postgres://"))
        .ok_or_else(|| format!("--into does not start with postgresql://; {usage}"))?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, hostport) =
        authority.rsplit_once('@').ok_or_else(|| format!("--into names no user (USER@HOST); {usage}"))?;
    if user.contains(':') {
        return Err("--into holds a password: leave it out (a command line is visible to every user of the \
                    machine) and give it with --password-env, --password-file or --password-secret"
            .into());
    }
    let (host, port) = match hostport.strip_prefix('[') {
        // [IPv6]:port
        Some(bracketed) => {
            let (host, after) =
                bracketed.split_once(']').ok_or_else(|| format!("--into has an unclosed [; {usage}"))?;
            (host, after.strip_prefix(':'))
        }
        None => match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        },
    };
    if host.is_empty() {
        return Err(format!("--into names no host; {usage}"));
    }
    let port = match port {
        None => 5432,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("--into's port {port:?} is not a port number"))?,
    };
    let mut sslmode = "prefer".to_string();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", mode)) if SSL_MODES.contains(&mode) => sslmode = mode.to_string(),
            Some(("sslmode", mode)) => {
                return Err(format!("--into's sslmode {mode:?} is not one of {}", SSL_MODES.join(", ")))
            }
            Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                return Err(
                    "--into holds a password: give it with --password-env, --password-file or --password-secret".into(),
                )
            }
            // Its name only: the value of a parameter this does not know may be a secret (`passfile`, a token).
            Some((name, _)) => {
                return Err(format!(
                    "--into's parameter {name:?} is not understood (only sslmode is); its value is not shown"
                ))
            }
            None => {
                return Err("--into has a parameter without `=` (not shown); only sslmode=MODE is understood".into())
            }
        }
    }
    let user = percent_decode(user)?;
    if user.is_empty() {
        return Err(format!("--into names no user (USER@HOST); {usage}"));
    }
    let database = Some(percent_decode(database)?).filter(|d| !d.is_empty());
    Ok(Connection { user, host: host.to_string(), port, database, sslmode })
}

/// `%XX` escapes, as in any URL, for names with `@`, `/` or spaces.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or_else(|| format!("--into has a bad escape near {:?}", &text[i..]))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "--into's escapes are not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_it_does_not_know_is_named_never_shown() {
        for (into, secret) in [
            ("postgresql://u@h/db?PASSWORD=S3cretPw", "S3cretPw"),
            ("postgresql://u@h/db?passfile=/home/u/.pgpass-S3cret", "S3cret"),
            ("postgresql://u@h/db?S3cretPw", "S3cretPw"),
        ] {
            let error = parse(into).unwrap_err();
            assert!(!error.contains(secret), "{error}");
        }
        assert!(parse("postgresql://u@h/db?PASSWORD=x").unwrap_err().contains("holds a password"));
    }

    #[test]
    fn a_connection_is_read_with_its_defaults_escapes_and_sslmode() {
        let c = parse("postgresql://restorer@db.internal/orders").unwrap();
        assert_eq!(
            c,
            Connection {
                user: "restorer".into(),
                host: "db.internal".into(),
                port: 5432,
                database: Some("orders".into()),
                sslmode: "prefer".into()
            }
        );
        let c = parse("postgres://ops%40corp@127.0.0.1:6543?sslmode=require").unwrap();
        assert_eq!((c.user.as_str(), c.port, c.database, c.sslmode.as_str()), ("ops@corp", 6543, None, "require"));
        let c = parse("postgresql://u@[::1]:5433/my%20db").unwrap();
        assert_eq!((c.host.as_str(), c.port, c.database.as_deref()), ("::1", 5433, Some("my db")));
    }

    #[test]
    fn a_password_or_a_malformed_connection_is_refused_saying_what_to_write() {
        for (text, says) in [
            ("postgresql://u:hunter2@h/db", "--password-env"),
            ("postgresql://u@h/db?password=hunter2", "--password-env"),
            ("mysql://u@h/db", "postgresql://"),
            ("postgresql://h/db", "names no user"),
            ("postgresql://u@h:99999/db", "not a port number"),
            ("postgresql://u@h/db?sslmode=maybe", "not one of"),
            ("postgresql://u@h/db?connect_timeout=3", "only sslmode"),
            ("postgresql://u@/db", "names no host"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
            assert!(!error.contains("hunter2"), "the error repeats the password: {error}");
        }
    }
}
