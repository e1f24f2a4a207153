//! The build plan (placeholder).
