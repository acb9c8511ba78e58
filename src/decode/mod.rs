//! Link, network and transport decoding over borrowed packet bytes.
use crate::counters;
counters! {
    pub struct DecodeStats { packets }
}
