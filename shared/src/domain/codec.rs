//! The compression codecs a dump can be stored with, as names: what the manifest, the object key and the runbook
//! say about them. Compressing and decompressing is the pipeline's (`pipeline::codec`).

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    #[default]
    Zstd,
    Gzip,
}

impl Codec {
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "zstd" | "zst" => Some(Codec::Zstd),
            "gzip" | "gz" => Some(Codec::Gzip),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd",
            Codec::Gzip => "gzip",
        }
    }

    /// The object key's extension, so `aws s3 cp` + a file manager already know what it is.
    pub fn extension(self) -> &'static str {
        match self {
            Codec::Zstd => "sql.zst",
            Codec::Gzip => "sql.gz",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Codec::Zstd => "application/zstd",
            Codec::Gzip => "application/gzip",
        }
    }

    pub fn levels(self) -> RangeInclusive<i32> {
        match self {
            Codec::Zstd => 1..=19,
            Codec::Gzip => 1..=9,
        }
    }

    pub fn default_level(self) -> i32 {
        match self {
            // Level 2: on the benchmark corpus level 1 stores 1 % more than gzip -6 and level 2 3.5 % less, for
            // a quarter more CPU (docs/benchmarks.md); level 3 costs another third for 1.5 % less.
            Codec::Zstd => 2,
            Codec::Gzip => 6,
        }
    }

    /// The command that turns the stored object back into SQL on any machine with the stock tools.
    pub fn decompress_command(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd -dc",
            Codec::Gzip => "gunzip -c",
        }
    }
}
