//! Threads and channels.
