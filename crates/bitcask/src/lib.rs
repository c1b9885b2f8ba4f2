//! A Bitcask storage engine.
