//! The streaming engine and what it is made of: codecs, part sizing, and the stream itself.

pub mod codec;
pub mod framer;
pub mod parts;
pub mod stream;
