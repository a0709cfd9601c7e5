//! Loads plugins built with ardpipe-plugin-sdk and checks their ABI before anything else.
