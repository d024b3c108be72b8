//! A table's rows folded as fingerprint scheme v2 folds them (`domain::dump_parser`): counted, and each row's
//! line (COPY text, without its newline) hashed with xxh3-128 into a wrapping sum, so the digest does not
//! depend on the order rows arrive in. Fed in pieces of any size, as a COPY stream or a chunk of a dump
//! delivers them.

use xxhash_rust::xxh3::xxh3_128;

#[derive(Debug, Default)]
pub struct RowDigest {
    rows: u64,
    sum: u128,
    /// The start of a row whose end has not arrived yet.
    partial: Vec<u8>,
}

impl RowDigest {
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', bytes) {
            let line: &[u8] = if self.partial.is_empty() {
                &bytes[start..end]
            } else {
                self.partial.extend_from_slice(&bytes[start..end]);
                &self.partial
            };
            self.rows += 1;
            self.sum = self.sum.wrapping_add(xxh3_128(line));
            self.partial.clear();
            start = end + 1;
        }
        self.partial.extend_from_slice(&bytes[start..]);
    }

    /// The row count and the digest as the fingerprint writes it (32 hex digits), or an error when the rows
    /// ended inside a line.
    pub fn finish(self) -> Result<(u64, String), String> {
        if !self.partial.is_empty() {
            return Err("the rows ended inside a line".into());
        }
        Ok((self.rows, format!("{:032x}", self.sum)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_of_any_size_and_any_order_fold_alike() {
        let rows = "1\ta\n2\tb\\nc\n3\t\\N\n";
        let mut whole = RowDigest::default();
        whole.feed(rows.as_bytes());
        let mut bytewise = RowDigest::default();
        for b in "3\t\\N\n1\ta\n2\tb\\nc\n".as_bytes() {
            bytewise.feed(std::slice::from_ref(b));
        }
        assert_eq!(whole.finish().unwrap(), bytewise.finish().unwrap());
        let mut cut = RowDigest::default();
        cut.feed(b"1\ta");
        assert!(cut.finish().is_err());
    }
}
