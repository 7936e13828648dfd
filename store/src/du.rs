//! du
