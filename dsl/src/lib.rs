//! The ardpipe pipeline language: `.ard` text → spanned AST → checked `Pipeline`.
